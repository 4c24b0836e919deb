// quota-by-key: calls and bandwidth per key over long periods (Azure API Management's quota-by-key). Calls are counted
// as they come; bandwidth (request and response bodies, in kilobytes) is counted when each exchange ends, so the
// request that crosses the quota completes and the next ones are refused. Over the quota: 403, with Retry-After.
import { config, counter, keySource, meter, respondProblem, response, CONTINUE, KeySource, PENDING } from "@gatehouse/policy-sdk";

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
  // Both counters are asked for before waiting, so that with Redis they take one round together.
  const used = calls > 0 ? counter(key! + ":calls", calls, period) : null;
  const kilobytes = bandwidth > 0 ? counter(key! + ":kb", bandwidth, period, 0) : null;
  if ((calls > 0 && used === null) || (bandwidth > 0 && kilobytes === null)) return PENDING;
  if (used !== null && !used.allowed) {
    return refuse("call quota of " + calls.toString() + " calls", used.resetSeconds);
  }
  if (kilobytes !== null && kilobytes.remaining <= 0) {
    return refuse("bandwidth quota of " + bandwidth.toString() + " KB", kilobytes.resetSeconds);
  }
  if (bandwidth > 0 && !meter(key! + ":kb", period, true)) return PENDING;
  return CONTINUE;
}

function refuse(what: string, resetSeconds: i64): i32 {
  const retry = resetSeconds > 0 ? resetSeconds : 1;
  response.setHeader("retry-after", retry.toString());
  return respondProblem(
    403,
    "Forbidden",
    what + " per " + period.toString() + " s used up; replenished in " + retry.toString() + " s",
  );
}
