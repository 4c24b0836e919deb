// limit-concurrency: at most `maxCount` requests in flight at once, per key or for all requests through this policy
// (Azure API Management's limit-concurrency). A request takes a slot here and holds it until its response has been
// sent (or abandoned); one that finds every slot taken is answered 429 at once rather than queued.
import { config, lease, parseJson, respondProblem, response, sha256Hex, valueFrom, CONTINUE, PENDING } from "@gatehouse/policy-sdk";

const MAX_KEY_LENGTH = 200;

let loaded = false;
let from = "";
let name = "";

function load(): void {
  const ck = config.getJson("counterKey");
  if (ck !== null) {
    const counterKey = parseJson(ck)!;
    from = counterKey.get("from")!.asString()!;
    const n = counterKey.get("name");
    name = n === null ? "" : n.asString()!;
  }
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
  let key = "all";
  if (from.length > 0) {
    const value = valueFrom(from, name);
    // Requests without the key share one limit.
    key = value === null || value.length == 0 ? "none" : value.length > MAX_KEY_LENGTH ? "#" + sha256Hex(value) : "=" + value;
  }
  const maxCount = config.getInt("maxCount", 1);
  const slot = lease(key, maxCount, config.getInt("leaseTimeoutSeconds", 300));
  if (slot === null) return PENDING;
  if (slot.acquired) return CONTINUE;
  response.setHeader("retry-after", "1");
  return respondProblem(429, "Too Many Requests", "more than " + maxCount.toString() + " requests in flight at once");
}
