// Turns the policy entries of a configuration document into bound policy chains: finds or builds each module,
// loads it into the policy host, binds it with its configuration, grants and limits, and warms its instance; compiles
// the expressions of `when:` conditions, choose branches, set-variable and computed configuration values; and puts
// the host's own steps (steps.ts) around and between the bindings. A fragment is bound once for each place that
// includes it (its policies' counters are that place's). Every entry that cannot be used is reported, with its place in
// the document, in one ConfigError.

import { readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';

import type { ChainStep, PolicyChain } from '../pipeline/chain.ts';
import { Branches, Guarded, Retry, SetVariable, Trace, Wait, type Branch, type ComputedConfig, type RetryTiming } from '../pipeline/steps.ts';
import { parseLiquid, SetBody, type BodyValue } from '../pipeline/set-body.ts';
import { DEFAULT_MAX_RESPONSE_BYTES, SendRequest, type SendRequestSettings, type TextValue } from '../pipeline/send-request.ts';
import {
  CacheLookup,
  CacheLookupValue,
  CacheRemoveValue,
  CacheStoreResponse,
  CacheStoreValue,
  DEFAULT_CACHEABLE_STATUSES,
  type CacheStepBase,
} from '../pipeline/cache-steps.ts';
import { DEFAULT_CACHE_LIMITS, MemoryCacheStore, type CacheLimits, type CacheStore } from '../state/cache-store.ts';
import { compileExpression, type Expression, type ExpressionKind } from '../expressions/cel.ts';
import { isExpressionValue, planComputedConfig } from './computed-config.ts';
import {
  PHASES,
  PolicyConfigError,
  PolicyLoadError,
  type Grants,
  type Phase,
  type PolicyBinding,
  type PolicyHost,
  type PolicyModule,
} from '../policy-host/index.ts';
import { ConfigError, type LocatedProblem } from './config-error.ts';
import { problemWhere, type DocPath } from './document-paths.ts';
import { BACKEND_FROM_CONFIG, exactEntryOf, grantsFromNeeds, PolicySourceError, type PolicySources } from './policy-sources.ts';
import { allowedHostsProblems } from '../policy-host/egress.ts';
import type { GatewayDocument, PhaseChains, PolicyEntry, SendRequestEntry } from './types.ts';

export interface BoundChains {
  global: Partial<PolicyChain>;
  /** By API id: the API's own chain, and each operation's (every operation of the document, by id). */
  apis: Map<string, { api: Partial<PolicyChain>; operations: Map<string, Partial<PolicyChain>> }>;
  /** What works but is likely a mistake (a grant the policy does not declare in `needs`): the caller logs them. */
  warnings: LocatedProblem[];
}

export interface BindChainsOptions {
  host: PolicyHost;
  /** `module:` and `source:` paths, and relative host directories of filesystem grants, are relative to it. */
  baseDir: string;
  /**
   * The modules of `policy:` (built-in) and `source:` entries: built from the repository's `policies/` with the SDK
   * (RepositoryPolicySources), or precompiled in the single-file bundle (EmbeddedPolicySources).
   */
  policies: PolicySources;
  /** Names the document in problems (its file path, usually). */
  sourceName: string;
  /** Where the cache steps keep responses and values; absent: an in-memory store of its own (a document only checked). */
  cache?: { store: CacheStore; limits: CacheLimits };
}

interface Slot {
  /** Place in the document, e.g. ['apis', 0, 'policies', 'inbound', 1] (in `fragments` for a fragment's entry). */
  path: DocPath;
  /**
   * Binding id: `global/inbound/0`, `api:echo/outbound/1`, `api:echo/op:getOrder/inbound/0`; nested entries add their
   * place: `.../inbound/2/choose/0/1`, `.../inbound/2/otherwise/0`, `.../inbound/3/fragment:auth/0`.
   */
  id: string;
  phase: Phase;
  entry: PolicyEntry;
  /** The include-fragment entry it was reached through, for problems found in a fragment's entry. */
  includedFrom: DocPath | null;
  /** Its `when:` condition. */
  when: Expression | null;
  /** Set once bound. */
  binding: PolicyBinding | null;
  computed: ComputedConfig | null;
}

/** A chain entry as planned: bound later (a slot), or a step of the host's with the plans of what it runs. */
type Planned =
  | { kind: 'binding'; slot: Slot }
  | { kind: 'branches'; id: string; when: Expression | null; failOpen: boolean; branches: { when: Expression | null; steps: Planned[] }[] }
  | { kind: 'set-variable'; id: string; when: Expression | null; failOpen: boolean; name: string; value: Expression | string }
  | { kind: 'trace'; id: string; when: Expression | null; failOpen: boolean; source: string; severity: 'verbose' | 'information' | 'error'; message: Expression | string; metadata: [string, Expression | string][] }
  | { kind: 'set-body'; id: string; when: Expression | null; failOpen: boolean; value: BodyValue; contentType: string | null; readsBody: boolean }
  | { kind: 'send'; id: string; when: Expression | null; failOpen: boolean; settings: SendRequestSettings }
  | { kind: 'retry'; id: string; when: Expression | null; failOpen: boolean; condition: Expression; count: number; timing: RetryTiming; steps: Planned[] }
  | { kind: 'wait'; id: string; when: Expression | null; failOpen: boolean; forAll: boolean; steps: Planned[] }
  | { kind: 'cache'; id: string; when: Expression | null; failOpen: boolean; make: MakeCacheStep };

const CACHE_STEPS = ['cache-lookup', 'cache-store', 'cache-lookup-value', 'cache-store-value', 'cache-remove-value'] as const;
const HOST_STEPS = ['choose', 'set-variable', 'include-fragment', 'send-request', 'send-one-way-request', 'retry', 'wait', 'set-body', 'trace', ...CACHE_STEPS] as const;
/** The host steps that call out, and so take the `http` grant (and only it). */
const SENDING_STEPS = ['send-request', 'send-one-way-request'] as const;
/** What only a policy module's entry has. */
const MODULE_KEYS = ['config', 'grants', 'limits', 'circuitBreaker'] as const;

/**
 * Binds every policy of `doc`. Modules are built or read once each, in parallel, and loaded once per content;
 * bindings are created only when every entry is good, then warmed. Throws ConfigError listing every bad entry.
 */
export async function bindChains(doc: GatewayDocument, options: BindChainsOptions): Promise<BoundChains> {
  const { host, sourceName } = options;
  const problems: LocatedProblem[] = [];
  // A problem in a fragment's entry is the same wherever the fragment is included: reported once, naming the first.
  const reported = new Set<string>();
  const reportAt = (path: DocPath, messages: string[], includedFrom: DocPath | null = null) => {
    const where = problemWhere(doc, sourceName, path);
    for (const message of messages) {
      const key = `${where}\u0000${message}`;
      if (reported.has(key)) continue;
      reported.add(key);
      problems.push({ where, message, path, ...(includedFrom ? { includedAt: includedFrom } : {}) });
    }
  };
  const report = (slot: Slot, messages: string[]) => reportAt(slot.path, messages, slot.includedFrom);
  const warnings: LocatedProblem[] = [];

  const slots: Slot[] = [];
  const compile = expressionCompiler(doc);
  const plan = (
    entries: readonly PolicyEntry[] | undefined,
    path: DocPath,
    idPrefix: string,
    phase: Phase,
    includedFrom: DocPath | null,
    fragments: readonly string[],
  ): Planned[] => {
    const planned: Planned[] = [];
    (entries ?? []).forEach((entry, i) => {
      const at = [...path, i];
      const id = `${idPrefix}/${i}`;
      const expression = (source: unknown, where: DocPath): Expression | null => {
        const compiled = compile(source, 'condition', phase);
        if (!Array.isArray(compiled)) return compiled;
        reportAt(where, compiled, includedFrom);
        return null;
      };
      /** A text value as written, or its compiled `{expr}` (null when it does not compile). */
      const text = (value: string | { expr: string }, where: DocPath): Expression | string | null => {
        if (!isExpressionValue(value)) return value as string;
        const compiled = compile(value.expr, 'text', phase);
        if (!Array.isArray(compiled)) return compiled;
        reportAt([...where, 'expr'], compiled, includedFrom);
        return null;
      };
      const when = entry.when === undefined ? null : expression(entry.when, [...at, 'when']);
      const failOpen = entry.failOpen === true;
      const hostStep = HOST_STEPS.find((k) => entry[k] !== undefined);
      if (hostStep !== undefined) {
        const sends = (SENDING_STEPS as readonly string[]).includes(hostStep);
        const stray = MODULE_KEYS.filter((k) => entry[k] !== undefined && !(sends && k === 'grants'));
        if (stray.length > 0) reportAt(at, [`${stray.join(', ')} belong to a policy; ${hostStep} has none`], includedFrom);
      }
      if (entry.otherwise !== undefined && entry.choose === undefined) reportAt([...at, 'otherwise'], ['goes with choose'], includedFrom);
      if (entry.choose !== undefined) {
        const branches = entry.choose.map((branch, b) => ({
          when: expression(branch.when, [...at, 'choose', b, 'when']),
          steps: plan(branch.policies, [...at, 'choose', b, 'policies'], `${id}/choose/${b}`, phase, includedFrom, fragments),
        }));
        if (entry.otherwise) {
          branches.push({ when: null, steps: plan(entry.otherwise, [...at, 'otherwise'], `${id}/otherwise`, phase, includedFrom, fragments) });
        }
        planned.push({ kind: 'branches', id, when, failOpen, branches });
      } else if (entry['include-fragment'] !== undefined) {
        const name = entry['include-fragment'];
        const list = doc.fragments && Object.hasOwn(doc.fragments, name) ? doc.fragments[name] : undefined;
        // Missing fragments and cycles are the document's problems (fragments.ts); a document built in code is
        // checked here only as far as it takes not to loop.
        if (!list) reportAt([...at, 'include-fragment'], [`no fragment "${name}"`], includedFrom);
        else if (fragments.includes(name)) reportAt([...at, 'include-fragment'], [`fragment "${name}" includes itself`], includedFrom);
        else {
          const steps = plan(list, ['fragments', name], `${id}/fragment:${name}`, phase, includedFrom ?? at, [...fragments, name]);
          planned.push({ kind: 'branches', id, when, failOpen, branches: [{ when: null, steps }] });
        }
      } else if (entry.retry !== undefined) {
        const r = entry.retry;
        const condition = compile(r.condition, 'condition', phase);
        if (Array.isArray(condition)) reportAt([...at, 'retry', 'condition'], condition, includedFrom);
        const seconds = (v: number | undefined) => (v === undefined ? null : v * 1000);
        const timing: RetryTiming = {
          intervalMs: seconds(r.interval) ?? 0,
          deltaMs: seconds(r.delta),
          maxIntervalMs: seconds(r.maxInterval),
          firstFastRetry: r.firstFastRetry === true,
        };
        if (timing.maxIntervalMs !== null && timing.deltaMs === null) {
          reportAt([...at, 'retry', 'maxInterval'], ['goes with delta (APIM: interval, delta and maxInterval together make the waits grow exponentially)'], includedFrom);
        }
        const steps = plan(r.policies, [...at, 'retry', 'policies'], `${id}/retry`, phase, includedFrom, fragments);
        if (!Array.isArray(condition)) planned.push({ kind: 'retry', id, when, failOpen, condition, count: r.count, timing, steps });
      } else if (entry.wait !== undefined) {
        const w = entry.wait;
        (w.policies ?? []).forEach((child, c) => {
          if (!SENDING_STEPS.some((k) => child[k] !== undefined)) {
            reportAt([...at, 'wait', 'policies', c], ['wait runs send-request and send-one-way-request entries side by side, nothing else'], includedFrom);
          }
        });
        const steps = plan(w.policies, [...at, 'wait', 'policies'], `${id}/wait`, phase, includedFrom, fragments);
        planned.push({ kind: 'wait', id, when, failOpen, forAll: w.for !== 'any', steps });
      } else if (entry['send-request'] !== undefined || entry['send-one-way-request'] !== undefined) {
        const oneWay = entry['send-request'] === undefined;
        const key = oneWay ? 'send-one-way-request' : 'send-request';
        const settings = planSend(entry, key, [...at, key], (source, where) => {
          const compiled = compile(source, 'text', phase);
          if (!Array.isArray(compiled)) return compiled;
          reportAt(where, compiled, includedFrom);
          return null;
        }, (where, message) => reportAt(where, [message], includedFrom), [...at, 'grants']);
        if (settings !== null) planned.push({ kind: 'send', id, when, failOpen, settings });
      } else if (entry.trace !== undefined) {
        const t = entry.trace;
        let good = true;
        const text = (value: string | { expr: string }, where: DocPath): Expression | string => {
          if (typeof value === 'string') return value;
          const compiled = compile(value.expr, 'text', phase);
          if (!Array.isArray(compiled)) return compiled;
          reportAt([...where, 'expr'], compiled, includedFrom);
          good = false;
          return '';
        };
        const message = text(t.message, [...at, 'trace', 'message']);
        const metadata = Object.entries(t.metadata ?? {}).map(([name, v]): [string, Expression | string] => [name, text(v, [...at, 'trace', 'metadata', name])]);
        if (good) planned.push({ kind: 'trace', id, when, failOpen, source: t.source, severity: t.severity ?? 'verbose', message, metadata });
      } else if (entry['set-body'] !== undefined) {
        const { value, template, contentType } = entry['set-body'];
        const onRequest = phase === 'inbound' || phase === 'backend';
        let body: BodyValue | null = null;
        let reads = onRequest;
        if (template === 'liquid') {
          const parsed = typeof value === 'string' ? parseLiquid(value) : ['a Liquid template is text, not an expression'];
          if (Array.isArray(parsed)) reportAt([...at, 'set-body', 'value'], parsed, includedFrom);
          else {
            body = { kind: 'liquid', template: parsed.template };
            reads ||= parsed.readsBody;
          }
        } else if (isExpressionValue(value)) {
          const compiled = compile(value.expr, 'text', phase);
          if (Array.isArray(compiled)) reportAt([...at, 'set-body', 'value', 'expr'], compiled, includedFrom);
          else body = { kind: 'expression', expression: compiled };
        } else body = { kind: 'text', text: value };
        if (body !== null) planned.push({ kind: 'set-body', id, when, failOpen, value: body, contentType: contentType ?? null, readsBody: reads });
      } else if (entry['set-variable'] !== undefined) {
        const { name, value } = entry['set-variable'];
        const computed = text(value, [...at, 'set-variable', 'value']);
        if (computed !== null) planned.push({ kind: 'set-variable', id, when, failOpen, name, value: computed });
      } else if (hostStep !== undefined && (CACHE_STEPS as readonly string[]).includes(hostStep)) {
        const make = planCacheStep(entry, phase, [...at, hostStep], text, (where, message) => reportAt(where, [message], includedFrom));
        if (make !== null) planned.push({ kind: 'cache', id, when, failOpen, make });
      } else {
        const slot: Slot = { path: at, id, phase, entry, includedFrom, when, binding: null, computed: null };
        slots.push(slot);
        planned.push({ kind: 'binding', slot });
      }
    });
    return planned;
  };

  const chainsOf = (chains: PhaseChains | undefined, path: DocPath, idPrefix: string) => {
    const out = {} as Record<Phase, Planned[]>;
    for (const phase of PHASES) out[phase] = plan(chains?.[phase], [...path, 'policies', phase], `${idPrefix}/${phase}`, phase, null, []);
    return out;
  };
  const globalPlan = chainsOf(doc.policies, [], 'global');
  const apiPlans = doc.apis.map((api, a) => ({
    api,
    chain: chainsOf(api.policies, ['apis', a], `api:${api.id}`),
    operations: (api.operations ?? []).map((op, o) => ({ id: op.id, chain: chainsOf(op.policies, ['apis', a, 'operations', o], `api:${api.id}/op:${op.id}`) })),
  }));
  const seenIds = new Set<string>();
  for (const slot of slots) {
    // Ids namespace counters; the document's unique API and operation ids make them unique, unless it was not checked.
    if (seenIds.has(slot.id)) report(slot, [`binding id ${slot.id} is not unique (duplicate API or operation ids)`]);
    seenIds.add(slot.id);
  }

  // Every distinct module once: built-ins and sources are built in parallel (the SDK compiles one at a time and
  // serves repeated builds from its cache), .wasm files read once; the host loads each content once.
  const modules = new Map<string, Promise<PolicyModule>>();
  const moduleFor = (key: string, bytes: () => Promise<Uint8Array>) => {
    let found = modules.get(key);
    if (!found) {
      found = bytes().then((b) => host.load(b));
      found.catch(() => undefined); // awaited (and reported) per slot below
      modules.set(key, found);
    }
    return found;
  };
  const sources = options.policies;

  // Built-in policies get what their policy.json `needs` earns them without being told (grantsFromNeeds): `counters`
  // for rate limits and quotas, the backend grant of set-backend-service's own baseUrl.
  const builtinNeeds = new Map<string, readonly string[]>();
  // What each `policy:` and `source:` entry's policy.json declares (`module:` files carry no policy.json).
  const declared = new Map<Slot, { policy: string; needs: readonly string[] }>();
  const resolved = await Promise.all(
    slots.map(async (slot): Promise<PolicyModule | null> => {
      const { entry } = slot;
      const given = (['policy', 'module', 'source'] as const).filter((k) => entry[k] !== undefined);
      if (given.length !== 1) {
        report(slot, [`needs exactly one of "policy", "module", "source", ${HOST_STEPS.map((k) => `"${k}"`).join(', ')} (has ${given.join(', ') || 'none'})`]);
        return null;
      }
      try {
        if (entry.policy !== undefined) {
          const builtin = sources.builtin(entry.policy);
          if (!builtin) {
            report(slot, [
              `no built-in policy "${entry.policy}" (built-in policies: ${sources.builtinNames().join(', ') || 'none found'})`,
            ]);
            return null;
          }
          if (!builtinNeeds.has(entry.policy)) builtinNeeds.set(entry.policy, await builtin.needs());
          declared.set(slot, { policy: entry.policy, needs: builtinNeeds.get(entry.policy)! });
          return await moduleFor(builtin.key, () => builtin.wasm());
        }
        if (entry.module !== undefined) {
          const file = resolve(options.baseDir, entry.module);
          return await moduleFor(`module:${file}`, async () => {
            try {
              return new Uint8Array(await readFile(file));
            } catch (err) {
              throw new MissingFile(entry.module!, file, err as NodeJS.ErrnoException);
            }
          });
        }
        const source = resolve(options.baseDir, entry.source!);
        const module = await moduleFor(`source:${source}`, () => sources.buildSource(source));
        const policyJson = await readPolicyJson(source);
        if (policyJson) declared.set(slot, policyJson);
        return module;
      } catch (err) {
        report(slot, describeFailure(err));
        return null;
      }
    }),
  );

  const bindings: PolicyBinding[] = [];
  slots.forEach((slot, i) => {
    const module = resolved[i];
    if (!module) return;
    const { entry } = slot;
    const computed = planComputedConfig(entry.config, module, (source, kind) => compile(source, kind, slot.phase), [...slot.path, 'config']);
    if (Array.isArray(computed)) {
      for (const p of computed) reportAt(p.path, [p.message], slot.includedFrom);
      return;
    }
    const config = computed?.fixed ?? entry.config;
    const grants = grantsFor(entry, builtinNeeds, options.baseDir);
    const policy = declared.get(slot);
    if (policy) {
      const missing = missingGrants(policy.needs, grants, entry.config);
      if (missing.length > 0) {
        report(slot, missing.map((need) => `policy ${policy.policy} needs the "${need}" grant (its policy.json "needs"), which this entry does not give: add ${grantExample(need)}`));
        return;
      }
      for (const grant of unusedGrants(policy.needs, entry.grants)) {
        const where = problemWhere(doc, sourceName, [...slot.path, 'grants', grant]);
        warnings.push({ where, path: [...slot.path, 'grants', grant], message: `policy ${policy.policy} does not declare the "${grant}" grant in its policy.json "needs": the grant is given but likely unused` });
      }
    }
    try {
      const binding = host.bind({
        id: slot.id,
        phase: slot.phase,
        module,
        // A copy: the host fills in the defaults of the policy's schema, and the document stays as it was written.
        config: config === undefined ? undefined : structuredClone(config),
        computedKeys: computed?.keys,
        grants,
        limits: entry.limits,
        circuitBreaker: entry.circuitBreaker,
        failOpen: entry.failOpen,
      });
      slot.binding = binding;
      slot.computed = computed?.computed ?? null;
      bindings.push(binding);
    } catch (err) {
      report(slot, describeFailure(err));
    }
  });
  if (problems.length > 0) throw new ConfigError(problems, `the policies of ${sourceName} cannot be used`);

  // Instances are created now, so that the first request does not pay for them.
  const warmed = await Promise.allSettled(bindings.map((b) => b.warm()));
  warmed.forEach((outcome, i) => {
    if (outcome.status === 'rejected') {
      const slot = slots.find((s) => s.id === bindings[i]!.id)!;
      report(slot, [`cannot create an instance: ${(outcome.reason as Error)?.message ?? String(outcome.reason)}`]);
    }
  });
  if (problems.length > 0) throw new ConfigError(problems, `the policies of ${sourceName} cannot be used`);

  const wallMs = () => host.wallMs();
  const cache = options.cache ?? { store: new MemoryCacheStore(), limits: DEFAULT_CACHE_LIMITS };
  const step = (p: Planned): ChainStep => {
    if (p.kind === 'binding') {
      const { binding, when, computed } = p.slot;
      return when === null && computed === null ? binding! : new Guarded(binding!, when, computed);
    }
    const inner = hostStep(p);
    return p.when === null ? inner : new Guarded(inner, p.when, null);
  };
  const traceLog = (level: 'debug' | 'info' | 'error', fields: Record<string, unknown>) => host.logger.log(level, 'trace', fields);
  const oneWayFailed = (id: string, message: string) => host.logger.warn('send-one-way-request failed', { binding: id, error: message });
  const hostStep = (p: Exclude<Planned, { kind: 'binding' }>): ChainStep => {
    switch (p.kind) {
      case 'set-variable':
        return new SetVariable(p.id, p.name, p.value, wallMs, p.failOpen);
      case 'trace':
        return new Trace(p.id, p.source, p.severity, p.message, p.metadata, traceLog, wallMs, p.failOpen);
      case 'set-body':
        return new SetBody(p.id, p.value, p.contentType, p.readsBody, wallMs, p.failOpen);
      case 'send':
        return new SendRequest(p.id, p.settings, host.effects, wallMs, p.failOpen, oneWayFailed);
      case 'retry':
        return new Retry(p.id, p.condition, p.count, p.timing, p.steps.map(step), wallMs, p.failOpen);
      case 'wait':
        return new Wait(p.id, p.forAll, p.steps.map(step), wallMs, p.failOpen);
      case 'cache':
        return p.make({ id: p.id, failOpen: p.failOpen, wallMs, ...cache });
      case 'branches':
        return new Branches(p.id, p.branches.map((b): Branch => ({ when: b.when, steps: b.steps.map(step) })), wallMs, p.failOpen);
    }
  };
  const chain = (planned: Record<Phase, Planned[]>): Partial<PolicyChain> => ({
    inbound: planned.inbound.map(step),
    backend: planned.backend.map(step),
    outbound: planned.outbound.map(step),
    'on-error': planned['on-error'].map(step),
  });
  const apis: BoundChains['apis'] = new Map();
  for (const { api, chain: apiChain, operations } of apiPlans) {
    apis.set(api.id, { api: chain(apiChain), operations: new Map(operations.map((op) => [op.id, chain(op.chain)])) });
  }
  return { global: chain(globalPlan), apis, warnings };
}

/** The `name` and `needs` of the policy.json of a `source:` entry (its folder, or the folder of its .ts file). */
async function readPolicyJson(source: string): Promise<{ policy: string; needs: readonly string[] } | null> {
  const dir = source.endsWith('.ts') ? dirname(source) : source;
  try {
    const json = JSON.parse(await readFile(join(dir, 'policy.json'), 'utf8')) as { name?: unknown; needs?: unknown };
    const needs = Array.isArray(json.needs) ? json.needs.filter((n): n is string => typeof n === 'string') : [];
    return { policy: typeof json.name === 'string' ? json.name : basename(dir), needs };
  } catch {
    return null; // the build has reported a policy.json it cannot read
  }
}

/**
 * The needs a binding's grants do not meet. `backend:<key>` asks for a backend grant only when `<key>` holds a URL
 * written in the configuration (a built-in is given that grant; a computed value is known per request only).
 */
function missingGrants(needs: readonly string[], grants: Grants | undefined, config: unknown): string[] {
  const g = grants ?? {};
  return needs.filter((need) => {
    if (need === 'counters') return g.counters !== true;
    if (need === 'http') return g.http === undefined;
    if (need === 'backend') return g.backend === undefined;
    if (need === 'wasi') return g.wasi !== true && g.filesystem === undefined;
    if (need === 'filesystem') return g.filesystem === undefined;
    if (need.startsWith(BACKEND_FROM_CONFIG)) {
      const value = config && typeof config === 'object' ? (config as Record<string, unknown>)[need.slice(BACKEND_FROM_CONFIG.length)] : undefined;
      return typeof value === 'string' && g.backend === undefined;
    }
    return false;
  });
}

/** How to write the grant a need asks for, for the message. */
function grantExample(need: string): string {
  if (need === 'counters') return '`grants: { counters: true }`';
  if (need === 'wasi') return '`grants: { wasi: true }`';
  if (need === 'filesystem') return '`grants: { filesystem: { "/guest/dir": "./host/dir" } }`';
  if (need === 'http') return '`grants: { http: { allowedHosts: ["host:port"] } }`';
  return '`grants: { backend: { allowedHosts: ["host:port"] } }`';
}

/** The grants an entry gives itself that its policy's `needs` does not name. */
function unusedGrants(needs: readonly string[], own: Grants | undefined): string[] {
  if (!own || typeof own !== 'object') return [];
  const named = new Set(needs.map((n) => (n.startsWith(BACKEND_FROM_CONFIG) ? 'backend' : n)));
  // A filesystem is reached through WASI: either need covers both grants.
  if (named.has('filesystem') || named.has('wasi')) named.add('wasi').add('filesystem');
  return Object.keys(own).filter((grant) => !named.has(grant));
}

/**
 * Compiles the document's expressions, each (text, kind, phase) once: a fragment included in many places, or the same
 * condition written on many entries, costs one compilation (up to a millisecond for a long expression). Expressions
 * see the document's named values, the secret ones by name only.
 */
function expressionCompiler(doc: GatewayDocument): (source: unknown, kind: ExpressionKind, phase: Phase) => Expression | string[] {
  const named = Object.entries(doc.namedValues ?? {});
  const namedValues = new Map(named.filter(([, v]) => !v.secret).map(([k, v]) => [k, v.value]));
  const secretNames = new Set(named.filter(([, v]) => v.secret).map(([k]) => k));
  const compiled = new Map<string, Expression | string[]>();
  return (source, kind, phase) => {
    if (typeof source !== 'string') return compileExpression(source, kind, { phase, namedValues, secretNames });
    const key = `${kind}\u0000${phase}\u0000${source}`;
    let found = compiled.get(key);
    if (found === undefined) {
      found = compileExpression(source, kind, { phase, namedValues, secretNames });
      compiled.set(key, found);
    }
    return found;
  };
}

/**
 * The settings of a send-request (or send-one-way-request) entry, its expressions compiled; null when one does not
 * compile (reported). Its `http` grant is what the entry grants, and the host and port of a literal `url`: the operator
 * who wrote the URL named them. A computed URL reaches only what the grant names.
 */
function planSend(
  entry: PolicyEntry,
  key: 'send-request' | 'send-one-way-request',
  at: DocPath,
  compile: (source: unknown, where: DocPath) => Expression | null,
  report: (where: DocPath, message: string) => void,
  grantsAt: DocPath,
): SendRequestSettings | null {
  const s: SendRequestEntry & { responseVariable?: string; ignoreError?: boolean; maxResponseBytes?: number } = entry[key]!;
  let good = true;
  const value = (v: string | { expr: string }, where: DocPath): TextValue => {
    if (typeof v === 'string') return v;
    const compiled = compile(v.expr, [...where, 'expr']);
    if (compiled === null) good = false;
    return compiled ?? '';
  };
  const hosts = [...(entry.grants?.http?.allowedHosts ?? [])];
  for (const other of Object.keys(entry.grants ?? {})) {
    if (other !== 'http') report([...grantsAt, other], `a ${key} takes the http grant only`);
  }
  if (entry.grants?.http !== undefined) for (const problem of allowedHostsProblems('http', entry.grants.http)) report(grantsAt, problem);
  const literal = typeof s.url === 'string' ? exactEntryOf(s.url) : null;
  if (typeof s.url === 'string' && literal === null) report([...at, 'url'], `${JSON.stringify(s.url)} is not an absolute http(s) URL`);
  if (literal !== null) hosts.push(literal);
  const settings: SendRequestSettings = {
    mode: s.mode ?? 'new',
    url: value(s.url, [...at, 'url']),
    method: s.method === undefined ? null : value(s.method, [...at, 'method']),
    headers: Object.entries(s.headers ?? {}).map(([name, v]) => [name.toLowerCase(), value(v, [...at, 'headers', name])]),
    body: s.body === undefined ? null : value(s.body, [...at, 'body']),
    timeoutSeconds: s.timeout ?? 20,
    responseVariable: key === 'send-request' ? (s.responseVariable ?? null) : null,
    ignoreError: s.ignoreError === true,
    maxResponseBytes: s.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
    grants: hosts.length > 0 ? { http: { allowedHosts: hosts } } : {},
  };
  return good ? settings : null;
}

type MakeCacheStep = (base: CacheStepBase) => ChainStep;

/**
 * Plans a cache step (pipeline/cache-steps.ts): its phase, its values compiled. The schema has checked its shape.
 * Null when it cannot be used (reported).
 */
function planCacheStep(
  entry: PolicyEntry,
  phase: Phase,
  at: DocPath,
  text: (value: string | { expr: string }, where: DocPath) => Expression | string | null,
  report: (where: DocPath, message: string) => void,
): MakeCacheStep | null {
  const lookup = entry['cache-lookup'];
  if (lookup !== undefined) {
    if (phase !== 'inbound') return report(at, `cache-lookup belongs in inbound (it answers before the backend is called), not ${phase}`), null;
    const settings = {
      varyByHeaders: (lookup.varyByHeaders ?? []).map((h) => h.toLowerCase()),
      varyByQueryParameters: lookup.varyByQueryParameters ?? null,
      allowPrivateResponseCaching: lookup.allowPrivateResponseCaching === true,
      downstreamCachingType: lookup.downstreamCachingType ?? 'none',
      mustRevalidate: lookup.mustRevalidate === true,
    };
    return (base) => new CacheLookup(base, settings);
  }
  const store = entry['cache-store'];
  if (store !== undefined) {
    if (phase !== 'outbound') return report(at, `cache-store belongs in outbound (it stores the backend's response), not ${phase}`), null;
    const settings = { durationSeconds: store.duration, statuses: store.statuses ?? DEFAULT_CACHEABLE_STATUSES };
    return (base) => new CacheStoreResponse(base, settings);
  }
  const lookupValue = entry['cache-lookup-value'];
  if (lookupValue !== undefined) {
    const key = text(lookupValue.key, [...at, 'key']);
    const fallback = lookupValue.defaultValue === undefined ? null : text(lookupValue.defaultValue, [...at, 'defaultValue']);
    if (key === null || (lookupValue.defaultValue !== undefined && fallback === null)) return null;
    return (base) => new CacheLookupValue(base, key, lookupValue.variableName, fallback);
  }
  const storeValue = entry['cache-store-value'];
  if (storeValue !== undefined) {
    const key = text(storeValue.key, [...at, 'key']);
    const value = text(storeValue.value, [...at, 'value']);
    if (key === null || value === null) return null;
    return (base) => new CacheStoreValue(base, key, value, storeValue.duration);
  }
  const key = text(entry['cache-remove-value']!.key, [...at, 'key']);
  if (key === null) return null;
  return (base) => new CacheRemoveValue(base, key);
}

class MissingFile extends Error {
  constructor(
    readonly given: string,
    readonly file: string,
    cause: NodeJS.ErrnoException,
  ) {
    const reason = cause.code === 'ENOENT' ? 'no such file' : cause.code === 'EISDIR' ? 'is a directory' : cause.message;
    super(`cannot read module ${given}${given === file ? '' : ` (${file})`}: ${reason}`);
    this.name = 'MissingFile';
  }
}

/** One line per underlying problem. */
function describeFailure(err: unknown): string[] {
  if (err instanceof PolicyConfigError) return err.problems;
  if (err instanceof PolicyLoadError) return err.problems.map((p) => `the module cannot be loaded: ${p}`);
  if (err instanceof PolicySourceError) return err.problems;
  return [(err as Error)?.message ?? String(err)];
}

/** The entry's own grants, over what its built-in policy is given for its configuration. */
function grantsFor(entry: PolicyEntry, builtinNeeds: Map<string, readonly string[]>, baseDir: string): Grants | undefined {
  const own = entry.grants ? resolveGrants(entry.grants, baseDir) : undefined;
  const needs = entry.policy !== undefined ? builtinNeeds.get(entry.policy) : undefined;
  return needs ? { ...grantsFromNeeds(needs, entry.config), ...own } : own;
}

/** Host directories of filesystem grants are relative to the configuration file, like module paths. */
function resolveGrants(grants: Grants, baseDir: string): Grants {
  if (!grants.filesystem || typeof grants.filesystem !== 'object') return grants;
  const filesystem: Record<string, string> = {};
  for (const [guest, hostDir] of Object.entries(grants.filesystem)) {
    filesystem[guest] = typeof hostDir === 'string' && hostDir !== '' && !isAbsolute(hostDir) ? resolve(baseDir, hostDir) : hostDir;
  }
  return { ...grants, filesystem };
}
