// A small XML parser for xml-to-json: the whole document into a tree of elements, without recursion (an explicit
// stack), in one pass over the UTF-16 text.
//
// Supported: elements, attributes (single or double quotes; duplicates refused), text, the five predefined entities
// and character references (&#NN; &#xHH;) in text and attribute values, CDATA sections (as text), self-closing tags,
// line ends normalised to LF and attribute whitespace to spaces (as XML 1.0 requires). Skipped: the XML declaration,
// processing instructions and comments. Refused: any DOCTYPE (no DTDs, so no entity expansion of any kind) and
// nesting deeper than `maxDepth` elements. Anything else that is not well-formed fails with a short reason and the
// line and column. The declared encoding is not read: the body is decoded as UTF-8.

export class XmlElement {
  attrNames: string[] = [];
  attrValues: string[] = [];
  children: XmlElement[] = [];
  /** Text pieces in document order (CDATA sections included). */
  texts: string[] = [];
  /** Parallel to `texts`: a CDATA section, or text that is not whitespace only. */
  significant: bool[] = [];
  selfClosing: bool = false;
  constructor(public name: string) {}
}

/** Why the last `parseXml` returned null. */
export let parseError = "";
/** Whether that was a refusal (DOCTYPE, depth) rather than malformed XML. */
export let parseRefused = false;

export function parseXml(text: string, maxDepth: i32): XmlElement | null {
  parseError = "";
  parseRefused = false;
  const p = new Parser(text, maxDepth);
  const root = p.document();
  if (root === null || p.failed) {
    parseError = p.message + p.where();
    parseRefused = p.refused;
    return null;
  }
  return root;
}

class Parser {
  pos: i32 = 0;
  end: i32;
  failed: bool = false;
  refused: bool = false;
  message: string = "";
  constructor(public s: string, public maxDepth: i32) {
    this.end = s.length;
  }

  // @ts-ignore: decorator
  @inline
  at(i: i32): i32 {
    return <i32>load<u16>(changetype<usize>(this.s) + (<usize>i << 1));
  }

  fail(message: string): void {
    if (this.failed) return;
    this.failed = true;
    this.message = message;
  }

  refuse(message: string): void {
    this.fail(message);
    this.refused = true;
  }

  /** " at line L, column C" of the current position. */
  where(): string {
    let line = 1;
    let column = 1;
    const stop = this.pos < this.end ? this.pos : this.end;
    for (let i = 0; i < stop; i++) {
      if (this.at(i) == 0x0a) {
        line++;
        column = 1;
      } else column++;
    }
    return " at line " + line.toString() + ", column " + column.toString();
  }

  startsWith(word: string): bool {
    const n = word.length;
    if (this.pos + n > this.end) return false;
    for (let i = 0; i < n; i++) {
      if (this.at(this.pos + i) != <i32>word.charCodeAt(i)) return false;
    }
    return true;
  }

