// quota-by-key: calls and bandwidth per key over long periods (Azure API Management's quota-by-key). Calls are counted
// as they come; bandwidth (request and response bodies, in kilobytes) is counted when each exchange ends, so the
// request that crosses the quota completes and the next ones are refused. Over the quota: 403, with Retry-After.
import { config, keySource, quota, respondProblem, CONTINUE, KeySource } from "@gatehouse/policy-sdk";

let loaded = false;
let source: KeySource | null = null;
let calls: i64 = 0;
let bandwidth: i64 = 0;
let period: i64 = 0;

function load(): void {
  source = keySource("counterKey");
  calls = config.getInt("calls", 0);
  bandwidth = config.getInt("bandwidth", 0);
  period = config.getInt("renewalPeriod", 1);
  loaded = true;
}

export function on_inbound(): i32 {
  return enforce();
}

export function on_backend(): i32 {
  return enforce();
}

function enforce(): i32 {
  if (!loaded) load();
  let key = source!.keyOf();
  if (key === null) {
    const onMissing = config.getString("onMissingKey", "shared")!;
    if (onMissing == "allow") return CONTINUE;
    if (onMissing == "reject") return respondProblem(400, "Bad Request", "the quota key (" + source!.describe() + ") is missing");
    key = "none";
  }
  return quota(key!, calls, bandwidth, period);
}
