// set-header: sets, appends, skips or deletes a header (Azure API Management's set-header).
// In inbound and backend it acts on the request; in outbound and on-error on the response.
import { request, response, config, CONTINUE } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 { return apply(true); }
export function on_backend(): i32 { return apply(true); }
export function on_outbound(): i32 { return apply(false); }
export function on_error(): i32 { return apply(false); }

// The name and action are read on the first call; `value` on each, since a configuration may compute it per request
// (schema.json marks it x-computed; the SDK remembers it when it is fixed).
let loaded = false;
let name = "";
const OVERRIDE = 0, SKIP = 1, APPEND = 2, DELETE = 3;
let action = OVERRIDE;

function apply(onRequest: bool): i32 {
  if (!loaded) {
    name = config.getString("name")!;
    const given = config.getString("existsAction", "override")!;
    action = given == "delete" ? DELETE : given == "skip" ? SKIP : given == "append" ? APPEND : OVERRIDE;
    loaded = true;
  }
  if (action == DELETE) {
    if (onRequest) request.removeHeader(name);
    else response.removeHeader(name);
  } else if (action == SKIP && (onRequest ? request.header(name) : response.header(name)) != null) {
    // Keep the existing value (read only for "skip": a host call saved on every other call).
  } else {
    const value = config.getString("value", "")!;
    if (action == APPEND) {
      if (onRequest) request.addHeader(name, value);
      else response.addHeader(name, value);
    } else if (onRequest) request.setHeader(name, value);
    else response.setHeader(name, value);
  }
  return CONTINUE;
}
