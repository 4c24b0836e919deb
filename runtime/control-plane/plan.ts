// A change to the control plane's configuration, planned before anything is written: the state it leads to, what
// changes (object by object, field by field), and every reason it cannot be made. The admin API's single-object
// endpoints and the bulk apply (`gatehouse apply`) all go through a plan, so that:
// - a change is checked whole and written whole (one revision, or none when nothing changes);
// - references are checked both ways on the state it leads to (a gateway cannot name a missing API; an API a gateway
//   serves, a fragment, a named value or a module an API or a fragment uses, cannot go without saying so);
// - every API and every gateway document the change touches is checked as a gateway would check it (validation.ts),
//   with each problem at its place in the request, so that a client holding the request's source (the CLI holds the
//   YAML file) can name the line.

import { createHash } from 'node:crypto';
import { includedAtText } from '../config/config-error.ts';
import { formatPath, type DocPath } from '../config/document-paths.ts';
import {
  MAX_NAMED_VALUE_LENGTH,
  NAMED_VALUE_NAME,
  NAMED_VALUE_NAME_HINT,
  namedValueReferences,
  previousInOverlap,
  type NamedValue,
} from '../config/named-values.ts';
import { FRAGMENT_NAME, FRAGMENT_NAME_HINT, fragmentNesting, usedFragments } from '../config/fragments.ts';
import { policyEntries } from '../config/policy-entries.ts';
import { MODULE_REF, referencedModules } from '../gateway-api/module-refs.ts';
import { PHASES } from '../policy-host/index.ts';
import type { DocumentProblem } from './validation.ts';

export const ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const ID_HINT = 'an id is lowercase letters, digits and dashes, starting with a letter or digit (at most 63)';

/**
 * What the control plane serves from: APIs (by id, each with its id), gateways (the APIs each serves), fragments (each
 * a list of policy entries), named values, modules.
 */
export interface ConfigState {
  apis: Map<string, Record<string, unknown>>;
  gateways: Map<string, string[]>;
  fragments: Map<string, unknown[]>;
  namedValues: Map<string, StateNamedValue>;
  modules: Set<string>;
}

/** A named value as stored: `previous`, the value it replaced while a rotation's overlap lasts (maybe ended since). */
export interface StateNamedValue {
  value: string;
  secret: boolean;
  previous: { value: string; until: string } | null;
}

export type ObjectKind = 'api' | 'gateway' | 'fragment' | 'named value' | 'module';

/**
 * One object set to a new value, or deleted (`after` null). `at`: where the object is in the request, for problems;
 * null when the request does not hold it (a prune deletes what the request leaves out).
 */
export type Operation =
  | { kind: 'api'; id: string; after: Record<string, unknown> | null; at: DocPath | null }
  | { kind: 'gateway'; id: string; after: string[] | null; at: DocPath | null }
  | { kind: 'fragment'; id: string; after: unknown[] | null; at: DocPath | null }
  | { kind: 'named value'; id: string; after: StateNamedValue | null; at: DocPath | null }
  | { kind: 'module'; id: string; after: null; at: DocPath | null };

export interface FieldChange {
  /** `policies.inbound[0].config.calls`; `(document)` for the whole value. */
  path: string;
  before?: unknown;
  after?: unknown;
  /** A secret named value's value changed: neither value is shown. */
  secret?: true;
}

export interface Change {
  kind: ObjectKind;
  id: string;
  action: 'create' | 'update' | 'delete';
  fields?: FieldChange[];
}

export interface PlanProblem {
  /** The place in the request (null: not in it, e.g. a stored API another change breaks; `where` says what). */
  path: DocPath | null;
  /** The place in words: the request path, or the stored object and the path in it. */
  where: string;
  message: string;
}

