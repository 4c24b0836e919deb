// rate-limit: at most `calls` calls per `renewalPeriod` seconds for each caller (Azure API Management's rate-limit,
// which counts per subscription). The caller is the identity key-auth put in `identityVariable`; a caller without one
// is counted by its client address, so an anonymous flood is limited too. For other keys, use rate-limit-by-key.
import { callerKey, config, rateLimit } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 {
  return limit();
}

export function on_backend(): i32 {
  return limit();
}

// The configuration is read on the first call: four lookups and two number parses fewer on every later one.
let loaded = false;
let identityVariable = "";
let calls: i64 = 1;
let period: i64 = 1;
let headers = true;

function limit(): i32 {
  if (!loaded) {
    identityVariable = config.getString("identityVariable", "subscription-id")!;
    calls = config.getInt("calls", 1);
    period = config.getInt("renewalPeriod", 1);
    headers = config.getBool("headers", true);
    loaded = true;
  }
  return rateLimit(callerKey(identityVariable), calls, period, headers);
}
