// validate-jwt: the request must carry a JSON Web Token (RFC 7519) signed by one of the configured keys, unexpired,
// from an accepted issuer and for an accepted audience, with the required claims (Azure API Management's
// validate-jwt). HS256 is checked inside the module (the SDK's HMAC-SHA-256); RS256/384/512, PS256/384/512 and
// ES256/384 through the host's `verify`. Keys come from the configuration (keys, jwks) and from OpenID Connect issuers
// (openidConfig), whose keys the gateway fetches and keeps (the KEYS effect): the module never fetches anything. A token that fails gets 401 with a reason (which check failed) that never includes the token, a
// key or a claim's value.
import {
  request,
  response,
  config,
  vars,
  now,
  parseJson,
  JsonValue,
  JsonKind,
  base64Decode,
  hmacSha256,
  constantTimeEqual,
  verifySignature,
  openidKeys,
  respondProblem,
  CONTINUE,
  PENDING,
} from "@gatehouse/policy-sdk";

/** A signing key from the configuration: an HS256 secret, or a public JWK (as JSON text) for the host to check with. */
class SigningKey {
  kid: string | null = null;
  /** The algorithm the key is for, when it says (a JWK's alg; HS256 for secrets). */
  alg: string | null = null;
  secret: Uint8Array | null = null;
  jwkText: string | null = null;
  kty: string = "";
  crv: string | null = null;
}

let keys: SigningKey[] = [];
/** Discovery URLs (openidConfig), each with the last KEYS result and the keys parsed from it. */
let openidUrls: string[] = [];
let openidResults: string[] = [];
let openidKeySets: SigningKey[][] = [];
let issuers: string[] = [];
let audiences: string[] = [];
let claimNames: string[] = [];
let claimValues: string[][] = [];
let loaded = false;

function load(): void {
  const keysJson = config.getJson("keys");
  if (keysJson !== null) {
    const list = parseJson(keysJson)!;
    for (let i = 0; i < list.length; i++) {
      const entry = list.at(i)!;
      const kid = entry.get("kid");
      const secret = entry.get("secret");
      let key: SigningKey | null = secret !== null ? secretKey(secret.asString()!) : jwkKey(entry.get("jwk")!);
      if (key === null) continue;
      if (kid !== null) key.kid = kid.asString();
      keys.push(key);
    }
  }
  const jwks = config.getJson("jwks");
  if (jwks !== null) {
    const list = parseJson(jwks)!.get("keys")!;
    for (let i = 0; i < list.length; i++) {
      const key = jwkKey(list.at(i)!);
      if (key !== null) keys.push(key);
    }
  }
  openidUrls = config.getStringArray("openidConfig");
  for (let i = 0; i < openidUrls.length; i++) {
    openidResults.push("");
    openidKeySets.push([]);
  }
  issuers = config.getStringArray("issuers");
  audiences = config.getStringArray("audiences");
  const required = config.getJson("requiredClaims");
  if (required !== null) {
    const list = parseJson(required)!;
    for (let i = 0; i < list.length; i++) {
      const c = list.at(i)!;
      claimNames.push(c.get("name")!.asString()!);
      const values = new Array<string>();
      const v = c.get("values");
      if (v !== null) for (let j = 0; j < v.length; j++) values.push(v.at(j)!.asString("")!);
      claimValues.push(values);
    }
  }
  loaded = true;
}

function secretKey(encoded: string): SigningKey | null {
  const bytes = base64Decode(encoded);
  if (bytes === null) return null;
  const key = new SigningKey();
  key.alg = "HS256";
  key.kty = "oct";
  key.secret = bytes;
  return key;
}

/** A JWK: public RSA and EC keys for the host; symmetric (oct) keys of a JWKS for HS256. Others are left out. */
function jwkKey(jwk: JsonValue): SigningKey | null {
  const key = new SigningKey();
  key.kty = jwk.get("kty") !== null ? jwk.get("kty")!.asString("")! : "";
  const use = jwk.get("use");
  if (use !== null && use.asString("") != "sig") return null;
  const kid = jwk.get("kid");
  if (kid !== null) key.kid = kid.asString();
  const alg = jwk.get("alg");
  if (alg !== null) key.alg = alg.asString();
  const crv = jwk.get("crv");
  if (crv !== null) key.crv = crv.asString();
  if (key.kty == "oct") {
    const k = jwk.get("k");
    if (k === null) return null;
    key.secret = base64Decode(k.asString("")!);
    if (key.secret === null) return null;
    if (key.alg === null) key.alg = "HS256";
    return key;
  }
  if (key.kty != "RSA" && key.kty != "EC") return null;
  key.jwkText = jwk.toString();
  return key;
}

