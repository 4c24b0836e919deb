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

function limit(): i32 {
  const key = callerKey(config.getString("identityVariable", "subscription-id")!);
  return rateLimit(key, config.getInt("calls", 1), config.getInt("renewalPeriod", 1), config.getBool("headers", true));
}
