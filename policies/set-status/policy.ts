// set-status: the status code the client receives (Azure API Management's set-status), e.g. a backend's 200 answered
// as 203, or the gateway's 502 for a failed backend answered as 503.
//
// Only outbound and on-error have a handler. In inbound and backend a status written without `respond` is dropped
// when the backend answers (the gateway keeps only the headers of that draft response), and a policy that does
// respond gives its own status: setting one there would do nothing, so the gateway refuses the binding instead.
import { response, config, CONTINUE } from "@gatehouse/policy-sdk";

export function on_outbound(): i32 {
  return apply();
}

export function on_error(): i32 {
  return apply();
}

function apply(): i32 {
  // Read on every call: the gateway may compute it for each request (`code: {expr: ...}`, "x-computed" in schema.json).
  response.setStatus(<i32>config.getInt("code", 200));
  return CONTINUE;
}