export function on_inbound(): i32 {
  return validate();
}

export function on_backend(): i32 {
  return validate();
}

/** Reasons are fixed texts: which check failed, never what the token held. */
function refuse(reason: string): i32 {
  response.setHeader("www-authenticate", 'Bearer error="invalid_token", error_description="' + reason + '"');
  return respondProblem(<i32>config.getInt("failedValidationHttpCode", 401), "Unauthorized", "invalid token: " + reason);
}

function validate(): i32 {
  if (!loaded) load();
  const token = presentedToken();
  if (token === null) {
    response.setHeader("www-authenticate", "Bearer");
    return respondProblem(<i32>config.getInt("failedValidationHttpCode", 401), "Unauthorized", "no token");
  }
  const dot1 = token.indexOf(".");
  const dot2 = dot1 < 0 ? -1 : token.indexOf(".", dot1 + 1);
  if (dot2 < 0 || token.indexOf(".", dot2 + 1) >= 0) return refuse("malformed");
  const headerText = decodeText(token.substring(0, dot1));
  const payloadText = decodeText(token.substring(dot1 + 1, dot2));
  const signature = base64Decode(token.substring(dot2 + 1));
  if (headerText === null || payloadText === null || signature === null) return refuse("malformed");
  const header = parseJson(headerText);
  const claims = parseJson(payloadText);
  if (header === null || claims === null || header.kind != JsonKind.OBJECT || claims.kind != JsonKind.OBJECT) {
    return refuse("malformed");
  }
  // Extensions the token says must be understood: none are, so such a token is refused (RFC 7515, 4.1.11).
  if (header.has("crit")) return refuse("unsupported header");
  const alg = header.get("alg") !== null ? header.get("alg")!.asString("")! : "";
  const kidValue = header.get("kid");
  const kid = kidValue !== null ? kidValue.asString() : null;
  // Every issuer's keys are asked for first, so that fetches the gateway must make run together.
  let pending = false;
  for (let i = 0; i < openidUrls.length; i++) {
    const result = openidKeys(openidUrls[i], kid !== null ? kid! : "");
    if (result === null) pending = true;
    else if (result! != openidResults[i]) {
      openidResults[i] = result!;
      openidKeySets[i] = keysOf(result!);
    }
  }
  if (pending) return PENDING;
  if (!signatureValid(alg, kid, String.UTF8.encode(token.substring(0, dot2)), signature)) {
    return refuse(keys.length == 0 && !anyFetchedKeys() ? "signing keys unavailable" : "signature");
  }
  return checkClaims(claims);
}

function presentedToken(): string | null {
  const headerName = config.getString("header", "authorization")!;
  let value = request.header(headerName);
  if (value !== null && headerName.toLowerCase() == "authorization") {
    value = value.length > 7 && value.substring(0, 7).toLowerCase() == "bearer " ? value.substring(7).trim() : null;
  }
  if (value === null) {
    const query = config.getString("query");
    if (query !== null) value = request.queryParam(query);
  }
  return value !== null && value.length > 0 ? value : null;
}

function decodeText(part: string): string | null {
  const bytes = base64Decode(part);
  return bytes === null ? null : String.UTF8.decodeUnsafe(bytes.dataStart, <usize>bytes.length);
}

/** The keys of a KEYS result (`{"keys":[...]}`); none for an error result. */
function keysOf(result: string): SigningKey[] {
  const out: SigningKey[] = [];
  const parsed = parseJson(result);
  if (parsed === null || parsed.kind != JsonKind.OBJECT) return out;
  const list = parsed.get("keys");
  if (list === null || list.kind != JsonKind.ARRAY) return out;
  for (let i = 0; i < list.length; i++) {
    const item = list.at(i)!;
    if (item.kind != JsonKind.OBJECT) continue;
    const key = jwkKey(item);
    // An issuer's keys are public keys: a symmetric key from a fetched document is never an HMAC secret here.
    if (key !== null && key.secret === null) out.push(key);
  }
  return out;
}

