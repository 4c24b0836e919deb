// What gateway.schema.json cannot express: fragments that exist and do not include themselves (fragments.ts), unique
// API and operation ids, APIs that would answer the same requests (same path prefix, shared hosts or none), operations
// that would never be reached, and path prefixes, URL templates and backend URLs that the router and the forwarder
// cannot use. Run beside the schema, on whatever parts of the
// document have the shape these checks read (the rest the schema reports).

import type { PathProblem } from './document-paths.ts';
import { fragmentProblems } from './fragments.ts';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string';

/** The template parameter names the router accepts. */
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** The problems of `data` that the schema cannot find, each at its path. */
export function semanticProblems(data: unknown): PathProblem[] {
  const out: PathProblem[] = fragmentProblems(data);
  if (!isObject(data) || !Array.isArray(data.apis)) return out;
  const apis = data.apis as unknown[];
  const apiIds = new Map<string, number>();
  // By prefix: the host-less API that has it, and the API answering each host name (first come, first kept). A map, not
  // a comparison of every pair: a document may hold tens of thousands of APIs.
  const routes = new Map<string, { hostless: number | null; hosts: Map<string, number> }>();
  const apiName = (index: number) => {
    const id = isObject(apis[index]) ? (apis[index] as { id?: unknown }).id : undefined;
    return `apis[${index}]${isString(id) ? ` (${id})` : ''}`;
  };

  apis.forEach((api, a) => {
    if (!isObject(api)) return;
    const at = (...rest: (string | number)[]) => ['apis', a, ...rest];
    if (isString(api.id)) {
      const first = apiIds.get(api.id);
      if (first !== undefined) out.push({ path: at('id'), message: `duplicate API id "${api.id}" (also apis[${first}])` });
      else apiIds.set(api.id, a);
    }
    if (isString(api.pathPrefix) && api.pathPrefix.startsWith('/')) {
      for (const message of prefixProblems(api.pathPrefix)) out.push({ path: at('pathPrefix'), message });
      const hosts = Array.isArray(api.hosts) ? new Set(api.hosts.filter(isString).map((h) => h.toLowerCase())) : null;
      const prefix = api.pathPrefix === '/' ? '/' : api.pathPrefix.replace(/\/+$/, '');
      let route = routes.get(prefix);
      if (!route) routes.set(prefix, (route = { hostless: null, hosts: new Map() }));
      if (hosts === null) {
        if (route.hostless !== null) {
          out.push({
            path: at('pathPrefix'),
            message: `same pathPrefix as ${apiName(route.hostless)} and neither has hosts: a request could go to either (give them different prefixes or hosts)`,
          });
        } else {
          route.hostless = a;
        }
      } else {
        // Shared host names, grouped by the API that answers them first.
        const sharedWith = new Map<number, string[]>();
        for (const h of hosts) {
          const other = route.hosts.get(h);
          if (other === undefined) route.hosts.set(h, a);
          else sharedWith.set(other, [...(sharedWith.get(other) ?? []), h]);
        }
        for (const [other, shared] of sharedWith) {
          out.push({
            path: at('hosts'),
            message: `same pathPrefix as ${apiName(other)}, and both answer to ${shared.join(', ')}: a request could go to either`,
          });
        }
      }
    }

    const backend = api.backend;
    if (isObject(backend)) {
      if (isString(backend.url)) {
        for (const message of backendUrl(backend.url).problems) out.push({ path: at('backend', 'url'), message });
      }
      if (isObject(backend.pool) && Array.isArray(backend.pool.urls)) {
        const seen = new Map<string, number>();
        backend.pool.urls.forEach((url, u) => {
          if (!isString(url)) return;
          const { problems, key } = backendUrl(url);
          for (const message of problems) out.push({ path: at('backend', 'pool', 'urls', u), message });
          if (key === null) return;
          const first = seen.get(key);
          if (first !== undefined) {
            out.push({ path: at('backend', 'pool', 'urls', u), message: `duplicate URL (also urls[${first}])` });
          } else {
            seen.set(key, u);
          }
        });
      }
    }

    if (isObject(backend) && isObject(backend.retry)) {
      const { backoffMs, maxBackoffMs } = backend.retry;
      if (typeof backoffMs === 'number' && backoffMs > (typeof maxBackoffMs === 'number' ? maxBackoffMs : 1000)) {
        out.push({ path: at('backend', 'retry', 'backoffMs'), message: `backoffMs (${backoffMs}) is more than maxBackoffMs (${typeof maxBackoffMs === 'number' ? maxBackoffMs : '1000, its default'})` });
      }
    }

    if (Array.isArray(api.operations)) {
      const opIds = new Map<string, number>();
      const routesSeen = new Map<string, number>();
      api.operations.forEach((op, o) => {
        if (!isObject(op)) return;
        const opAt = (...rest: (string | number)[]) => at('operations', o, ...rest);
        if (isString(op.id)) {
          const first = opIds.get(op.id);
          if (first !== undefined) {
            out.push({ path: opAt('id'), message: `duplicate operation id "${op.id}" in this API (also operations[${first}])` });
          } else {
            opIds.set(op.id, o);
          }
        }
        if (isString(op.urlTemplate) && op.urlTemplate.startsWith('/')) {
          const { problems, shape } = templateProblems(op.urlTemplate);
          for (const message of problems) out.push({ path: opAt('urlTemplate'), message });
          if (problems.length === 0 && isString(op.method)) {
            const key = `${op.method} ${shape}`;
            const first = routesSeen.get(key);
            if (first !== undefined) {
              out.push({
                path: opAt('urlTemplate'),
                message: `same method and URL template as operations[${first}]: this operation would never be reached`,
              });
            } else {
              routesSeen.set(key, o);
            }
          }
        }
      });
    }
  });
  return out;
}

