// set-header: sets, appends, skips or deletes a header (Azure API Management's set-header).
// In inbound and backend it acts on the request; in outbound and on-error on the response.
import { request, response, config, CONTINUE } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 { return apply(true); }
export function on_backend(): i32 { return apply(true); }
export function on_outbound(): i32 { return apply(false); }
export function on_error(): i32 { return apply(false); }

function apply(onRequest: bool): i32 {
  const name = config.getString("name")!;
  const value = config.getString("value", "")!;
  const action = config.getString("existsAction", "override")!;
  if (action == "delete") {
    if (onRequest) request.removeHeader(name);
    else response.removeHeader(name);
  } else if (action == "skip" && (onRequest ? request.header(name) : response.header(name)) != null) {
    // Keep the existing value (read only for "skip": a host call saved on every other call).
  } else if (action == "append") {
    if (onRequest) request.addHeader(name, value);
    else response.addHeader(name, value);
  } else {
    if (onRequest) request.setHeader(name, value);
    else response.setHeader(name, value);
  }
  return CONTINUE;
}