function anyFetchedKeys(): bool {
  for (let i = 0; i < openidKeySets.length; i++) if (openidKeySets[i].length > 0) return true;
  return false;
}

/** Some key that fits the token's algorithm (and kid, when both have one) must verify the signature. */
function signatureValid(alg: string, kid: string | null, signingInput: ArrayBuffer, signature: Uint8Array): bool {
  const hmac = alg == "HS256";
  const rsa = alg == "RS256" || alg == "RS384" || alg == "RS512" || alg == "PS256" || alg == "PS384" || alg == "PS512";
  if (!hmac && !rsa && alg != "ES256" && alg != "ES384") return false;
  const input = Uint8Array.wrap(signingInput);
  if (keyVerifies(keys, alg, hmac, kid, input, signature)) return true;
  for (let i = 0; i < openidKeySets.length; i++) {
    if (keyVerifies(openidKeySets[i], alg, hmac, kid, input, signature)) return true;
  }
  return false;
}

function keyVerifies(keys: SigningKey[], alg: string, hmac: bool, kid: string | null, input: Uint8Array, signature: Uint8Array): bool {
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    if (kid !== null && key.kid !== null && key.kid! != kid) continue;
    if (key.alg !== null && key.alg! != alg) continue;
    // A key of one kind never checks a token of another (an RSA key's JWK text must not become an HMAC secret).
    if (hmac != (key.secret !== null)) continue;
    if (hmac) {
      if (constantTimeEqual(hmacSha256(key.secret!, input), signature)) return true;
    } else if (kindFits(alg, key) && verifySignature(alg, key.jwkText!, input, signature) == 1) {
      return true;
    }
  }
  return false;
}

function kindFits(alg: string, key: SigningKey): bool {
  if (alg.startsWith("RS") || alg.startsWith("PS")) return key.kty == "RSA";
  const curve = alg == "ES256" ? "P-256" : "P-384";
  return key.kty == "EC" && key.crv !== null && key.crv! == curve;
}

function checkClaims(claims: JsonValue): i32 {
  const nowSeconds = now() / 1000;
  const skew = <f64>config.getInt("clockSkewSeconds", 0);
  const exp = claims.get("exp");
  if (exp === null) {
    if (config.getBool("requireExpirationTime", true)) return refuse("no expiration time");
  } else if (exp.kind != JsonKind.NUMBER) {
    return refuse("malformed");
  } else if (exp.numberValue + skew <= nowSeconds) {
    return refuse("expired");
  }
  const nbf = claims.get("nbf");
  if (nbf !== null && (nbf.kind != JsonKind.NUMBER || nbf.numberValue - skew > nowSeconds)) return refuse("not yet valid");
  if (issuers.length > 0 && !anyOf(claims.get("iss"), issuers, false)) return refuse("issuer");
  if (audiences.length > 0 && !anyOf(claims.get("aud"), audiences, false)) return refuse("audience");
  for (let i = 0; i < claimNames.length; i++) {
    const claim = claims.get(claimNames[i]);
    if (claim === null || claim.kind == JsonKind.NULL) return refuse("claim " + claimNames[i] + " missing");
    if (claimValues[i].length > 0 && !anyOf(claim, claimValues[i], true)) return refuse("claim " + claimNames[i] + " not accepted");
  }
  const sub = claims.get("sub");
  if (sub !== null && sub.kind == JsonKind.STRING) vars.set("jwt-subject", sub.stringValue);
  vars.set("jwt-claims", claims.toString());
  return CONTINUE;
}

/**
 * Whether the claim holds one of `accepted`: a string equal to one (with `words`, a space-separated list like `scope`
 * containing one as a word), or an array with one among its strings.
 */
function anyOf(claim: JsonValue | null, accepted: string[], words: bool): bool {
  if (claim === null) return false;
  if (claim.kind == JsonKind.STRING) {
    if (!words) return accepted.includes(claim.stringValue);
    const list = claim.stringValue.split(" ");
    for (let w = 0; w < list.length; w++) if (accepted.includes(list[w])) return true;
    return false;
  }
  if (claim.kind == JsonKind.ARRAY) {
    for (let i = 0; i < claim.length; i++) {
      const item = claim.at(i)!;
      if (item.kind == JsonKind.STRING && accepted.includes(item.stringValue)) return true;
    }
  }
  return false;
}
