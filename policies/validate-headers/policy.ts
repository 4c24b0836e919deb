// validate-headers: the backend's response headers must be those the operation declares (Azure API Management's
// validate-headers, which reads them from the API's definition; here they are the policy's configuration). A
// declared header that is missing when required, or holds a value not allowed, and a header not declared at all, are
// each prevented (502 for the client: the backend broke its contract), detected (a warning in the log and the errors
// variable; the response goes on), or ignored.
import { response, config, vars, log, parseJson, replaceResponseWithProblem, CONTINUE } from "@gatehouse/policy-sdk";

/** Headers of HTTP itself, of caching, CORS and tracing: never "not declared". */
const STANDARD = [
  "accept-ranges", "access-control-allow-credentials", "access-control-allow-headers", "access-control-allow-methods",
  "access-control-allow-origin", "access-control-expose-headers", "access-control-max-age", "age", "allow",
  "cache-control", "connection", "content-encoding", "content-language", "content-length", "content-location",
  "content-range", "content-type", "date", "etag", "expires", "keep-alive", "last-modified", "location", "retry-after",
  "server", "strict-transport-security", "traceparent", "tracestate", "transfer-encoding", "vary", "via",
  "www-authenticate", "x-request-id",
];

class Declared {
  name: string = "";
  required: bool = false;
  values: string[] = [];
}

let declared: Declared[] = [];
let loaded = false;

function load(): void {
  const text = config.getJson("headers");
  if (text !== null) {
    const list = parseJson(text)!;
    for (let i = 0; i < list.length; i++) {
      const item = list.at(i)!;
      const d = new Declared();
      d.name = item.get("name")!.asString("")!.toLowerCase();
      const required = item.get("required");
      d.required = required !== null && required.asBool();
      const values = item.get("values");
      if (values !== null) for (let j = 0; j < values.length; j++) d.values.push(values.at(j)!.asString("")!);
      declared.push(d);
    }
  }
  loaded = true;
}

export function on_outbound(): i32 {
  if (!loaded) load();
  const specified = config.getString("specifiedHeaderAction", "prevent")!;
  const unspecified = config.getString("unspecifiedHeaderAction", "ignore")!;
  const findings = new Array<string>();
  let prevent = false;
  if (specified != "ignore") {
    for (let i = 0; i < declared.length; i++) {
      const d = declared[i];
      const value = response.header(d.name);
      let finding: string | null = null;
      if (value === null) {
        if (d.required) finding = "header " + d.name + " is missing";
      } else if (d.values.length > 0 && !d.values.includes(value)) {
        finding = "header " + d.name + " has a value not allowed";
      }
      if (finding !== null) {
        findings.push(finding);
        if (specified == "prevent") prevent = true;
      }
    }
  }
  if (unspecified != "ignore") {
    const names = response.headerNames();
    for (let i = 0; i < names.length; i++) {
      const name = names[i].toLowerCase();
      if (STANDARD.includes(name) || isDeclared(name)) continue;
      findings.push("header " + name + " is not declared");
      if (unspecified == "prevent") prevent = true;
    }
  }
  if (findings.length == 0) return CONTINUE;
  if (prevent) return replaceResponseWithProblem(502, "Bad Gateway", "the backend's response headers are not those the API declares");
  const text = findings.join("; ");
  log.warn("validate-headers: " + text);
  vars.set(config.getString("errorsVariable", "validation-errors")!, text);
  return CONTINUE;
}

function isDeclared(name: string): bool {
  for (let i = 0; i < declared.length; i++) if (declared[i].name == name) return true;
  return false;
}
