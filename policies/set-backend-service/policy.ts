// set-backend-service: sends the request to another backend than the API's (Azure API Management's
// set-backend-service with base-url). Only the base URL changes: the gateway still appends the path below the API's
// prefix and the query, exactly as it does for the API's own backend.
//
// The schema admits only http(s) URLs without credentials, query or fragment, which the gateway would not send; the
// host checks the URL again (BACKEND_URL) and refuses one it cannot parse, which fails the call.
import { request, config, log, CONTINUE } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 {
  return route();
}

export function on_backend(): i32 {
  return route();
}

function route(): i32 {
  const baseUrl = config.getString("baseUrl")!;
  request.setBackendUrl(baseUrl);
  log.debug("set-backend-service: forwarding to " + baseUrl);
  return CONTINUE;
}
