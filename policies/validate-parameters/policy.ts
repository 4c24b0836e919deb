// validate-parameters: the request's query parameters and headers must be those the operation declares (Azure API
// Management's validate-parameters, which reads them from the API's definition; here they are the configuration of
// the operation's entry). A declared parameter missing when required, or with a value not allowed, and a query
// parameter not declared, are each prevented (400, naming the parameter), detected (a warning in the log and the
// errors variable; the request goes on), or ignored.
import { request, config, vars, log, parseJson, respondProblem, CONTINUE } from "@gatehouse/policy-sdk";

class Declared {
  name: string = "";
  required: bool = false;
  values: string[] = [];
}

let query: Declared[] = [];
let headers: Declared[] = [];
let loaded = false;

function declaredIn(key: string, lower: bool): Declared[] {
  const out = new Array<Declared>();
  const text = config.getJson(key);
  if (text === null) return out;
  const list = parseJson(text)!;
  for (let i = 0; i < list.length; i++) {
    const item = list.at(i)!;
    const d = new Declared();
    const name = item.get("name")!.asString("")!;
    d.name = lower ? name.toLowerCase() : name;
    const required = item.get("required");
    d.required = required !== null && required.asBool();
    const values = item.get("values");
    if (values !== null) for (let j = 0; j < values.length; j++) d.values.push(values.at(j)!.asString("")!);
    out.push(d);
  }
  return out;
}

export function on_inbound(): i32 {
  if (!loaded) {
    query = declaredIn("query", false);
    headers = declaredIn("headers", true);
    loaded = true;
  }
  const specified = config.getString("specifiedParameterAction", "prevent")!;
  const unspecified = config.getString("unspecifiedParameterAction", "ignore")!;
  const findings = new Array<string>();
  let prevent = false;
  if (specified != "ignore") {
    for (let i = 0; i < query.length; i++) {
      const f = check("query parameter", query[i], request.queryParam(query[i].name));
      if (f !== null) findings.push(f!);
    }
    for (let i = 0; i < headers.length; i++) {
      const f = check("header", headers[i], request.header(headers[i].name));
      if (f !== null) findings.push(f!);
    }
    prevent = findings.length > 0 && specified == "prevent";
  }
  if (unspecified != "ignore") {
    const names = queryNames(request.query());
    for (let i = 0; i < names.length; i++) {
      if (isDeclared(names[i])) continue;
      findings.push("query parameter " + names[i] + " is not declared");
      if (unspecified == "prevent") prevent = true;
    }
  }
  if (findings.length == 0) return CONTINUE;
  const text = findings.join("; ");
  if (prevent) return respondProblem(400, "Bad Request", text);
  log.warn("validate-parameters: " + text);
  vars.set(config.getString("errorsVariable", "validation-errors")!, text);
  return CONTINUE;
}

/** A finding about one declared parameter (its name, never the value it had), or null. */
function check(kind: string, d: Declared, value: string | null): string | null {
  if (value === null) return d.required ? kind + " " + d.name + " is missing" : null;
  if (d.values.length > 0 && !d.values.includes(value!)) return kind + " " + d.name + " has a value not allowed";
  return null;
}

function isDeclared(name: string): bool {
  for (let i = 0; i < query.length; i++) if (query[i].name == name) return true;
  return false;
}

/** The names in a raw query, each once, as they are written (names that are not visible ASCII are shown as "?"). */
function queryNames(raw: string): string[] {
  const out = new Array<string>();
  if (raw.length == 0) return out;
  const parts = raw.split("&");
  for (let i = 0; i < parts.length; i++) {
    const eq = parts[i].indexOf("=");
    const name = eq < 0 ? parts[i] : parts[i].substring(0, eq);
    if (name.length > 0 && !out.includes(name)) out.push(name);
  }
  return out;
}
