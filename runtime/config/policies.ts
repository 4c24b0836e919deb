// Turns the policy entries of a configuration document into bound policy chains: finds or builds each module,
// loads it into the policy host, binds it with its configuration, grants and limits, and warms its instance.
// Every entry that cannot be used is reported, with its place in the document, in one ConfigError.

import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';

import type { PolicyChain } from '../pipeline/chain.ts';
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
}

interface Slot {
  /** Place in the document, e.g. ['apis', 0, 'policies', 'inbound', 1]. */
  path: DocPath;
  /** Binding id: `global/inbound/0`, `api:echo/outbound/1`, `api:echo/op:getOrder/inbound/0`. */
  id: string;
  phase: Phase;
  entry: PolicyEntry;
  /** Where the binding goes. */
  target: Record<Phase, PolicyBinding[]>;
}

const emptyChain = (): Record<Phase, PolicyBinding[]> => ({ inbound: [], backend: [], outbound: [], 'on-error': [] });

/**
 * Binds every policy of `doc`. Modules are built or read once each, in parallel, and loaded once per content;
 * bindings are created only when every entry is good, then warmed. Throws ConfigError listing every bad entry.
 */
export async function bindChains(doc: GatewayDocument, options: BindChainsOptions): Promise<BoundChains> {
  const { host, sourceName } = options;
  const slots: Slot[] = [];
  const collect = (chains: PhaseChains | undefined, path: DocPath, idPrefix: string, target: Record<Phase, PolicyBinding[]>) => {
    for (const phase of PHASES) {
      (chains?.[phase] ?? []).forEach((entry, i) => {
        slots.push({ path: [...path, 'policies', phase, i], id: `${idPrefix}/${phase}/${i}`, phase, entry, target });
      });
    }
  };

  const global = emptyChain();
  collect(doc.policies, [], 'global', global);
  const apis: BoundChains['apis'] = new Map();
  doc.apis.forEach((api, a) => {
    const apiChain = emptyChain();
    collect(api.policies, ['apis', a], `api:${api.id}`, apiChain);
    const operations = new Map<string, Partial<PolicyChain>>();
    (api.operations ?? []).forEach((op, o) => {
      const opChain = emptyChain();
      collect(op.policies, ['apis', a, 'operations', o], `api:${api.id}/op:${op.id}`, opChain);
      operations.set(op.id, opChain);
    });
    apis.set(api.id, { api: apiChain, operations });
  });

  const problems: LocatedProblem[] = [];
  const report = (slot: Slot, messages: string[]) => {
    const where = problemWhere(doc, sourceName, slot.path);
    for (const message of messages) problems.push({ where, message, path: slot.path });
  };
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
        report(slot, [`needs exactly one of "policy", "module" or "source" (has ${given.join(', ') || 'none'})`]);
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
    try {
      const binding = host.bind({
        id: slot.id,
        phase: slot.phase,
        module,
        // A copy: the host fills in the defaults of the policy's schema, and the document stays as it was written.
        config: entry.config === undefined ? undefined : structuredClone(entry.config),
        grants: grantsFor(entry, builtinNeeds, options.baseDir),
        limits: entry.limits,
        circuitBreaker: entry.circuitBreaker,
        failOpen: entry.failOpen,
      });
      slot.target[slot.phase].push(binding);
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
  return { global, apis };
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
