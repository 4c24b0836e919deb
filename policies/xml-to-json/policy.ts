// xml-to-json: converts an XML body to JSON (Azure API Management's xml-to-json, kind "direct"). In inbound (and
// backend) it converts the request body the backend receives, in outbound the response body the client receives. The
// parser is xml.ts; the mapping is below and in README.md. A body that is not well-formed XML (or is refused: DOCTYPE,
// depth) is the client's fault in inbound (400 problem) and the backend's in outbound (the call fails, so the
// gateway's on-error answers).
import { request, response, config, fail, respondProblem, accepts, isMediaType, mediaType, utf8Decode, CONTINUE } from "@gatehouse/policy-sdk";
import { XmlElement, isBlank, parseError, parseRefused, parseXml } from "./xml";

const JSON_TYPE = "application/json; charset=utf-8";
const MAX_DEPTH: i32 = 64;

export function on_inbound(): i32 {
  if (!applies(request.header("content-type"), request.header("content-encoding"))) return CONTINUE;
  const body = decodedBody(request.body());
  if (body === null) return respondProblem(400, "Bad Request", "xml-to-json: " + NOT_UTF8);
  if (isBlank(body)) return CONTINUE;
  const json = xmlToJson(body);
  if (json === null) return respondProblem(400, "Bad Request", problem());
  request.setBodyText(json);
  request.setHeader("content-type", JSON_TYPE);
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
    if (!accepts(request.header("accept"), "json", "application")) return CONTINUE;
  }
  const body = decodedBody(response.body());
  if (body === null) return fail("xml-to-json: cannot convert the response body: " + NOT_UTF8);
  if (isBlank(body)) return CONTINUE;
  const json = xmlToJson(body);
  if (json === null) return fail("xml-to-json: cannot convert the response body: " + problem());
  response.setBodyText(json);
  response.setHeader("content-type", JSON_TYPE);
  return CONTINUE;
}

// Only UTF-8 is read: a document declaring another encoding (ISO-8859-1, say) is refused here if its bytes are not
// also UTF-8, rather than converted with U+FFFD in place of its characters.
const NOT_UTF8 = "the body is not valid UTF-8 (the only encoding this policy reads)";

/** The body as text ("" when absent), or null when its bytes are not UTF-8. */
function decodedBody(bytes: Uint8Array | null): string | null {
  return bytes === null ? "" : utf8Decode(bytes);
}

function problem(): string {
  return parseRefused
    ? "the body cannot be converted: " + parseError
    : "the body is not well-formed XML: " + parseError;
}

/** Whether a body with these headers is converted: `apply`, and never a compressed body (its bytes are not XML). */
function applies(contentType: string | null, encoding: string | null): bool {
  if (encoding !== null && encoding.trim().toLowerCase() != "identity") return false;
  if (config.getString("apply", "content-type-xml")! == "always") return true;
  return contentType !== null && isMediaType(mediaType(contentType), "xml");
}

// ---------------------------------------------------------------------------------------------------------------
// The "direct" mapping:
//   - the document is an object with one member, the root element's name;
//   - an element without attributes or child elements is a string (its text), or null when it was written as <a/>;
//   - otherwise an object: "@name" per attribute (document order), then the child elements by name in the order each
//     name first appears (a name that repeats becomes an array of the values, in document order), then "#text" if
//     the element has text (with child elements: text pieces that are whitespace only are ignored; CDATA is text);
//   - every value is a string (or null): numbers and booleans are not guessed.

/** The JSON text for `xml`, or null (see `parseError`). */
function xmlToJson(xml: string): string | null {
  const root = parseXml(xml, MAX_DEPTH);
  if (root === null) return null;
  const out = new Array<string>();
  out.push("{");
  pushString(out, root.name);
  out.push(":");
  writeValue(out, root);
  out.push("}");
  return out.join("");
}

function writeValue(out: string[], e: XmlElement): void {
  const children = e.children;
  if (e.attrNames.length == 0 && children.length == 0) {
    if (e.texts.length == 0) out.push(e.selfClosing ? "null" : '""');
    else pushString(out, e.texts.length == 1 ? e.texts[0] : e.texts.join(""));
    return;
  }
  out.push("{");
  let first = true;
  for (let i = 0; i < e.attrNames.length; i++) {
    if (!first) out.push(",");
    first = false;
    out.push('"@');
    pushChars(out, e.attrNames[i]);
    out.push('":');
    pushString(out, e.attrValues[i]);
  }
  if (children.length > 0) {
    // Group children by name, in the order each name first appears.
    const groupOf = new Map<string, i32>();
    const groups = new Array<XmlElement[]>();
    for (let i = 0; i < children.length; i++) {
      const child = children[i];
      if (groupOf.has(child.name)) {
        groups[groupOf.get(child.name)].push(child);
      } else {
        groupOf.set(child.name, groups.length);
        groups.push([child]);
      }
    }
    for (let g = 0; g < groups.length; g++) {
      const group = groups[g];
      if (!first) out.push(",");
      first = false;
      pushString(out, group[0].name);
      out.push(":");
      if (group.length == 1) {
        writeValue(out, group[0]);
        continue;
      }
      out.push("[");
      for (let k = 0; k < group.length; k++) {
        if (k > 0) out.push(",");
        writeValue(out, group[k]);
      }
      out.push("]");
    }
  }
  const text = textOf(e, children.length > 0);
  if (text.length > 0) {
    if (!first) out.push(",");
    out.push('"#text":');
    pushString(out, text);
  }
  out.push("}");
}

/** The element's text: every piece, or with child elements only the significant ones (not whitespace only, or CDATA). */
function textOf(e: XmlElement, significantOnly: bool): string {
  if (!significantOnly) return e.texts.join("");
  const kept = new Array<string>();
  for (let i = 0; i < e.texts.length; i++) {
    if (e.significant[i]) kept.push(e.texts[i]);
  }
  return kept.join("");
}

/** Appends `s` as a JSON string literal. */
function pushString(out: string[], s: string): void {
  out.push('"');
  pushChars(out, s);
  out.push('"');
}

/** Appends `s` escaped for a JSON string (without the quotes): pieces that need no escaping are pushed as they are. */
function pushChars(out: string[], s: string): void {
  const n = s.length;
  let from = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    if (i > from) out.push(s.substring(from, i));
    if (c == 0x22) out.push('\\"');
    else if (c == 0x5c) out.push("\\\\");
    else if (c == 0x0a) out.push("\\n");
    else if (c == 0x0d) out.push("\\r");
    else if (c == 0x09) out.push("\\t");
    else out.push("\\u00" + (c < 0x10 ? "0" : "") + c.toString(16));
    from = i + 1;
  }
  if (from == 0) out.push(s);
  else if (from < n) out.push(s.substring(from));
}
