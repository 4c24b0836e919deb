// check-header: the request must carry a header, optionally with one of the accepted values
// (Azure API Management's check-header). Otherwise the gateway answers with the configured status.
import { request, config, respond, CONTINUE } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 {
  return check();
}

export function on_backend(): i32 {
  return check();
}

function check(): i32 {
  const name = config.getString("name")!;
  const value = request.header(name);
  if (value != null && accepted(value)) return CONTINUE;
  const status = <i32>config.getInt("failedCheckHttpCode", 401);
  const message = config.getString("failedCheckErrorMessage", "missing or invalid header " + name)!;
  return respond(status, '{"error":"' + escapeJson(message) + '"}', "application/json");
}

function accepted(value: string): bool {
  const values = config.getStringArray("values");
  if (values.length == 0) return true;
  const ignoreCase = config.getBool("ignoreCase", false);
  const given = ignoreCase ? value.toLowerCase() : value;
  for (let i = 0; i < values.length; i++) {
    const candidate = ignoreCase ? values[i].toLowerCase() : values[i];
    if (candidate == given) return true;
  }
  return false;
}

function escapeJson(s: string): string {
  return s.replaceAll("\\", "\\\\").replaceAll('"', '\\"');
}
