// set-method: the HTTP method the backend receives (Azure API Management's set-method), e.g. a GET from clients sent on
// as POST to a backend that only takes POST. Routing has already happened: the operation that matched keeps running
// its policies; only the forwarded request changes.
import { request, config, CONTINUE } from "@gatehouse/policy-sdk";

/** The configured method, upper-cased once (methods are case-sensitive, and the standard ones are upper case). */
let method: string | null = null;

export function on_inbound(): i32 {
  return apply();
}

export function on_backend(): i32 {
  return apply();
}

function apply(): i32 {
  if (method === null) method = config.getString("method", "GET")!.toUpperCase();
  request.setMethod(method!);
  return CONTINUE;
}
