// rate-limit: at most `calls` calls per `renewalPeriod` seconds for each caller (Azure API Management's rate-limit,
// which counts per subscription). The caller is the identity key-auth put in `identityVariable`; a caller without one
// is counted by its client address, so an anonymous flood is limited too. For other keys, use rate-limit-by-key.
import { request, config, vars, rateLimit } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 {
  return limit();
}

export function on_backend(): i32 {
  return limit();
}

function limit(): i32 {
  const identity = vars.get(config.getString("identityVariable", "subscription-id")!);
  // "id:" and "ip:" keep an identity that looks like an address from sharing that address's counter.
  const key = identity !== null && identity.length > 0 ? "id:" + identity : "ip:" + request.clientAddress();
  return rateLimit(key, config.getInt("calls", 1), config.getInt("renewalPeriod", 1), config.getBool("headers", true));
}