export interface Plan {
  /** What the change leads to. */
  result: ConfigState;
  changes: Change[];
  /** Objects of the request that are as they were. */
  unchanged: { kind: ObjectKind; id: string }[];
  /** What makes the request unusable as it is (400). */
  problems: PlanProblem[];
  /** References the change would break (409); `forceable` ones are made anyway with force. */
  conflicts: (PlanProblem & { forceable: boolean; usedBy: string[] })[];
  /** With force: what the forced deletions break. */
  breaks: string[];
}

export interface PlanOptions {
  /** Deletes APIs in use (gateways that list them stop serving them) and gateways whose instances are live. */
  force?: boolean;
  /** The instances of a gateway heard from lately (not stale), to say what deleting it breaks. */
  liveInstances?: (gateway: string) => number;
  /** Checks one gateway configuration document as a gateway would (validation.ts). */
  check: (doc: unknown, sourceName: string) => Promise<DocumentProblem[]>;
}

/** Where a gateway's document takes its objects from: the stored ones, or those of a plan's state. */
export interface DocumentSources {
  api: (id: string) => unknown | null;
  fragment: (name: string) => unknown[] | null;
  namedValue: (name: string) => StateNamedValue | null;
}

/** A gateway's document (also the one an API is checked in, alone). */
export interface ServedDocumentBody {
  version: 1;
  fragments?: Record<string, unknown[]>;
  apis: unknown[];
  namedValues?: Record<string, NamedValue>;
}

/**
 * The document a gateway serving `apiIds` receives at `now`: those APIs that exist, only the fragments they include
 * (directly or through other fragments), and only the named values those use. A fragment nothing of the gateway
 * includes is not in it: changing one changes no other gateway's document or ETag. A named value's previous value is
 * served while its overlap lasts: when it ends, the document (and its ETag) changes, and gateways drop it at their
 * next poll.
 */
export function gatewayDocumentOf(apiIds: readonly string[], sources: DocumentSources, now = Date.now()): ServedDocumentBody {
  return documentOf({ apis: apiIds.map(sources.api).filter((doc) => doc !== null) }, sources, now);
}

/** A document of `scope` (its APIs, and global policies if any) with the fragments and named values it uses. */
function documentOf<Scope extends { policies?: unknown; apis: unknown[] }>(
  scope: Scope,
  sources: DocumentSources,
  now = Date.now(),
): Scope & { version: 1; fragments?: Record<string, unknown[]>; namedValues?: Record<string, NamedValue> } {
  const fragments = Object.fromEntries(usedFragments(scope, sources.fragment));
  const namedValues: Record<string, NamedValue> = {};
  for (const { name } of namedValueReferences({ ...scope, fragments })) {
    if (Object.hasOwn(namedValues, name)) continue;
    const found = sources.namedValue(name);
    if (!found) continue;
    const previous = found.previous && previousInOverlap({ value: found.value, previous: found.previous }, now) !== null ? found.previous : null;
    namedValues[name] = { value: found.value, ...(found.secret ? { secret: true } : {}), ...(previous ? { previous } : {}) };
  }
  // Without the keys it has no use for: a document with neither is what it was before there were fragments.
  const { apis, ...rest } = scope;
  return {
    version: 1,
    ...rest,
    ...(Object.keys(fragments).length > 0 ? { fragments } : {}),
    apis,
    ...(Object.keys(namedValues).length > 0 ? { namedValues } : {}),
  } as Scope & { version: 1 };
}

/** A state's objects as a document's sources. */
function sourcesOf(state: ConfigState): DocumentSources {
  return {
    api: (id) => state.apis.get(id) ?? null,
    fragment: (name) => state.fragments.get(name) ?? null,
    namedValue: (name) => state.namedValues.get(name) ?? null,
  };
}

/**
 * A named value as saved with `value` over `stored` (the one saved before, if any): the value it replaces is kept as
 * its `previous` for `overlapSeconds`; saved again unchanged, an overlap under way goes on, unless `overlapSeconds` is
 * 0 (which ends it).
 */
