// Turns the policy entries of a configuration document into bound policy chains: finds or builds each module,
// loads it into the policy host, binds it with its configuration, grants and limits, and warms its instance; compiles
// the expressions of `when:` conditions, choose branches, set-variable and computed configuration values; and puts
// the host's own steps (steps.ts) around and between the bindings. A fragment is bound once for each place that
// includes it (its policies' counters are that place's). Every entry that cannot be used is reported, with its place in
// the document, in one ConfigError.

import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';

import type { ChainStep, PolicyChain } from '../pipeline/chain.ts';
import { Branches, Guarded, SetVariable, type Branch, type ComputedConfig } from '../pipeline/steps.ts';
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
import { formatPath, problemWhere, type DocPath } from './document-paths.ts';
import { grantsFromNeeds, PolicySourceError, type PolicySources } from './policy-sources.ts';
import type { GatewayDocument, PhaseChains, PolicyEntry } from './types.ts';

export interface BoundChains {
  global: Partial<PolicyChain>;
  /** By API id: the API's own chain, and each operation's (every operation of the document, by id). */
  apis: Map<string, { api: Partial<PolicyChain>; operations: Map<string, Partial<PolicyChain>> }>;
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
  | { kind: 'cache'; id: string; when: Expression | null; failOpen: boolean; make: MakeCacheStep };

const CACHE_STEPS = ['cache-lookup', 'cache-store', 'cache-lookup-value', 'cache-store-value', 'cache-remove-value'] as const;
const HOST_STEPS = ['choose', 'set-variable', 'include-fragment', ...CACHE_STEPS] as const;
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
    const through = includedFrom ? ` (included at ${formatPath(includedFrom)})` : '';
    for (const message of messages) {
      const key = `${where}\u0000${message}`;
      if (reported.has(key)) continue;
      reported.add(key);
      problems.push({ where, message: message + through, path });
    }
  };
  const report = (slot: Slot, messages: string[]) => reportAt(slot.path, messages, slot.includedFrom);

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
        const stray = MODULE_KEYS.filter((k) => entry[k] !== undefined);
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
  const resolved = await Promise.all(
    slots.map(async (slot): Promise<PolicyModule | null> => {
      const { entry } = slot;
      const given = (['policy', 'module', 'source'] as const).filter((k) => entry[k] !== undefined);
      if (given.length !== 1) {
        report(slot, [`needs exactly one of "policy", "module", "source", "choose", "set-variable", "include-fragment" or a cache step (has ${given.join(', ') || 'none'})`]);
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
        return await moduleFor(`source:${source}`, () => sources.buildSource(source));
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
    try {
      const binding = host.bind({
        id: slot.id,
        phase: slot.phase,
        module,
        // A copy: the host fills in the defaults of the policy's schema, and the document stays as it was written.
        config: config === undefined ? undefined : structuredClone(config),
        computedKeys: computed?.keys,
        grants: grantsFor(entry, builtinNeeds, options.baseDir),
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
    const inner =
      p.kind === 'set-variable'
        ? new SetVariable(p.id, p.name, p.value, wallMs, p.failOpen)
        : p.kind === 'cache'
          ? p.make({ id: p.id, failOpen: p.failOpen, wallMs, ...cache })
          : new Branches(p.id, p.branches.map((b): Branch => ({ when: b.when, steps: b.steps.map(step) })), wallMs, p.failOpen);
    return p.when === null ? inner : new Guarded(inner, p.when, null);
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
  return { global: chain(globalPlan), apis };
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
