// key-auth: the request must carry one of the configured API keys (Azure API Management's subscription keys, Kong's
// key-auth). The holder's identity goes into a variable (and, if configured, a header) for the policies after it and
// for the backend; the key itself is removed before forwarding unless `hideCredentials` is false.
//
// Keys are compared by their SHA-256: a configuration may hold digests instead of keys, and a lookup by digest takes
// the same time whichever key is tried, so response times tell an attacker nothing about how close a guess was.
import { request, config, vars, respondProblem, parseJson, sha256Hex, CONTINUE } from "@gatehouse/policy-sdk";

/** Digest (lowercase hex) → identity; built from the configuration on the first call (it never changes). */
let holders: Map<string, string> | null = null;
// The rest of the configuration, read on the first call with the keys.
let headerName = "";
let queryName: string | null = null;
let variableName = "";
let identityHeader: string | null = null;
let hideCredentials = true;

function loadConfig(): Map<string, string> {
  headerName = config.getString("header", "x-api-key")!;
  queryName = config.getString("query");
  variableName = config.getString("variable", "subscription-id")!;
  identityHeader = config.getString("identityHeader");
  hideCredentials = config.getBool("hideCredentials", true);
  const map = new Map<string, string>();
  const keys = parseJson(config.getJson("keys")!)!;
  for (let i = 0; i < keys.length; i++) {
    const entry = keys.at(i)!;
    const id = entry.get("id")!.asString()!;
    const key = entry.get("key");
    const digest = key !== null ? sha256Hex(key.asString()!) : entry.get("sha256")!.asString()!.toLowerCase();
    map.set(digest, id);
  }
  return map;
}

export function on_inbound(): i32 {
  return check();
}

export function on_backend(): i32 {
  return check();
}

function check(): i32 {
  if (holders === null) holders = loadConfig();
  let presented = request.header(headerName);
  let fromQuery = false;
  if (presented === null && queryName !== null) {
    presented = request.queryParam(queryName!);
    fromQuery = presented !== null;
  }
  if (presented === null || presented.length == 0) {
    const where = queryName !== null ? "header " + headerName + " or query parameter " + queryName! : "header " + headerName;
    return respondProblem(401, "Unauthorized", "missing API key (" + where + ")");
  }
  const digest = sha256Hex(presented);
  const map = holders!;
  if (!map.has(digest)) return respondProblem(401, "Unauthorized", "invalid API key");
  const id = map.get(digest);
  vars.set(variableName, id);
  if (identityHeader !== null) request.setHeader(identityHeader!, id);
  if (hideCredentials) {
    if (fromQuery) request.removeQueryParam(queryName!);
    else request.removeHeader(headerName);
  }
  return CONTINUE;
}
