// cors: cross-origin resource sharing (Fetch standard; Azure API Management's cors). A preflight (OPTIONS with
// Origin and Access-Control-Request-Method) is answered here, 204, when its origin, method and headers are allowed.
// For other requests from an allowed origin, the CORS headers are set on the response before the backend is called,
// and the gateway applies them to the backend's answer (Vary is added to, not replaced). One binding, inbound, does
// both; requests without Origin are not CORS requests and pass untouched.
import { request, response, config, respond, CONTINUE } from "@gatehouse/policy-sdk";

let loaded = false;
let anyOrigin = false;
let exactOrigins = new Set<string>();
/** `.example.com` for `https://*.example.com`, with its scheme apart. */
let suffixOrigins = new Array<string>();
let suffixSchemes = new Array<string>();
let anyMethod = false;
let methods = new Set<string>();
let anyHeader = false;
let allowedHeaders = new Set<string>();
let credentials = false;
let exposed = "";
let maxAge = "";

function load(): void {
  const origins = config.getStringArray("allowedOrigins");
  for (let i = 0; i < origins.length; i++) {
    const o = origins[i].toLowerCase();
    if (o == "*") anyOrigin = true;
    else if (o.includes("://*.")) {
      const at = o.indexOf("://*.");
      suffixSchemes.push(o.substring(0, at + 3));
      suffixOrigins.push(o.substring(at + 4));
    } else exactOrigins.add(o);
  }
  const m = config.has("allowedMethods")
    ? config.getStringArray("allowedMethods")
    : ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
  for (let i = 0; i < m.length; i++) {
    if (m[i] == "*") anyMethod = true;
    else methods.add(m[i].toUpperCase());
  }
  const h = config.getStringArray("allowedHeaders");
  for (let i = 0; i < h.length; i++) {
    if (h[i] == "*") anyHeader = true;
    else allowedHeaders.add(h[i].toLowerCase());
  }
  credentials = config.getBool("allowCredentials", false);
  exposed = config.getStringArray("exposeHeaders").join(", ");
  maxAge = config.has("maxAge") ? config.getInt("maxAge", 0).toString() : "";
  loaded = true;
}

export function on_inbound(): i32 {
  const origin = request.header("origin");
  if (origin === null) return CONTINUE;
  if (!loaded) load();
  const allowed = originAllowed(origin);
  const requestedMethod = request.header("access-control-request-method");
  if (requestedMethod !== null && request.method() == "OPTIONS") return preflight(origin, allowed, requestedMethod);
  if (!allowed) return CONTINUE; // the browser keeps the answer from the page
  allowOrigin(origin);
  if (exposed.length > 0) response.setHeader("access-control-expose-headers", exposed);
  return CONTINUE;
}

function preflight(origin: string, originOk: bool, method: string): i32 {
  const askedHeaders = request.header("access-control-request-headers");
  if (originOk && methodAllowed(method) && headersAllowed(askedHeaders)) {
    allowOrigin(origin);
    response.setHeader("access-control-allow-methods", anyMethod && !credentials ? "*" : method);
    if (askedHeaders !== null && askedHeaders.length > 0) response.setHeader("access-control-allow-headers", askedHeaders);
    if (maxAge.length > 0) response.setHeader("access-control-max-age", maxAge);
    response.addHeader("vary", "Access-Control-Request-Method, Access-Control-Request-Headers");
    return respond(204);
  }
  if (!config.getBool("terminateUnmatchedRequest", true)) return CONTINUE;
  // No CORS headers: the browser refuses the cross-origin request, and the backend never sees the preflight.
  response.addHeader("vary", "Origin");
  return respond(200);
}

/** Access-Control-Allow-Origin (and -Credentials), with Vary: Origin unless the answer is the same for every origin. */
function allowOrigin(origin: string): void {
  if (anyOrigin && !credentials) {
    response.setHeader("access-control-allow-origin", "*");
    return;
  }
  response.setHeader("access-control-allow-origin", origin);
  if (credentials) response.setHeader("access-control-allow-credentials", "true");
  response.addHeader("vary", "Origin");
}

function originAllowed(origin: string): bool {
  if (anyOrigin) return true;
  const o = origin.toLowerCase();
  if (exactOrigins.has(o)) return true;
  for (let i = 0; i < suffixOrigins.length; i++) {
    const scheme = suffixSchemes[i];
    const suffix = suffixOrigins[i];
    // https://a.example.com matches https://*.example.com; https://example.com and https://evil-example.com do not.
    if (o.startsWith(scheme) && o.length > scheme.length + suffix.length && o.endsWith(suffix)) return true;
  }
  return false;
}

function methodAllowed(method: string): bool {
  return anyMethod || methods.has(method.toUpperCase());
}

function headersAllowed(asked: string | null): bool {
  if (asked === null || anyHeader) return true;
  const names = asked.split(",");
  for (let i = 0; i < names.length; i++) {
    const name = names[i].trim().toLowerCase();
    if (name.length > 0 && !allowedHeaders.has(name)) return false;
  }
  return true;
}