export function nextNamedValue(
  stored: StateNamedValue | null,
  value: string,
  secret: boolean,
  overlapSeconds: number | undefined,
  now = Date.now(),
): StateNamedValue {
  if (stored && stored.value === value) return { value, secret, previous: overlapSeconds === 0 ? null : (stored.previous ?? null) };
  const previous = stored && overlapSeconds ? { value: stored.value, until: new Date(now + overlapSeconds * 1000).toISOString() } : null;
  return { value, secret, previous };
}

/** The digest of a gateway's document as served (also its ETag). */
export function documentDigest(doc: unknown): string {
  return createHash('sha256').update(JSON.stringify(doc)).digest('base64url');
}

function documentIn(state: ConfigState, gateway: string) {
  return gatewayDocumentOf(state.gateways.get(gateway) ?? [], sourcesOf(state));
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Plans `operations` on `state`: what they lead to, and what is wrong with them. Nothing is written. */
export async function plan(state: ConfigState, operations: Operation[], options: PlanOptions): Promise<Plan> {
  const problems: PlanProblem[] = [];
  const conflicts: Plan['conflicts'] = [];
  const breaks: string[] = [];
  const at = (op: { at: DocPath | null; kind: string; id: string }, rest: DocPath = []) =>
    op.at === null ? { path: null, where: `${op.kind} ${op.id}${rest.length > 0 ? `: ${formatPath(rest)}` : ''}` } : place([...op.at, ...rest]);
  /** Operations with a problem of their own: not checked further (their object is not what a gateway would see). */
  const flawed = new Set<Operation>();
  const problem = (op: Operation, rest: DocPath, message: string) => {
    flawed.add(op);
    problems.push({ ...at(op, rest), message });
  };

  // Each object once per request: a second would silently win.
  const seen = new Map<string, Operation>();
  for (const op of operations) {
    const key = `${op.kind}\u0000${op.id}`;
    const first = seen.get(key);
    if (first) problem(op, op.kind === 'named value' ? [] : ['id'], `${op.kind} ${op.id} is declared twice (also at ${at(first).where})`);
    else seen.set(key, op);
  }

  // The state the operations lead to, and the shape of each object.
  const result: ConfigState = {
    apis: new Map(state.apis),
    gateways: new Map(state.gateways),
    fragments: new Map(state.fragments),
    namedValues: new Map(state.namedValues),
    modules: new Set(state.modules),
  };
  for (const op of operations) {
    if (op.kind === 'api') {
      if (!ID.test(op.id)) problem(op, ['id'], `${ID_HINT} (got ${JSON.stringify(op.id)})`);
      if (op.after === null) result.apis.delete(op.id);
      else result.apis.set(op.id, op.after);
    } else if (op.kind === 'gateway') {
      if (!ID.test(op.id)) problem(op, ['id'], `${ID_HINT} (got ${JSON.stringify(op.id)})`);
      if (op.after === null) result.gateways.delete(op.id);
      else result.gateways.set(op.id, op.after);
    } else if (op.kind === 'fragment') {
      if (!FRAGMENT_NAME.test(op.id)) problem(op, [], `${FRAGMENT_NAME_HINT} (got ${JSON.stringify(op.id)})`);
      if (op.after === null) result.fragments.delete(op.id);
      else result.fragments.set(op.id, op.after);
    } else if (op.kind === 'named value') {
      if (!NAMED_VALUE_NAME.test(op.id)) problem(op, [], NAMED_VALUE_NAME_HINT);
      if (op.after === null) result.namedValues.delete(op.id);
      else {
        if (op.after.value.length > MAX_NAMED_VALUE_LENGTH) {
          problem(op, ['value'], `a named value is at most ${MAX_NAMED_VALUE_LENGTH} characters (got ${op.after.value.length})`);
        }
        result.namedValues.set(op.id, op.after);
      }
    } else {
      result.modules.delete(op.id);
    }
  }

  // What changes.
  const changes: Change[] = [];
  const unchanged: Plan['unchanged'] = [];
  for (const op of seen.values()) {
    const before = valueIn(state, op.kind, op.id);
    const after = op.after;
    if (before === undefined && after === null) {
      problems.push({ ...at(op), message: `no ${op.kind} ${op.id}` });
      continue;
    }
    if (before !== undefined && after !== null && same(before, after)) {
      // Kept as stored (an equal value may order its keys differently, and a gateway's ETag is of the text).
      restore(result, op.kind, op.id, before);
      unchanged.push({ kind: op.kind, id: op.id });
      continue;
    }
    const action = before === undefined ? 'create' : after === null ? 'delete' : 'update';
    const change: Change = { kind: op.kind, id: op.id, action };
    if (action === 'update') change.fields = op.kind === 'named value' ? namedValueFields(before as StateNamedValue, after as StateNamedValue) : fieldChanges(before, after);
    changes.push(change);
  }

  // References, on the state the change leads to.
  const deleted = (kind: ObjectKind, id: string) => changes.some((c) => c.kind === kind && c.id === id && c.action === 'delete');
  for (const op of operations) {
    if (op.kind === 'gateway' && op.after !== null) {
      op.after.forEach((api, i) => {
        if (result.apis.has(api)) return;
        problems.push({
          ...at(op, ['apis', i]),
          message: deleted('api', api) ? `names API ${api}, which this change deletes` : `names API ${api}, which does not exist`,
        });
      });
    }
    if ((op.kind === 'api' || op.kind === 'fragment') && op.after !== null) {
      for (const { entry, path } of ownEntries(op.kind, op.id, op.after)) {
        const included = entry['include-fragment'];
        if (typeof included === 'string' && !result.fragments.has(included)) {
          problem(
            op,
            [...path, 'include-fragment'],
            deleted('fragment', included)
              ? `includes fragment "${included}", which this change deletes`
              : `includes fragment "${included}", which does not exist (PUT /admin/fragments/${included}, or declare it under fragments:)`,
          );
        }
        if (typeof entry.source === 'string') {
          problem(op, [...path, 'source'], 'a control plane cannot build a policy folder: it names a file of the machine that wrote it (gatehouse apply builds it and uploads the module)');
        }
        if (typeof entry.module !== 'string') continue;
        const ref = MODULE_REF.exec(entry.module);
        if (!ref) problem(op, [...path, 'module'], 'policies from the control plane are built-ins or uploaded modules (module: "sha256:<hex>"), not paths');
        else if (!result.modules.has(ref[1]!)) {
          problem(op, [...path, 'module'], deleted('module', ref[1]!) ? 'names a module this change deletes' : `no uploaded module ${entry.module}`);
        }
      }
    }
  }
  // A fragment that includes itself, directly or through others, or fragments nested too deep. The stored ones have
  // neither: only a fragment of the request can close a circle, so the walk takes them last, to find the circle at
  // the include the request adds.
  const savedFragments = operations.filter((op) => op.kind === 'fragment' && op.after !== null);
  if (savedFragments.length > 0) {
    const ofRequest = ([name]: [string, unknown]) => seen.has(`fragment\u0000${name}`);
    const walkOrder = [...[...result.fragments].filter((f) => !ofRequest(f)), ...[...result.fragments].filter(ofRequest)];
    const cycles = fragmentNesting(Object.fromEntries(walkOrder));
    for (const cycle of cycles) {
      const [, name, ...rest] = cycle.path as [string, string, ...DocPath];
      const op = seen.get(`fragment\u0000${name}`);
      if (op) problem(op, rest, cycle.message);
      else problems.push({ path: null, where: `fragment ${name}${rest.length > 0 ? `: ${formatPath(rest)}` : ''}`, message: cycle.message });
    }
    // Nothing in a circle is checked further: it cannot be bound.
    if (cycles.length > 0) for (const op of savedFragments) flawed.add(op);
  }

  /** Who uses something in `result`, by `uses`: the APIs it breaks, and every user in words. */
  const usersIn = (uses: (doc: unknown) => boolean) => {
    const users = usersOf(result, uses);
    const through = users.usedByApis.filter((id) => !users.includedBy.apis.includes(id)).map((id) => `api ${id} (through a fragment)`);
    const words = [...users.includedBy.apis.map((id) => `api ${id}`), ...users.includedBy.fragments.map((f) => `fragment ${f}`), ...through];
    return { apis: users.usedByApis, words };
  };
  for (const change of changes) {
    if (change.action !== 'delete') continue;
    const op = seen.get(`${change.kind}\u0000${change.id}`)!;
    if (change.kind === 'api') {
      const servedBy = [...result.gateways].filter(([, apis]) => apis.includes(change.id)).map(([id]) => id);
      if (servedBy.length === 0) continue;
      const what = `gateway${servedBy.length > 1 ? 's' : ''} ${servedBy.join(', ')} stop${servedBy.length > 1 ? '' : 's'} serving API ${change.id} (${String(state.apis.get(change.id)?.pathPrefix ?? '')})`;
      if (options.force) breaks.push(`${what}; the gateway${servedBy.length > 1 ? 's' : ''} still list${servedBy.length > 1 ? '' : 's'} it, and gatehouse get marks it missing`);
      else conflicts.push({ ...at(op), forceable: true, usedBy: servedBy, message: `API ${change.id} is served by gateway ${servedBy.join(', ')}: remove it from ${servedBy.length > 1 ? 'them' : 'it'} first, or force the deletion (${what})` });
    } else if (change.kind === 'named value') {
      const users = usersIn((doc) => namedValueReferences(doc).some((r) => r.name === change.id));
      if (users.words.length > 0) {
        conflicts.push({ ...at(op), forceable: false, usedBy: users.apis, message: `named value ${change.id} is used by ${users.words.join(', ')}: change those first` });
      }
    } else if (change.kind === 'module') {
      const users = usersIn((doc) => referencedModules(doc).includes(change.id));
      if (users.words.length > 0) {
        conflicts.push({ ...at(op), forceable: false, usedBy: users.apis, message: `module sha256:${change.id} is used by ${users.words.join(', ')}: change those first` });
      }
    } else if (change.kind === 'fragment') {
      const users = usersIn(includesFragment(change.id));
      if (users.words.length > 0) {
        conflicts.push({ ...at(op), forceable: false, usedBy: users.apis, message: `fragment ${change.id} is included by ${users.words.join(', ')}: change those first` });
      }
    } else if (change.kind === 'gateway') {
      const live = options.liveInstances?.(change.id) ?? 0;
      if (live === 0) continue;
      const what = `${live} instance${live > 1 ? 's' : ''} of gateway ${change.id} heard from lately lose${live > 1 ? '' : 's'} ${live > 1 ? 'their' : 'its'} configuration source: ${live > 1 ? 'their' : 'its'} tokens are refused from now on and ${live > 1 ? 'they keep' : 'it keeps'} serving what ${live > 1 ? 'they have' : 'it has'}`;
      if (options.force) breaks.push(what);
      else conflicts.push({ ...at(op), forceable: true, usedBy: [], message: `gateway ${change.id} is in use: ${what}; stop its instances first, or force the deletion` });
    }
  }

  // Every API the request holds, every API a changed named value reaches, and every gateway document that changes or
  // is declared, checked as a gateway checks its document: policy names, configurations, route conflicts. The APIs
  // are checked whatever else is wrong, so that one answer names every problem; the gateways' documents only when
  // nothing else is (they hold the APIs, and would repeat their problems).
  {
    // A deleted value is not checked through its APIs: that it is in use is a conflict, reported as one.
    const changedValues = new Set(changes.filter((c) => c.kind === 'named value' && c.action !== 'delete').map((c) => c.id));
    const changedFragments = new Set(changes.filter((c) => c.kind === 'fragment' && c.action !== 'delete').map((c) => c.id));
    const flawedFragment = operations.some((op) => op.kind === 'fragment' && flawed.has(op));
    const apisToCheck = new Set<string>();
    for (const op of operations) if (op.kind === 'api' && op.after !== null && !flawed.has(op)) apisToCheck.add(op.id);
    // Each API with the fragments it uses.
    const used = new Map([...result.apis].map(([id, api]) => [id, withFragments(result, api)]));
    for (const [id, doc] of used) {
      if (namedValueReferences(doc).some((r) => changedValues.has(r.name))) apisToCheck.add(id);
      if (!flawedFragment && Object.keys(doc.fragments).some((name) => changedFragments.has(name))) apisToCheck.add(id);
    }
    // A changed fragment no API includes (itself, or through another) is checked alone, included by a fragment of the
    // global scope, in each phase until one binds it: what a fragment is for (a phase) is the APIs' to say.
    const reached = new Set<string>();
    for (const doc of used.values()) for (const name of Object.keys(doc.fragments)) reached.add(name);
    const fragmentsToCheck = flawedFragment
      ? []
      : [...result.fragments.keys()].filter(
          (name) => !reached.has(name) && (changedFragments.has(name) || [...usedFragments(includeOf(name), sourcesOf(result).fragment).keys()].some((f) => changedFragments.has(f))),
        );
    const gatewaysToCheck = new Set<string>();
    for (const op of operations) if (op.kind === 'gateway' && op.after !== null) gatewaysToCheck.add(op.id);
    for (const id of result.gateways.keys()) {
      if (documentDigest(documentIn(result, id)) !== documentDigest(documentIn(state, id))) gatewaysToCheck.add(id);
    }
    const opOf = (kind: ObjectKind, id: string) => seen.get(`${kind}\u0000${id}`) ?? null;
    // A problem of an API is found again in each gateway document holding it: reported once, where the API is.
    const reported = new Set<string>();
    const report = (p: PlanProblem, context: string) => {
      const key = `${p.where}\u0000${p.message}`;
      if (reported.has(key)) return;
      reported.add(key);
      problems.push({ ...p, where: `${p.where}${context}` });
    };
    /** A stored object, and a place in it: `api shop: policies.inbound[0]`. */
    const named = (kind: string, id: string, rest: DocPath) => `${kind} ${id}${rest.length > 0 ? `: ${formatPath(rest)}` : ''}`;
    /** Where a fragment was included: in the API rather than in the document checked (whose `apis` are not the request's). */
    const includePlace = (docApis: string[], at: DocPath) => {
      const [head, index, ...rest] = at;
      return head === 'apis' && typeof index === 'number' && docApis[index] !== undefined ? named('api', docApis[index]!, rest) : formatPath(at);
    };
    /** A problem at `path` of a document made of `docApis`: placed in the request, or named as a stored object. */
    const mapBack = (docApis: string[], p: DocumentProblem): PlanProblem => {
      const message = p.includedAt ? p.message + includedAtText(includePlace(docApis, p.includedAt)) : p.message;
      const [head, index, ...rest] = p.path ?? [];
      const stored = (kind: ObjectKind, id: string) => {
        const op = opOf(kind, id);
        return op?.at ? place([...op.at, ...rest]) : { path: null, where: kind === 'named value' ? `named value ${id}` : named(kind, id, rest) };
      };
      if (head === 'apis' && typeof index === 'number' && docApis[index] !== undefined) return { ...stored('api', docApis[index]!), message };
      if (head === 'fragments' && typeof index === 'string') return { ...stored('fragment', index), message };
      if (head === 'namedValues' && typeof index === 'string') return { ...stored('named value', index), message };
      return { path: null, where: formatPath(p.path ?? []), message };
    };
    // APIs alone first, so that what is wrong with an API is reported at the API rather than in a gateway's document.
    await Promise.all(
      [...apisToCheck].map(async (id) => {
        const doc = gatewayDocumentOf([id], sourcesOf(result));
        for (const p of await options.check(doc, `api ${id}`)) report(mapBack([id], p), '');
      }),
    );
    await Promise.all(
      fragmentsToCheck.map(async (name) => {
        let fewest: { phase: string; problems: DocumentProblem[] } | null = null;
        for (const phase of PHASES) {
          const found = await options.check(fragmentDocument(result, name, phase), `fragment ${name}`);
          if (found.length === 0) return;
          if (!fewest || found.length < fewest.problems.length) fewest = { phase, problems: found };
        }
        const { phase, problems: found } = fewest!;
        // The include standing for the fragment's users is no place of the request: the fragment is.
        const standing = (path: DocPath | null) => path?.[0] === 'policies';
        for (const p of found) {
          const checked = { path: standing(p.path) ? ['fragments', name] : p.path, includedAt: standing(p.includedAt) ? null : p.includedAt, message: p.message };
          report(mapBack([], checked), ` (it binds in no phase; checked as included in ${phase})`);
        }
      }),
    );
    if (problems.length > 0 || conflicts.some((c) => !c.forceable || !options.force)) gatewaysToCheck.clear();
    await Promise.all(
      [...gatewaysToCheck].map(async (id) => {
        const served = (result.gateways.get(id) ?? []).filter((a) => result.apis.has(a));
        for (const p of await options.check(documentIn(result, id), `gateway ${id}`)) report(mapBack(served, p), ` (in the document of gateway ${id})`);
      }),
    );
  }

  return { result, changes, unchanged, problems, conflicts, breaks };
}

/** Who uses what `uses` finds in a document holding one object: the APIs and fragments whose own entries have it,
 * and every API that runs it (itself, or through the fragments it includes). */
export function usersOf(state: ConfigState, uses: (doc: unknown) => boolean): { includedBy: { apis: string[]; fragments: string[] }; usedByApis: string[] } {
  return {
    includedBy: {
      apis: [...state.apis].filter(([, api]) => uses({ apis: [api] })).map(([id]) => id),
      fragments: [...state.fragments].filter(([name, list]) => uses({ fragments: { [name]: list } })).map(([name]) => name),
    },
    usedByApis: [...state.apis].filter(([, api]) => uses(withFragments(state, api))).map(([id]) => id),
  };
}

/** Whether a document includes fragment `name` somewhere. */
const includesFragment = (name: string) => (doc: unknown) => [...policyEntries(doc)].some(({ entry }) => entry['include-fragment'] === name);

/** Who uses each fragment of `state`, as usersOf says for one, for all of them in one walk over the APIs and fragments. */
export function fragmentUsage(state: ConfigState): Map<string, ReturnType<typeof usersOf>> {
  const usage = new Map<string, ReturnType<typeof usersOf>>([...state.fragments.keys()].map((name) => [name, { includedBy: { apis: [], fragments: [] }, usedByApis: [] }]));
  const namedIn = (doc: unknown) => new Set([...policyEntries(doc)].flatMap(({ entry }) => (typeof entry['include-fragment'] === 'string' ? [entry['include-fragment']] : [])));
  for (const [id, api] of state.apis) {
    for (const name of namedIn({ apis: [api] })) usage.get(name)?.includedBy.apis.push(id);
    for (const name of Object.keys(withFragments(state, api).fragments)) usage.get(name)?.usedByApis.push(id);
  }
  for (const [name, list] of state.fragments) for (const included of namedIn({ fragments: { [name]: list } })) usage.get(included)?.includedBy.fragments.push(name);
  return usage;
}

/** The policy entries of one API or one fragment, at their paths in it. */
function* ownEntries(kind: 'api' | 'fragment', id: string, value: unknown): Generator<{ entry: Record<string, unknown>; path: DocPath }> {
  const doc = kind === 'api' ? { apis: [value] } : { fragments: { [id]: value } };
  for (const { entry, path } of policyEntries(doc)) yield { entry, path: path.slice(2) };
}

/** A document holding one API and the fragments it includes, directly or through others. */
function withFragments(state: ConfigState, api: unknown): { apis: unknown[]; fragments: Record<string, unknown[]> } {
  return { apis: [api], fragments: Object.fromEntries(usedFragments({ apis: [api] }, sourcesOf(state).fragment)) };
}

/** The global scope's policies of a document that includes fragment `name` once, in `phase`. */
function includeOf(name: string, phase: string = PHASES[0]): { policies: Record<string, unknown[]> } {
  return { policies: { [phase]: [{ 'include-fragment': name }] } };
}

/** A document that includes fragment `name` once, in `phase` of its global scope, with what the fragment uses. */
function fragmentDocument(state: ConfigState, name: string, phase: string) {
  return documentOf({ ...includeOf(name, phase), apis: [] }, sourcesOf(state));
}

/** A place in the request: its path, and the path in words (`apis[1].policies.inbound[0]`; `(request)` for the body). */
function place(path: DocPath): { path: DocPath; where: string } {
  return { path, where: path.length === 0 ? '(request)' : formatPath(path) };
}

function restore(state: ConfigState, kind: ObjectKind, id: string, value: unknown): void {
  if (kind === 'api') state.apis.set(id, value as Record<string, unknown>);
  else if (kind === 'gateway') state.gateways.set(id, value as string[]);
  else if (kind === 'fragment') state.fragments.set(id, value as unknown[]);
  else if (kind === 'named value') state.namedValues.set(id, value as StateNamedValue);
}

function valueIn(state: ConfigState, kind: ObjectKind, id: string): unknown {
  if (kind === 'api') return state.apis.get(id);
  if (kind === 'gateway') return state.gateways.get(id);
  if (kind === 'fragment') return state.fragments.get(id);
  if (kind === 'named value') return state.namedValues.get(id);
  return state.modules.has(id) ? id : undefined;
}

/** Equal as JSON values, whatever the order of their keys. */
export function same(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => same(v, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a).filter((k) => a[k] !== undefined);
    return keys.length === Object.keys(b).filter((k) => b[k] !== undefined).length && keys.every((k) => same(a[k], b[k]));
  }
  return a === b;
}

