// json-to-xml: converts a JSON body to XML (Azure API Management's json-to-xml). In inbound (and backend) it converts
// the request body the backend receives, in outbound the response body the client receives; the mapping is in
// xml-writer.ts and README.md. A body the policy cannot convert is the client's fault in inbound (400 problem) and the
// backend's in outbound (the call fails, so the gateway's on-error answers).
import { request, response, config, fail, respondProblem, accepts, isMediaType, mediaType, utf8Decode, CONTINUE } from "@gatehouse/policy-sdk";
import { conversionError, jsonToXml } from "./xml-writer";

const XML_TYPE = "application/xml; charset=utf-8";

export function on_inbound(): i32 {
  if (!applies(request.header("content-type"), request.header("content-encoding"))) return CONTINUE;
  const body = decodedBody(request.body());
  if (body === null) return respondProblem(400, "Bad Request", "json-to-xml: " + NOT_UTF8);
  if (isBlank(body)) return CONTINUE;
  const xml = jsonToXml(body, config.getString("rootElement", "document")!);
  if (xml === null) return respondProblem(400, "Bad Request", "json-to-xml: " + conversionError);
  request.setBodyText(xml);
  request.setHeader("content-type", XML_TYPE);
  return CONTINUE;
}

export function on_backend(): i32 {
  return on_inbound();
}

export function on_outbound(): i32 {
  if (!applies(response.header("content-type"), response.header("content-encoding"))) return CONTINUE;
  if (config.getBool("considerAcceptHeader", true)) {
    // The answer now depends on Accept: caches must know.
    response.addHeader("vary", "Accept");
    if (!accepts(request.header("accept"), "xml")) return CONTINUE;
  }
  const body = decodedBody(response.body());
  if (body === null) return fail("json-to-xml: cannot convert the response body: " + NOT_UTF8);
  if (isBlank(body)) return CONTINUE;
  const xml = jsonToXml(body, config.getString("rootElement", "document")!);
  if (xml === null) return fail("json-to-xml: cannot convert the response body: " + conversionError);
  response.setBodyText(xml);
  response.setHeader("content-type", XML_TYPE);
  return CONTINUE;
}

/** Whether a body with these headers is converted: `apply`, and never a compressed body (its bytes are not JSON). */
function applies(contentType: string | null, encoding: string | null): bool {
  if (encoding !== null && encoding.trim().toLowerCase() != "identity") return false;
  if (config.getString("apply", "content-type-json")! == "always") return true;
  return contentType !== null && isMediaType(mediaType(contentType), "json", "application");
}

const NOT_UTF8 = "the body is not valid UTF-8 (JSON is exchanged as UTF-8: RFC 8259)";

/** The body as text ("" when absent), or null when its bytes are not UTF-8 (they would be decoded as U+FFFD). */
function decodedBody(bytes: Uint8Array | null): string | null {
  return bytes === null ? "" : utf8Decode(bytes);
}

function isBlank(s: string): bool {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) return false;
  }
  return true;
}
