// Checks a gateway's configuration document the way a gateway checks it before use, with the gateway's own code
// (prepareDocument: the schema, what the schema cannot say, named values, then every policy found, loaded and bound
// with its configuration against the policy's schema). The built-in policies are this control plane's, from the same
// sources a gateway of its version has.
//
// Uploaded modules (`module: "sha256:<hex>"`) are written once to a folder of this process and named by file, as a
// gateway names the modules it downloaded: bindChains then reads and loads them as it does in a gateway.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../config/config-error.ts';
import type { DocPath } from '../config/document-paths.ts';
import { prepareDocument } from '../config/prepare-document.ts';
import type { PolicySources } from '../config/policy-sources.ts';
import { GatewayEffects } from '../pipeline/effects.ts';
import { PolicyHost, type BudgetClocks, type PolicyModule } from '../policy-host/index.ts';
import { loadPolicyModule } from '../policy-host/module.ts';
import { MemoryCounterStore } from '../state/counter-store.ts';
import { sha256Hex } from '../policy-host/module.ts';
import { referencedModules, rewriteModuleRefs } from '../gateway-api/module-refs.ts';
import type { Logger } from '../telemetry/logger.ts';

export interface DocumentProblem {
  /** Where in the document checked (null: the document as a whole, or a syntax error). */
  path: DocPath | null;
  /** For a problem in a fragment's entry: the include-fragment entry of the document it was reached through. */
  includedAt: DocPath | null;
  /** What is wrong, without where the fragment was included (the caller renders `includedAt` in its own terms). */
  message: string;
}

export interface DocumentValidatorOptions {
  policies: PolicySources;
  logger: Logger;
  /** An uploaded module's bytes, by sha256; null when there is none. */
  moduleBytes: (sha256: string) => Uint8Array | null;
  /** The clocks of the CPU budget a module's start and descriptor run under (the runtime adapter's). */
  clocks: BudgetClocks;
}

export class DocumentValidator {
  private readonly host: PolicyHost;
  private readonly effects: GatewayEffects;
  private dir: Promise<string> | null = null;
  private readonly written = new Set<string>();

  constructor(private readonly options: DocumentValidatorOptions) {
    // Bindings are made, warmed and dropped; nothing is called, so no effect is ever performed. The host keeps each
    // module compiled once, by content, as a gateway's does.
    this.effects = new GatewayEffects({ counters: new MemoryCounterStore(), logger: options.logger });
    this.host = new PolicyHost({ logger: options.logger, effects: this.effects, clocks: options.clocks });
  }

  /** An uploaded module, loaded and checked as a gateway would load it; throws PolicyLoadError naming its problems. */
  loadModule(bytes: Uint8Array): Promise<PolicyModule> {
    return loadPolicyModule(bytes, this.options.logger, this.options.clocks);
  }

  /**
   * The problems a gateway would find in `doc` (a gateway configuration document as the control plane serves it), each
   * with its path in `doc`; empty when a gateway would apply it. `doc` is not changed.
   */
  async check(doc: unknown, sourceName: string): Promise<DocumentProblem[]> {
    const copy = structuredClone(doc);
    // Read from the database each time, and checked against their names as a gateway checks what it downloads.
    const modules = referencedModules(copy).map((sha) => ({ sha, bytes: this.options.moduleBytes(sha) }));
    const unusable = modules.flatMap(({ sha, bytes }): DocumentProblem[] => {
      if (bytes === null) return [{ path: null, includedAt: null, message: `no uploaded module sha256:${sha}` }];
      if (sha256Hex(bytes) !== sha) {
        return [{ path: null, includedAt: null, message: `module sha256:${sha} in the control plane's database does not match its sha256 (altered at rest): upload it again` }];
      }
      return [];
    });
    if (unusable.length > 0) return unusable;
    const dir = await this.folder();
    for (const { sha, bytes } of modules) await this.write(dir, sha, bytes!);
    rewriteModuleRefs(copy, (sha) => `${sha}.wasm`);
    try {
      await prepareDocument(JSON.stringify(copy), { host: this.host, baseDir: dir, policies: this.options.policies, sourceName });
      return [];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.located.map((p) => ({ path: p.path ?? null, includedAt: p.includedAt ?? null, message: p.message }));
    }
  }

  async close(): Promise<void> {
    await this.effects.close();
    if (this.dir) await rm(await this.dir, { recursive: true, force: true });
  }

  private folder(): Promise<string> {
    this.dir ??= mkdtemp(join(tmpdir(), 'gatehouse-cp-modules-'));
    return this.dir;
  }

  private async write(dir: string, sha: string, bytes: Uint8Array): Promise<void> {
    if (this.written.has(sha)) return;
    await writeFile(join(dir, `${sha}.wasm`), bytes, { mode: 0o600 });
    this.written.add(sha);
  }
}
