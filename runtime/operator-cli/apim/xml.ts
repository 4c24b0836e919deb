// An APIM policy document as elements with their line numbers (saxes: a maintained, standards-following streaming XML
// parser that reports the position of every tag, which the importer needs to name what it could not translate).

import { SaxesParser } from 'saxes';

export interface XmlElement {
  name: string;
  attributes: Map<string, string>;
  children: XmlElement[];
  /** The text directly inside it (CDATA included), trimmed. */
  text: string;
  /** Line of its start tag (1-based). */
  line: number;
}

export class XmlSyntaxError extends Error {}

/**
 * APIM's policy documents are not quite XML: an expression (`@(...)`, `@{...}`) is written as C#, with its double
 * quotes inside a double-quoted attribute, `<string>` generics and `&&` as they are (APIM reads expressions before the
 * XML). Each expression is found by its balanced brackets (C# string and character literals skipped) and its `"`, `<`,
 * `>` and `&` written as entities, so that an XML parser reads it; lines stay where they were.
 */
export function escapeExpressions(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const at = text.indexOf('@', i);
    if (at < 0 || at + 1 >= text.length) break;
    const open = text[at + 1];
    if (open !== '(' && open !== '{') {
      out += text.slice(i, at + 1);
      i = at + 1;
      continue;
    }
    const end = expressionEnd(text, at + 1);
    if (end < 0) break;
    out += text.slice(i, at) + text.slice(at, end).replace(/&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)|[<>"]/g, (c) => ENTITIES[c]!);
    i = end;
  }
  return out + text.slice(i);
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };

/** The index just past the bracket that closes the one at `start`, or -1 when it is never closed. */
function expressionEnd(text: string, start: number): number {
  const close = text[start] === '(' ? ')' : '}';
  const open = text[start]!;
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === '"' || c === "'") {
      // A C# literal: up to its unescaped closing quote (a line break ends a broken one).
      for (i++; i < text.length && text[i] !== c && text[i] !== '\n'; i++) if (text[i] === '\\') i++;
    } else if (c === open) depth++;
    else if (c === close && --depth === 0) return i + 1;
  }
  return -1;
}

/** Parses `text`: the root element. Throws XmlSyntaxError naming the line. */
export function parseXml(text: string): XmlElement {
  const parser = new SaxesParser({ position: true });
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;
  let startLine = 1;
  let failure: string | null = null;
  parser.on('error', (err) => {
    failure ??= err.message;
  });
  parser.on('opentagstart', () => {
    startLine = parser.line;
  });
  parser.on('opentag', (tag) => {
    const attributes = new Map<string, string>();
    for (const [name, value] of Object.entries(tag.attributes)) attributes.set(name, typeof value === 'string' ? value : value.value);
    const element: XmlElement = { name: tag.name, attributes, children: [], text: '', line: startLine };
    const parent = stack[stack.length - 1];
    if (parent) parent.children.push(element);
    else root ??= element;
    stack.push(element);
  });
  const addText = (t: string) => {
    const top = stack[stack.length - 1];
    if (top) top.text += t;
  };
  parser.on('text', addText);
  parser.on('cdata', addText);
  parser.on('closetag', () => {
    const element = stack.pop();
    if (element) element.text = element.text.trim();
  });
  try {
    parser.write(escapeExpressions(text)).close();
  } catch (err) {
    failure ??= (err as Error).message;
  }
  if (failure !== null) throw new XmlSyntaxError(`not well-formed XML: ${failure}`);
  if (root === null) throw new XmlSyntaxError('no element in the document');
  return root;
}
