// authentication-basic: sends HTTP Basic credentials to the backend (Azure API Management's authentication-basic). The
// Authorization header the client sent is replaced: the backend sees the gateway's credentials, never the caller's.
// The credentials are encoded once per instance (the configuration does not change for an instance).
import { request, config, base64EncodeText, CONTINUE } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 { return apply(); }
export function on_backend(): i32 { return apply(); }

let header: string | null = null;

function apply(): i32 {
  if (header === null) {
    const credentials = config.getString("username")! + ":" + config.getString("password")!;
    header = "Basic " + base64EncodeText(credentials);
  }
  request.setHeader("authorization", header!);
  return CONTINUE;
}
