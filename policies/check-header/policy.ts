// check-header: the request must carry a header, optionally with one of the accepted values
// (Azure API Management's check-header). Otherwise the gateway answers with the configured status.
import { request, config, respond, CONTINUE } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 {
  return check();
}

export function on_backend(): i32 {
  return check();
}

// The configuration never changes for an instance (no key of it is computed): read on the first call, with the
// accepted values lowered once when case is ignored and the refusal's body rendered once.
let loaded = false;
let name = "";
let values: string[] = [];
let ignoreCase = false;
let status: i32 = 401;
let refusal = "";

function check(): i32 {
  if (!loaded) load();
  const value = request.header(name);
  if (value != null && accepted(value)) return CONTINUE;
  return respond(status, refusal, "application/json");
}

function load(): void {
  name = config.getString("name")!;
  ignoreCase = config.getBool("ignoreCase", false);
  values = config.getStringArray("values");
  if (ignoreCase) for (let i = 0; i < values.length; i++) values[i] = values[i].toLowerCase();
  status = <i32>config.getInt("failedCheckHttpCode", 401);
  const message = config.getString("failedCheckErrorMessage", "missing or invalid header " + name)!;
  refusal = '{"error":"' + escapeJson(message) + '"}';
  loaded = true;
}

function accepted(value: string): bool {
  if (values.length == 0) return true;
  const given = ignoreCase ? value.toLowerCase() : value;
  for (let i = 0; i < values.length; i++) if (unchecked(values[i]) == given) return true;
  return false;
}

function escapeJson(s: string): string {
  return s.replaceAll("\\", "\\\\").replaceAll('"', '\\"');
}