  /** Skips whitespace; whether there was any. */
  skipWs(): bool {
    const start = this.pos;
    while (this.pos < this.end) {
      const c = this.at(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
    return this.pos > start;
  }

  /** Moves past `terminator`, which must come; false (and a failure naming `what`) if it does not. */
  skipPast(terminator: string, what: string): bool {
    const found = this.s.indexOf(terminator, this.pos);
    if (found < 0) {
      this.fail("unterminated " + what);
      return false;
    }
    this.pos = found + terminator.length;
    return true;
  }

  /** Comments, processing instructions (the XML declaration among them) and whitespace, outside the root element. */
  misc(): void {
    while (!this.failed) {
      this.skipWs();
      if (this.startsWith("<!--")) this.skipPast("-->", "comment");
      else if (this.startsWith("<?")) this.skipPast("?>", "processing instruction");
      else if (this.startsWith("<!DOCTYPE") || this.startsWith("<!doctype")) {
        this.refuse("a DOCTYPE declaration is not allowed (DTDs are refused)");
      } else return;
    }
  }

  document(): XmlElement | null {
    if (this.pos < this.end && this.at(this.pos) == 0xfeff) this.pos++; // a byte order mark
    this.misc();
    if (this.failed) return null;
    if (this.pos >= this.end) {
      this.fail("no root element");
      return null;
    }
    if (this.at(this.pos) != 0x3c || !isNameStart(this.pos + 1 < this.end ? this.at(this.pos + 1) : 0)) {
      this.fail("expected the root element");
      return null;
    }
    const root = this.elements();
    if (root === null) return null;
    this.misc();
    if (this.failed) return null;
    if (this.pos < this.end) {
      this.fail("content after the root element");
      return null;
    }
    return root;
  }

  /** The root element and everything in it; at `<` followed by a name. */
  elements(): XmlElement | null {
    const stack = new Array<XmlElement>();
    const root = this.startTag();
    if (root === null) return null;
    if (root.selfClosing) return root;
    stack.push(root);
    while (!this.failed) {
      if (this.pos >= this.end) {
        this.fail("unterminated element <" + stack[stack.length - 1].name + ">");
        return null;
      }
      const top = stack[stack.length - 1];
      if (this.at(this.pos) != 0x3c) {
        this.text(top);
        continue;
      }
      if (this.startsWith("</")) {
        const tagStart = this.pos;
        this.pos += 2;
        const name = this.name();
        if (name === null) return null;
        this.skipWs();
        if (this.pos >= this.end || this.at(this.pos) != 0x3e) {
          this.fail("expected > to end </" + name);
          return null;
        }
        if (name != top.name) {
          this.pos = tagStart;
          this.fail("mismatched end tag </" + name + "> (expected </" + top.name + ">)");
          return null;
        }
        this.pos++;
        stack.pop();
        if (stack.length == 0) return root;
      } else if (this.startsWith("<!--")) {
        this.skipPast("-->", "comment");
      } else if (this.startsWith("<![CDATA[")) {
        this.pos += 9;
        const close = this.s.indexOf("]]>", this.pos);
        if (close < 0) {
          this.fail("unterminated CDATA section");
          return null;
        }
        const piece = this.decode(this.pos, close, MODE_CDATA);
        if (piece === null) return null;
        this.pos = close + 3;
        top.texts.push(piece);
        top.significant.push(true);
      } else if (this.startsWith("<?")) {
        this.skipPast("?>", "processing instruction");
      } else if (this.startsWith("<!DOCTYPE") || this.startsWith("<!doctype")) {
        this.refuse("a DOCTYPE declaration is not allowed (DTDs are refused)");
      } else if (this.startsWith("<!")) {
        this.fail("unexpected <! in content");
      } else {
        if (stack.length >= this.maxDepth) {
          this.refuse("elements nested deeper than " + this.maxDepth.toString() + " levels");
          return null;
        }
        const child = this.startTag();
        if (child === null) return null;
        top.children.push(child);
        if (!child.selfClosing) stack.push(child);
      }
    }
    return null;
  }

  /** A text run up to the next `<` (or the end), added to `e`. */
  text(e: XmlElement): void {
    let stop = this.s.indexOf("<", this.pos);
    if (stop < 0) stop = this.end;
    const piece = this.decode(this.pos, stop, MODE_TEXT);
    if (piece === null) return;
    this.pos = stop;
    e.texts.push(piece);
    e.significant.push(!isBlank(piece));
  }

  /** A start tag, at `<`; the element, with its attributes and whether it closed itself. */
  startTag(): XmlElement | null {
    this.pos++;
    const name = this.name();
    if (name === null) return null;
    const e = new XmlElement(name);
    while (true) {
      const spaced = this.skipWs();
      if (this.pos >= this.end) {
        this.fail("unterminated start tag <" + name);
        return null;
      }
      const c = this.at(this.pos);
      if (c == 0x3e) {
        this.pos++;
        return e;
      }
      if (c == 0x2f) {
        if (this.pos + 1 < this.end && this.at(this.pos + 1) == 0x3e) {
          this.pos += 2;
          e.selfClosing = true;
          return e;
        }
        this.fail("expected /> in <" + name);
        return null;
      }
      if (!spaced) {
        this.fail("expected whitespace, > or /> in <" + name);
        return null;
      }
      const attr = this.name();
      if (attr === null) return null;
      this.skipWs();
      if (this.pos >= this.end || this.at(this.pos) != 0x3d) {
        this.fail("expected = after attribute " + attr);
        return null;
      }
      this.pos++;
      this.skipWs();
      const q = this.pos < this.end ? this.at(this.pos) : 0;
      if (q != 0x22 && q != 0x27) {
        this.fail("expected a quoted value for attribute " + attr);
        return null;
      }
      const close = this.s.indexOf(q == 0x22 ? '"' : "'", this.pos + 1);
      if (close < 0) {
        this.fail("unterminated value of attribute " + attr);
        return null;
      }
      const value = this.decode(this.pos + 1, close, MODE_ATTRIBUTE);
      if (value === null) return null;
      for (let i = 0; i < e.attrNames.length; i++) {
        if (e.attrNames[i] == attr) {
          this.fail("duplicate attribute " + attr + " in <" + name + ">");
          return null;
        }
      }
      e.attrNames.push(attr);
      e.attrValues.push(value);
      this.pos = close + 1;
    }
  }

  /** An XML name at the current position (namespace prefixes kept as written). */
  name(): string | null {
    const start = this.pos;
    if (this.pos >= this.end || !isNameStart(this.at(this.pos))) {
      this.fail("expected a name");
      return null;
    }
    this.pos++;
    while (this.pos < this.end && isNameChar(this.at(this.pos))) this.pos++;
    return this.s.substring(start, this.pos);
  }

  /**
   * The characters in [start, stop) as they read: references replaced (not in CDATA), CR LF and CR as LF, and in
   * attribute values tab, LF and CR as spaces. Null (and a failure) for a character XML does not allow or a bad
   * reference; `<` in an attribute value is refused.
   */
  decode(start: i32, stop: i32, mode: i32): string | null {
    let parts: string[] | null = null;
    let from = start;
    let i = start;
    while (i < stop) {
      const c = this.at(i);
      if (c >= 0x20 && c != 0x26 && c != 0x3c && c < 0xfffe) {
        i++;
        continue;
      }
      let rep = "";
      let next = i + 1;
      if (c == 0x26 && mode != MODE_CDATA) {
        const semi = this.s.indexOf(";", i);
        if (semi < 0 || semi >= stop || semi - i > 12) {
          this.pos = i;
          this.fail("an & that starts no reference (write &amp;)");
          return null;
        }
        const ref = this.reference(i + 1, semi);
        if (ref === null) {
          this.pos = i;
          return null;
        }
        rep = ref;
        next = semi + 1;
      } else if (c == 0x3c && mode == MODE_ATTRIBUTE) {
        this.pos = i;
        this.fail("< in an attribute value");
        return null;
      } else if (c == 0x0d) {
        rep = mode == MODE_ATTRIBUTE ? " " : "\n";
        if (i + 1 < stop && this.at(i + 1) == 0x0a) next = i + 2;
      } else if (c == 0x09 || c == 0x0a) {
        if (mode != MODE_ATTRIBUTE) {
          i++;
          continue;
        }
        rep = " ";
      } else if (c < 0x20 || c >= 0xfffe) {
        this.pos = i;
        this.fail("the character U+" + c.toString(16).toUpperCase().padStart(4, "0") + " is not allowed in XML");
        return null;
      } else {
        i++; // & in CDATA, < in text cannot happen (text stops at <)
        continue;
      }
      if (parts === null) parts = new Array<string>();
      if (i > from) parts.push(this.s.substring(from, i));
      parts.push(rep);
      i = next;
      from = next;
    }
    if (parts === null) return this.s.substring(start, stop);
    if (from < stop) parts.push(this.s.substring(from, stop));
    return parts.join("");
  }

  /** The text of the reference between `&` and `;` ([start, semi)), or null (and a failure). */
  reference(start: i32, semi: i32): string | null {
    const name = this.s.substring(start, semi);
    if (name == "lt") return "<";
    if (name == "gt") return ">";
    if (name == "amp") return "&";
    if (name == "apos") return "'";
    if (name == "quot") return '"';
    if (name.length < 2 || name.charCodeAt(0) != 0x23) {
      this.fail("unknown entity &" + name + "; (only lt, gt, amp, apos, quot and character references)");
      return null;
    }
    const hex = name.charCodeAt(1) == 0x78;
    let k = hex ? 2 : 1;
    if (k >= name.length) {
      this.fail("empty character reference &" + name + ";");
      return null;
    }
    let cp: i32 = 0;
    for (; k < name.length; k++) {
      const d = name.charCodeAt(k);
      let v = -1;
      if (d >= 0x30 && d <= 0x39) v = d - 0x30;
      else if (hex && d >= 0x61 && d <= 0x66) v = d - 0x57;
      else if (hex && d >= 0x41 && d <= 0x46) v = d - 0x37;
      if (v < 0) {
        this.fail("bad character reference &" + name + ";");
        return null;
      }
      cp = cp * (hex ? 16 : 10) + v;
      if (cp > 0x10ffff) break;
    }
    const ok = cp == 0x09 || cp == 0x0a || cp == 0x0d || (cp >= 0x20 && cp <= 0xd7ff) ||
      (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
    if (!ok) {
      this.fail("character reference &" + name + "; is not a character XML allows");
      return null;
    }
    return String.fromCodePoint(cp);
  }
}

const MODE_TEXT: i32 = 0;
const MODE_ATTRIBUTE: i32 = 1;
const MODE_CDATA: i32 = 2;

function isNameStart(c: i32): bool {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c == 0x5f || c == 0x3a ||
    (c >= 0xc0 && c != 0xd7 && c != 0xf7 && c < 0xfffe);
}

function isNameChar(c: i32): bool {
  return isNameStart(c) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2e || c == 0xb7;
}

export function isBlank(s: string): bool {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) return false;
  }
  return true;
}