function prefixProblems(prefix: string): string[] {
  if (prefix === '/') return [];
  const out: string[] = [];
  if (prefix.endsWith('/')) out.push(`must not end with "/" (write "${prefix.replace(/\/+$/, '') || '/'}")`);
  if (/\/\//.test(prefix.replace(/\/+$/, ''))) out.push('must not contain empty segments ("//")');
  if (/[?#]/.test(prefix)) out.push('must be a path only, without "?" or "#"');
  if (/[{}]/.test(prefix)) out.push('must be literal: URL template parameters belong in operations');
  if (/\s/.test(prefix)) out.push('must not contain white space (percent-encode it)');
  if (prefix.split('/').some((s) => s === '.' || s === '..')) out.push('must not contain "." or ".." segments');
  return out;
}

/**
 * A backend URL's problems, and the key that finds the same backend written twice in a pool (trailing slashes do not
 * count; the forwarder drops them). No key for a URL with problems, or one that is not an http(s) URL: the schema's
 * pattern reports that one.
 */
function backendUrl(url: string): { problems: string[]; key: string | null } {
  if (url === 'builtin:echo') return { problems: [], key: url };
  if (!/^https?:\/\//.test(url)) return { problems: [], key: null };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { problems: ['is not a valid URL'], key: null };
  }
  const problems: string[] = [];
  if (parsed.username !== '' || parsed.password !== '') {
    problems.push('must not hold credentials (they would not be sent; set an Authorization header with a policy)');
  }
  // Read from the text: an empty query ("?") or fragment ("#") leaves the parsed URL's search and hash empty.
  if (url.includes('?')) problems.push('must not have a query (the request\'s own query is sent)');
  if (url.includes('#')) problems.push('must not have a fragment');
  return { problems, key: problems.length > 0 ? null : parsed.href.replace(/\/+$/, '') };
}

/** Problems of a URL template, and its shape (parameters unnamed) to find templates that match the same paths. */
function templateProblems(template: string): { problems: string[]; shape: string } {
  const problems: string[] = [];
  if (/[?#]/.test(template)) problems.push('must be a path only, without "?" or "#" (queries are not matched)');
  const names = new Set<string>();
  const shape: string[] = [];
  for (const segment of template.split('/').filter((s) => s !== '')) {
    let depth = 0;
    let balanced = true;
    for (const c of segment) {
      if (c === '{') depth++;
      else if (c === '}') depth--;
      if (depth < 0 || depth > 1) balanced = false;
    }
    if (!balanced || depth !== 0) {
      problems.push(`unbalanced braces in segment "${segment}"`);
      continue;
    }
    if (!segment.includes('{')) {
      shape.push(segment);
      continue;
    }
    const whole = /^\{([^{}]*)\}$/.exec(segment);
    if (!whole) {
      problems.push(`a parameter must be a whole segment, like /{id}/ (not "${segment}")`);
      continue;
    }
    const name = whole[1]!;
    if (name === '') problems.push('empty parameter name "{}"');
    else if (!PARAM_NAME.test(name)) {
      problems.push(`parameter name "${name}" must be letters, digits, "_" and "-", not starting with a digit or "-"`);
    } else if (names.has(name)) problems.push(`duplicate parameter name "${name}"`);
    names.add(name);
    shape.push('{}');
  }
  return { problems, shape: `/${shape.join('/')}` };
}
