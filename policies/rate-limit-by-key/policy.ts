// rate-limit-by-key: at most `calls` calls per `renewalPeriod` seconds for each value of a key (Azure API Management's
// rate-limit-by-key). The key comes from a header, a variable (e.g. the identity key-auth sets), the client address,
// a query parameter, or a claim of the bearer token. Counters are the gateway's (in memory, or Redis for a fleet),
// namespaced by this binding; over the limit the gateway answers 429 with Retry-After.
import { config, keySource, rateLimit, respondProblem, CONTINUE, KeySource } from "@gatehouse/policy-sdk";

let source: KeySource | null = null;

export function on_inbound(): i32 {
  return limit();
}

export function on_backend(): i32 {
  return limit();
}

function limit(): i32 {
  if (source === null) source = keySource("counterKey");
  let key = source!.keyOf();
  if (key === null) {
    const onMissing = config.getString("onMissingKey", "shared")!;
    if (onMissing == "allow") return CONTINUE;
    if (onMissing == "reject") return respondProblem(400, "Bad Request", "the rate limit key (" + source!.describe() + ") is missing");
    key = "none"; // one counter for every request without the key, apart from any with one ("=value")
  }
  return rateLimit(key!, config.getInt("calls", 1), config.getInt("renewalPeriod", 1), config.getBool("headers", true));
}
