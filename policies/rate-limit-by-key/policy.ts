// rate-limit-by-key: at most `calls` calls per `renewalPeriod` seconds for each value of a key (Azure API Management's
// rate-limit-by-key). The key comes from a header, a variable (e.g. the identity key-auth sets), the client address,
// a query parameter, or a claim of the bearer token. Counters are the gateway's (in memory, or Redis for a fleet),
// namespaced by this binding; over the limit the gateway answers 429 with Retry-After.
import { config, parseJson, sha256Hex, rateLimit, respondProblem, valueFrom, CONTINUE } from "@gatehouse/policy-sdk";

/** Longer key values are counted by their digest: counters keep bounded keys whatever a client sends. */
const MAX_KEY_LENGTH = 200;

let from: string | null = null;
let name: string = "";

export function on_inbound(): i32 {
  return limit();
}

export function on_backend(): i32 {
  return limit();
}

function limit(): i32 {
  if (from === null) {
    const counterKey = parseJson(config.getJson("counterKey")!)!;
    from = counterKey.get("from")!.asString()!;
    const n = counterKey.get("name");
    name = n === null ? "" : n.asString()!;
  }
  let value = valueFrom(from!, name);
  if (value === null || value.length == 0) {
    const onMissing = config.getString("onMissingKey", "shared")!;
    if (onMissing == "allow") return CONTINUE;
    if (onMissing == "reject") {
      return respondProblem(400, "Bad Request", "the rate limit key (" + from! + (name.length > 0 ? " " + name : "") + ") is missing");
    }
    value = "";
  }
  // An absent value ("none") never equals a present one ("=value", or "#digest" when long).
  const key = value.length == 0 ? "none" : value.length > MAX_KEY_LENGTH ? "#" + sha256Hex(value) : "=" + value;
  return rateLimit(key, config.getInt("calls", 1), config.getInt("renewalPeriod", 1), config.getBool("headers", true));
}
