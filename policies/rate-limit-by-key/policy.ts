// rate-limit-by-key: at most `calls` calls per `renewalPeriod` seconds for each value of a key (Azure API Management's
// rate-limit-by-key). The key comes from a header, a variable (e.g. the identity key-auth sets), the client address,
// a query parameter, or a claim of the bearer token. Counters are the gateway's (in memory, or Redis for a fleet),
// namespaced by this binding; over the limit the gateway answers 429 with Retry-After.
import {
  request,
  config,
  vars,
  parseJson,
  base64DecodeText,
  sha256Hex,
  rateLimit,
  respondProblem,
  CONTINUE,
  JsonKind,
} from "@gatehouse/policy-sdk";

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
  let value = keyValue(from!, name);
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

function keyValue(source: string, n: string): string | null {
  if (source == "header") return request.header(n);
  if (source == "variable") return vars.get(n);
  if (source == "client-address") return request.clientAddress();
  if (source == "query") return request.queryParam(n);
  return bearerClaim(n);
}

/**
 * A claim of the bearer token in Authorization, read without checking the token: put validate-jwt before this policy
 * so that only checked tokens get here. Strings as they are, other values as JSON text; null when absent or unreadable.
 */
function bearerClaim(claim: string): string | null {
  const auth = request.header("authorization");
  if (auth === null || auth.length < 8 || auth.substring(0, 7).toLowerCase() != "bearer ") return null;
  const token = auth.substring(7).trim();
  const first = token.indexOf(".");
  const second = first < 0 ? -1 : token.indexOf(".", first + 1);
  if (second < 0) return null;
  const payload = base64DecodeText(token.substring(first + 1, second));
  if (payload === null) return null;
  const claims = parseJson(payload);
  if (claims === null) return null;
  const v = claims.get(claim);
  if (v === null || v.kind == JsonKind.NULL) return null;
  return v.kind == JsonKind.STRING ? v.stringValue : v.toString();
}
