// Picks the API for a request (host, then the longest path prefix), then the operation (URL template, then method).

import { matchTemplate, parseTemplate, splitPath, UndecodableParameter, type UrlTemplate } from './url-template.ts';

export interface RouteOperation<O> {
  id: string;
  /** Upper-case method, or `*`. */
  method: string;
  template: string;
  value: O;
}

export interface RouteApi<A, O> {
  id: string;
  pathPrefix: string;
  /** Exact names or `*.example.com`; null: any host. */
  hosts: string[] | null;
  /** null: one operation, `default`, for every method and path. */
  operations: RouteOperation<O>[] | null;
  value: A;
}

export type RouteResult<A, O> =
  | { kind: 'matched'; api: RouteApi<A, O>; operation: RouteOperation<O> | null; params: Map<string, string> }
  | { kind: 'not-found' }
  | { kind: 'method-not-allowed'; api: RouteApi<A, O>; allowed: string[] }
  /** An operation's template matched, but a parameter's segment is not percent-encoded UTF-8 (`message` says which). */
  | { kind: 'undecodable'; api: RouteApi<A, O>; message: string };

interface CompiledApi<A, O> {
  api: RouteApi<A, O>;
  prefix: string;
  exactHosts: Set<string> | null;
  wildcardSuffixes: string[];
  operations: { op: RouteOperation<O>; template: UrlTemplate }[] | null;
}

/** An API prefix as matched and stripped: no trailing slash, and `/` as the empty prefix. */
export function normalizePrefix(pathPrefix: string): string {
  return pathPrefix === '/' ? '' : pathPrefix.replace(/\/+$/, '');
}

export class Router<A, O> {
  private readonly apis: CompiledApi<A, O>[];

  constructor(apis: RouteApi<A, O>[]) {
    this.apis = apis
      .map((api) => {
        const hosts = api.hosts?.map((h) => h.toLowerCase()) ?? null;
        return {
          api,
          prefix: normalizePrefix(api.pathPrefix),
          exactHosts: hosts ? new Set(hosts.filter((h) => !h.startsWith('*.'))) : null,
          wildcardSuffixes: hosts ? hosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1)) : [],
          operations: api.operations
            ? api.operations
                .map((op) => ({ op, template: parseTemplate(op.template) }))
                // More literal segments first: `/orders/latest` wins over `/orders/{id}`.
                .sort((a, b) => b.template.literals - a.template.literals)
            : null,
        };
      })
      // Longest prefix first; at equal prefixes, APIs bound to host names before host-less ones.
      .sort((a, b) => b.prefix.length - a.prefix.length || Number(b.exactHosts !== null) - Number(a.exactHosts !== null));
  }

  match(host: string, path: string, method: string): RouteResult<A, O> {
    const hostname = stripPort(host).toLowerCase();
    for (const entry of this.apis) {
      if (!hostMatches(entry, hostname)) continue;
      const rest = restAfterPrefix(path, entry.prefix);
      if (rest === null) continue;
      if (!entry.operations) return { kind: 'matched', api: entry.api, operation: null, params: new Map() };
      const segments = splitPath(rest);
      const allowed: string[] = [];
      for (const { op, template } of entry.operations) {
        const params = matchTemplate(template, segments);
        if (!params) continue;
        if (params instanceof UndecodableParameter) {
          const message = `the path segment "${params.segment}" (parameter ${params.param} of ${template.source}) is not percent-encoded UTF-8`;
          return { kind: 'undecodable', api: entry.api, message };
        }
        if (op.method === '*' || op.method === method) return { kind: 'matched', api: entry.api, operation: op, params };
        allowed.push(op.method);
      }
      if (allowed.length > 0) return { kind: 'method-not-allowed', api: entry.api, allowed: [...new Set(allowed)] };
      // The prefix matched but no operation did: a longer-prefix API already lost, so this is a 404.
      return { kind: 'not-found' };
    }
    return { kind: 'not-found' };
  }
}

function hostMatches(entry: { exactHosts: Set<string> | null; wildcardSuffixes: string[] }, hostname: string): boolean {
  if (entry.exactHosts === null) return true;
  if (entry.exactHosts.has(hostname)) return true;
  return entry.wildcardSuffixes.some((suffix) => hostname.endsWith(suffix) && hostname.length > suffix.length);
}

/** The path below the prefix (`/` at least), or null when the prefix does not match on a segment boundary. */
function restAfterPrefix(path: string, prefix: string): string | null {
  if (prefix === '') return path;
  if (!path.startsWith(prefix)) return null;
  if (path.length === prefix.length) return '/';
  return path.charCodeAt(prefix.length) === 47 /* / */ ? path.slice(prefix.length) : null;
}

function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end > 0 ? host.slice(0, end + 1) : host;
  }
  const colon = host.indexOf(':');
  return colon >= 0 ? host.slice(0, colon) : host;
}
