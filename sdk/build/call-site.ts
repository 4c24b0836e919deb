// Where in the author's files an error inside a library (the AssemblyScript standard library, `~lib/...`, or the SDK)
// comes from. The compiler reports such an error at the library's line with no related range (a generic function
// instantiated with the author's type, `Uint8Array.set` given a `Uint8Array | null`), so the call is found by reading
// the sources: the library function around the error, the functions of that file that call it (up to three levels:
// `set` calls the inlined `SET`), and the author's calls of any of them.

import { lineColumn } from './diagnostics.ts';

export interface CallSite {
  file: string;
  line: number;
  column: number;
  /** The library function the author calls. */
  callee: string;
}

const NOT_NAMES = new Set(['if', 'for', 'while', 'switch', 'return', 'catch', 'function', 'class', 'new', 'typeof', 'do', 'else']);

// A declaration at the top level or one indent in (a class's method); bodies are indented deeper.
const DECLARATION = /^(?: {2}|\t)?(?:export\s+)?(?:(?:static|private|protected|public|readonly|function|declare)\s+)*(?:(?:get|set)\s+)?([A-Za-z_$][\w$]*)\s*[<(]/;

/** The name of the function (or method) whose body holds `offset` in a library's `text`, or null. */
export function enclosingFunction(text: string, offset: number): string | null {
  let end = Math.min(offset, text.length);
  while (end > 0) {
    const start = text.lastIndexOf('\n', end - 1) + 1;
    const m = DECLARATION.exec(text.slice(start, end));
    if (m && !NOT_NAMES.has(m[1]!)) return m[1]!;
    end = start - 1;
  }
  return null;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function callPattern(name: string): RegExp {
  return new RegExp(`(?:^|[^\\w$])${escapeRegExp(name)}\\s*(?:<[^()]*>)?\\s*\\(`, 'g');
}

/** The functions of a library's `text` that call `name` (not counting its own declaration). */
function callersIn(text: string, name: string): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(callPattern(name))) {
    const lineStart = text.lastIndexOf('\n', m.index) + 1;
    if (DECLARATION.exec(text.slice(lineStart, text.indexOf('\n', m.index)))?.[1] === name) continue;
    const caller = enclosingFunction(text, m.index);
    if (caller && caller !== name) out.add(caller);
  }
  return [...out];
}

/**
 * The author's calls that lead to the error at `offset` of the library file `libText`, nearest library function
 * first: every call in `userFiles` of the function around the error, or of the functions calling it, up to three
 * levels out. Empty when none is found.
 */
export function authorCallSites(libText: string, offset: number, userFiles: ReadonlyMap<string, string>): CallSite[] {
  const first = enclosingFunction(libText, offset);
  if (first === null) return [];
  let level = [first];
  const seen = new Set(level);
  for (let depth = 0; depth < 3 && level.length > 0; depth++) {
    const sites: CallSite[] = [];
    for (const callee of level) {
      for (const [file, text] of userFiles) {
        for (const m of text.matchAll(callPattern(callee))) {
          const at = m.index + m[0].indexOf(callee);
          // A call as a method (`x.set(`) or a plain function; not a declaration of the author's own of that name.
          const lineStart = text.lastIndexOf('\n', at) + 1;
          if (/\bfunction\s+$/.test(text.slice(lineStart, at))) continue;
          const { line, column } = lineColumn(text, at);
          sites.push({ file, line, column, callee });
        }
      }
    }
    if (sites.length > 0) return sites;
    const next: string[] = [];
    for (const callee of level) {
      for (const caller of callersIn(libText, callee)) {
        if (!seen.has(caller)) {
          seen.add(caller);
          next.push(caller);
        }
      }
    }
    level = next;
  }
  return [];
}
