// limit-concurrency: at most `maxCount` requests in flight at once, per key or for all requests through this policy
// (Azure API Management's limit-concurrency). A request takes a slot here and holds it until its response has been
// sent (or abandoned); one that finds every slot taken is answered 429 at once rather than queued.
import { config, keySource, lease, respondProblem, response, CONTINUE, KeySource, PENDING } from "@gatehouse/policy-sdk";

let loaded = false;
let source: KeySource | null = null;

function load(): void {
  source = keySource("counterKey");
  loaded = true;
}

export function on_inbound(): i32 {
  return limit();
}

export function on_backend(): i32 {
  return limit();
}

function limit(): i32 {
  if (!loaded) load();
  let key: string | null = "all";
  if (source !== null) {
    key = source!.keyOf();
    if (key === null) key = "none"; // requests without the key share one limit
  }
  const maxCount = config.getInt("maxCount", 1);
  const slot = lease(key!, maxCount, config.getInt("leaseTimeoutSeconds", 300));
  if (slot === null) return PENDING;
  if (slot.acquired) return CONTINUE;
  response.setHeader("retry-after", "1");
  return respondProblem(429, "Too Many Requests", "more than " + maxCount.toString() + " requests in flight at once");
}