const MAX_FIELDS = 50;

/** The leaves that differ between two JSON values, at most MAX_FIELDS (then one line saying how many more). */
function fieldChanges(before: unknown, after: unknown): FieldChange[] {
  const out: FieldChange[] = [];
  let more = 0;
  const walk = (a: unknown, b: unknown, path: (string | number)[]) => {
    if (same(a, b)) return;
    if (isObject(a) && isObject(b)) {
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[k], b[k], [...path, k]);
      return;
    }
    if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
      a.forEach((v, i) => walk(v, b[i], [...path, i]));
      return;
    }
    if (out.length >= MAX_FIELDS) {
      more++;
      return;
    }
    const change: FieldChange = { path: formatPath(path) };
    if (a !== undefined) change.before = a;
    if (b !== undefined) change.after = b;
    out.push(change);
  };
  walk(before, after, []);
  if (more > 0) out.push({ path: `and ${more} more` });
  return out;
}

function namedValueFields(before: StateNamedValue, after: StateNamedValue): FieldChange[] {
  const out: FieldChange[] = [];
  if (before.value !== after.value) out.push(before.secret || after.secret ? { path: 'value', secret: true } : { path: 'value', before: before.value, after: after.value });
  if (before.secret !== after.secret) out.push({ path: 'secret', before: before.secret, after: after.secret });
  // The previous value itself is never shown: only until when it is accepted.
  if (before.previous?.until !== after.previous?.until) {
    const change: FieldChange = { path: 'previousAcceptedUntil' };
    if (before.previous) change.before = before.previous.until;
    if (after.previous) change.after = after.previous.until;
    out.push(change);
  }
  return out;
}
