// JSON syntax errors with a position: JSON.parse says that a document is not JSON, but V8's messages do not always say
// where, and differ between versions. This scanner finds the first error and its offset the same way everywhere.

import { MAX_NESTING } from './document-limits.ts';

/** A JSON literal where the scan stands (sticky: matched at lastIndex only, however long the rest of the text). */
const LITERAL = /true|false|null|-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

/** The first JSON syntax error of `text`, or null. Only called after JSON.parse failed. */
export function jsonSyntaxError(text: string): { offset: number; message: string } | null {
  let i = 0;
  class Stop {
    constructor(
      readonly offset: number,
      readonly message: string,
    ) {}
  }
  const describe = (at: number) => (at >= text.length ? 'end of input' : JSON.stringify(text[at]));
  const fail = (message: string, at = i): never => {
    throw new Stop(at, message);
  };
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const string = () => {
    const start = i++;
    while (i < text.length && text[i] !== '"') {
      const c = text.charCodeAt(i);
      if (c < 0x20) fail('control character in a string (write it as an escape, e.g. \\n)');
      if (text[i] === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('bad \\u escape: four hex digits expected');
          i += 5;
          continue;
        }
        if (!'"\\/bfnrt'.includes(text[i] ?? 'x')) fail(`bad escape \\${text[i] ?? ''}`);
      }
      i++;
    }
    if (i >= text.length) fail('unterminated string', start);
    i++;
  };
  // Nesting is bounded: the scanner recurses, and a document beyond MAX_NESTING is refused whatever else is wrong.
  let depth = 0;
  const nested = (members: () => void) => {
    if (++depth > MAX_NESTING) fail(`nested too deeply (at most ${MAX_NESTING} levels of maps and lists)`);
    i++;
    ws();
    members();
    depth--;
  };
  /** The members of a map or a list up to `close`, separated by commas, each read by `member`. */
  const members = (close: '}' | ']', member: () => void, what: string) => () => {
    if (text[i] === close) {
      i++;
      return;
    }
    for (;;) {
      ws();
      if (text[i] === close) fail(`trailing comma before "${close}"`);
      member();
      ws();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === close) {
        i++;
        return;
      }
      fail(`expected "," or "${close}" after ${what}, found ${describe(i)}`);
    }
  };
  const property = () => {
    if (text[i] !== '"') fail(`expected a property name in double quotes, found ${describe(i)}`);
    string();
    ws();
    if (text[i] !== ':') fail(`expected ":" after the property name, found ${describe(i)}`);
    i++;
    value();
  };
  const object = members('}', property, 'a property value');
  const array = members(']', () => value(), 'an array element');
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') return nested(object);
    if (c === '[') return nested(array);
    if (c === '"') return string();
    LITERAL.lastIndex = i;
    const literal = LITERAL.exec(text);
    if (literal) {
      i += literal[0].length;
      return;
    }
    fail(c === undefined ? 'unexpected end of input' : `unexpected ${describe(i)}`);
  };
  try {
    value();
    ws();
    if (i < text.length) fail(`unexpected ${describe(i)} after the document`);
    return null;
  } catch (err) {
    if (err instanceof Stop) return { offset: err.offset, message: err.message };
    throw err;
  }
}
