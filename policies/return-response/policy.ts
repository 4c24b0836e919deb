// return-response: ends the chain with the response its configuration describes (Azure API Management's
// return-response). In inbound and backend the backend is never called. In outbound and on-error the response so far
// (the backend's, or the gateway's error answer) is replaced as a whole, so none of its headers or body reach the
// client: APIM's return-response also starts from an empty 200 rather than from the current response.
import { response, config, parseJson, respond } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 {
  return answer(false);
}

export function on_backend(): i32 {
  return answer(false);
}

export function on_outbound(): i32 {
  return answer(true);
}

export function on_error(): i32 {
  return answer(true);
}

/**
 * The configured headers, parsed again only when their JSON changes: the gateway may compute values for each request
 * (`{expr: ...}`, "x-computed" in schema.json), and then gives this call its own; otherwise they never change.
 */
let headersJson: string | null = null;
let headerNames: string[] = [];
let headerValues: string[] = [];

function answer(replacing: bool): i32 {
  // Before the backend, the response holds only what earlier policies set for the client (CORS, RateLimit-*): kept.
  if (replacing) response.removeHeadersExcept([]);
  setConfiguredHeaders();
  const contentType = config.getString("contentType");
  if (contentType !== null) response.setHeader("content-type", contentType);
  // Written even when empty: respond() keeps the body set so far, and a backend's body must not show through.
  response.setBodyText(config.getString("body", "")!);
  return respond(<i32>config.getInt("status", 200));
}

function setConfiguredHeaders(): void {
  const json = config.getJson("headers");
  if (json != headersJson) loadHeaders(json);
  for (let i = 0; i < headerNames.length; i++) response.setHeader(headerNames[i], headerValues[i]);
}

function loadHeaders(json: string | null): void {
  const names = new Array<string>();
  const values = new Array<string>();
  if (json !== null) {
    const headers = parseJson(json)!;
    for (let i = 0; i < headers.keys.length; i++) {
      names.push(headers.keys[i]);
      values.push(headers.items[i].asString("")!);
    }
  }
  headersJson = json;
  headerNames = names;
  headerValues = values;
}
