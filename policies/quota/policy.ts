// quota: calls and bandwidth per caller over long periods (Azure API Management's quota, which counts per
// subscription). The caller is the identity key-auth put in `identityVariable`; a caller without one is counted by its
// client address. The counting is quota-by-key's (the SDK's quota); for other keys, use quota-by-key.
import { callerKey, config, quota } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 {
  return enforce();
}

export function on_backend(): i32 {
  return enforce();
}

function enforce(): i32 {
  const key = callerKey(config.getString("identityVariable", "subscription-id")!);
  return quota(key, config.getInt("calls", 0), config.getInt("bandwidth", 0), config.getInt("renewalPeriod", 1));
}
