// JSON -> XML for json-to-xml: the JSON text is parsed with the SDK's parseJson (whole, at most 64 levels deep; numbers
// kept as written), then written as XML into an array of pieces joined once at the end (no quadratic concatenation on
// big bodies).
//
// Mapping (README.md has it with examples):
//   - the whole value is written as one element named `root`;
//   - an object's members become child elements named by the key, in order; a key `@name` with a string, number,
//     boolean or null value becomes the attribute `name` instead, and a key `#text` with such a value becomes text;
//   - an array member repeats the element once per item (an empty array writes nothing); an array that is itself an
//     item (or the whole value) becomes one element holding an `<item>` element per item;
//   - strings are text, numbers are written exactly as in the JSON text (1.50 stays 1.50), booleans as true/false;
//   - null is an empty element `<name/>` (and an empty string `<name></name>`);
//   - a key that is not an XML name (ASCII letters, digits, `_`, `-`, `.`; non-ASCII letters; not starting with a
//     digit, `-` or `.`; no `:`) is refused, as is a character XML 1.0 cannot carry (U+0000-U+001F other than tab,
//     LF and CR; U+FFFE, U+FFFF).
import { JsonKind, JsonValue, parseJson } from "@gatehouse/policy-sdk";

/** Why the last `jsonToXml` returned null. */
export let conversionError = "";

/** `json` as an XML document whose root element is `root`, or null (see `conversionError`). */
export function jsonToXml(json: string, root: string): string | null {
  const value = parseJson(json);
  if (value === null) {
    conversionError = "the body is not valid JSON (or is nested deeper than 64 levels)";
    return null;
  }
  const out = new Array<string>();
  out.push('<?xml version="1.0" encoding="utf-8"?>');
  if (!writeElement(out, root, value)) return null;
  return out.join("");
}

/** A member: an array repeats the element per item; anything else is one element. */
function writeMember(out: string[], name: string, v: JsonValue): bool {
  if (v.kind == JsonKind.ARRAY) {
    for (let i = 0; i < v.items.length; i++) {
      if (!writeElement(out, name, unchecked(v.items[i]))) return false;
    }
    return true;
  }
  return writeElement(out, name, v);
}

function writeElement(out: string[], name: string, v: JsonValue): bool {
  out.push("<");
  out.push(name);
  const kind = v.kind;
  if (kind == JsonKind.NULL) {
    out.push("/>");
    return true;
  }
  if (kind == JsonKind.OBJECT) {
    // Attributes first: they belong in the start tag.
    for (let i = 0; i < v.keys.length; i++) {
      const key = unchecked(v.keys[i]);
      if (key.length == 0 || key.charCodeAt(0) != 0x40) continue;
      const attr = key.substring(1);
      if (!isXmlName(attr)) return refuseKey(key);
      const item = unchecked(v.items[i]);
      if (item.kind == JsonKind.ARRAY || item.kind == JsonKind.OBJECT) {
        conversionError = 'the member "' + key + '" names an attribute but its value is an ' +
          (item.kind == JsonKind.ARRAY ? "array" : "object");
        return false;
      }
      out.push(" ");
      out.push(attr);
      out.push('="');
      if (!escapeInto(out, scalarText(item), true)) return false;
      out.push('"');
    }
    out.push(">");
    for (let i = 0; i < v.keys.length; i++) {
      const key = unchecked(v.keys[i]);
      if (key.length > 0 && key.charCodeAt(0) == 0x40) continue;
      const item = unchecked(v.items[i]);
      if (key == "#text") {
        if (item.kind == JsonKind.ARRAY || item.kind == JsonKind.OBJECT) {
          conversionError = 'the member "#text" holds text but its value is an ' +
            (item.kind == JsonKind.ARRAY ? "array" : "object");
          return false;
        }
        if (!escapeInto(out, scalarText(item), false)) return false;
        continue;
      }
      if (!isXmlName(key)) return refuseKey(key);
      if (!writeMember(out, key, item)) return false;
    }
  } else if (kind == JsonKind.ARRAY) {
    out.push(">");
    for (let i = 0; i < v.items.length; i++) {
      if (!writeElement(out, "item", unchecked(v.items[i]))) return false;
    }
  } else {
    out.push(">");
    if (!escapeInto(out, scalarText(v), false)) return false;
  }
  out.push("</");
  out.push(name);
  out.push(">");
  return true;
}

function refuseKey(key: string): bool {
  conversionError = "the key " + quoted(key) + " is not a valid XML element or attribute name";
  return false;
}

/** A key for a message: at most 64 characters. */
function quoted(key: string): string {
  return '"' + (key.length > 64 ? key.substring(0, 64) + "..." : key) + '"';
}

/** The text of a string, number (as written), boolean or null (null: empty). */
function scalarText(v: JsonValue): string {
  if (v.kind == JsonKind.STRING) return v.stringValue;
  if (v.kind == JsonKind.NUMBER) return v.numberText;
  if (v.kind == JsonKind.BOOL) return v.boolValue ? "true" : "false";
  return "";
}

/**
 * Appends `s` escaped: `&`, `<` and `>` always, `"` in attributes; CR as `&#13;` (a parser would turn a literal CR
 * into LF), and in attributes tab and LF as references too (a parser would turn them into spaces). False (and
 * `conversionError`) for a character XML 1.0 cannot carry.
 */
function escapeInto(out: string[], s: string, attribute: bool): bool {
  let from = 0;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    let rep: string | null = null;
    if (c == 0x26) rep = "&amp;";
    else if (c == 0x3c) rep = "&lt;";
    else if (c == 0x3e) rep = "&gt;";
    else if (c == 0x22 && attribute) rep = "&quot;";
    else if (c == 0x0d) rep = "&#13;";
    else if (c == 0x0a && attribute) rep = "&#10;";
    else if (c == 0x09 && attribute) rep = "&#9;";
    else if ((c < 0x20 && c != 0x09 && c != 0x0a) || c == 0xfffe || c == 0xffff) {
      conversionError = "the character U+" + c.toString(16).toUpperCase().padStart(4, "0") +
        " cannot be written in XML 1.0";
      return false;
    }
    if (rep !== null) {
      if (i > from) out.push(s.substring(from, i));
      out.push(rep);
      from = i + 1;
    }
  }
  if (from == 0) out.push(s);
  else if (from < n) out.push(s.substring(from));
  return true;
}

/** Whether `s` is an XML name without a namespace prefix (non-ASCII: letters from U+00C0 on, roughly XML's rule). */
export function isXmlName(s: string): bool {
  const n = s.length;
  if (n == 0) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    const start = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x5f ||
      (c >= 0xc0 && c != 0xd7 && c != 0xf7 && c != 0xfffe && c != 0xffff);
    if (start) continue;
    if (i > 0 && ((c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2e || c == 0xb7)) continue;
    return false;
  }
  return true;
}
