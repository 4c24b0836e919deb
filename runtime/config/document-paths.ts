// Places in a configuration document: a path of keys and indexes (`DocPath`), written as `apis[0].backend.url`, and
// the line of the document it is on when the document was parsed from text. Every job that reports a problem (parsing,
// the schema, the checks the schema cannot make, named values, policy binding, the control plane's plans, the CLI)
// names places this way, so this file depends on nothing else of the configuration's.

import { isMap, isScalar, type Document, type LineCounter } from 'yaml';

export type DocPath = readonly (string | number)[];

/** A problem at a place in the document, before it is given its `where` (file and line). */
export interface PathProblem {
  path: DocPath;
  message: string;
}

/** `apis[0].policies.on-error[1]`, `grants.filesystem["/data"]`; `(document)` for the root. */
export function formatPath(path: DocPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out === '' ? '(document)' : out;
}

export type Locator = (path: DocPath) => number | undefined;

/** Line lookups for documents that parseGatewayDocument returned (documents built in code have none). */
const locators = new WeakMap<object, Locator>();

/** The `where` of a problem at `path` of `doc`: with the line when `doc` came from parseGatewayDocument. */
export function problemWhere(doc: unknown, sourceName: string, path: DocPath): string {
  const line = typeof doc === 'object' && doc !== null ? locators.get(doc)?.(path) : undefined;
  return line === undefined ? `${sourceName}: ${formatPath(path)}` : `${sourceName}:${line}: ${formatPath(path)}`;
}

/** Lets problemWhere give the lines of `doc`, a document parsed from text with `locate` for its lines. */
export function rememberLocator(doc: object, locate: Locator): void {
  locators.set(doc, locate);
}

/** The line (1-based) of the node at `path` of a parsed YAML document, or of the closest enclosing node that exists. */
export function yamlLocator(yamlDoc: Document, lines: LineCounter): Locator {
  const lineOf = (node: unknown) => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return Array.isArray(range) ? lines.linePos(range[0]).line : undefined;
  };
  return (path) => {
    // The node itself, or the closest enclosing one that exists (a missing property is reported on its parent).
    for (let n = path.length; n >= 0; n--) {
      const last = path[n - 1];
      if (typeof last === 'string') {
        // A map entry: the line of its key (a block value starts on the next line).
        const parent = yamlDoc.getIn(path.slice(0, n - 1), true);
        if (isMap(parent)) {
          const pair = parent.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === last);
          const line = pair ? (lineOf(pair.key) ?? lineOf(pair.value)) : undefined;
          if (line !== undefined) return line;
        }
        continue;
      }
      const line = lineOf(yamlDoc.getIn(path.slice(0, n), true));
      if (line !== undefined) return line;
    }
    return undefined;
  };
}
