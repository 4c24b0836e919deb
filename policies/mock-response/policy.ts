// mock-response: answers for an operation whose backend does not exist yet (Azure API Management's mock-response,
// which answers from the API's sample responses; Gatehouse has no samples, so the answer is configured here). JSON by
// default, `{}` when no body is given, and marked with `x-gatehouse-mock: true` so that a client can tell a mock
// from the real thing. Before the backend only: mocking is about not calling it.
import { response, config, respond } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 {
  return mock();
}

export function on_backend(): i32 {
  return mock();
}

function mock(): i32 {
  const status = <i32>config.getInt("status", 200);
  const contentType = config.getString("contentType", "application/json")!;
  response.setHeader("x-gatehouse-mock", "true");
  response.setHeader("content-type", contentType);
  response.setBodyText(config.getString("body", defaultBody(status, contentType))!);
  return respond(status);
}

/** `{}` for a JSON answer that may have content (not 204, 205, 304); otherwise empty. */
function defaultBody(status: i32, contentType: string): string {
  if (status == 204 || status == 205 || status == 304) return "";
  return isJson(contentType) ? "{}" : "";
}

/** application/json, or a +json type such as application/problem+json (parameters like charset ignored). */
function isJson(contentType: string): bool {
  const semicolon = contentType.indexOf(";");
  const type = (semicolon < 0 ? contentType : contentType.substring(0, semicolon)).trim().toLowerCase();
  return type == "application/json" || type.endsWith("+json");
}
