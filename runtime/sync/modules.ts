// Policy modules named by the control plane (`module: "sha256:<hex>"`): fetched once, checked, kept on disk. A module
// is loaded only if its bytes hash to the name and the control plane's signature over that digest checks out with the
// trusted key (GATEHOUSE_TRUSTED_KEY); modules read back from disk (a restart, a start from the backup) are checked
// the same way. A module that fails is refused with the document that names it (ConfigSync then serves what it has).

import { mkdtemp, mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { ConfigError } from '../config/config-error.ts';
import { modulePath, SIGNATURE_HEADER } from '../gateway-api/endpoints.ts';
import { referencedModules, rewriteModuleRefs } from '../gateway-api/module-refs.ts';
import { signatureValid } from '../gateway-api/module-signatures.ts';
import { sha256Hex } from '../policy-host/module.ts';
import type { ControlPlaneClient } from './control-plane-client.ts';
import { removeOldFiles, removeStaleTemps, replaceAtomically, STALE_TEMP_MS, syncDir } from './durable-file.ts';

export interface ModuleCacheOptions {
  /** The control plane's gateway API, with this gateway's token. */
  client: ControlPlaneClient;
  /** Where modules are kept (in the backup directory, so that a start from the backup has them); default a temp dir. */
  dir?: string;
  trustedKey?: KeyObject;
}

/** A cached module's files: `<sha256>.wasm` and `<sha256>.sig`. */
const MODULE_FILE = /^([0-9a-f]{64})\.(wasm|sig)$/;

/** A module download may take longer than a poll: modules are up to a few MB. */
const DOWNLOAD_TIMEOUT_MS = 10_000;

export class ModuleCache {
  private dir: string | null;
  private swept = false;

  constructor(private readonly options: ModuleCacheOptions) {
    this.dir = options.dir ?? null;
  }

  /** The document with its module names turned into files of the cache, and the folder they are relative to. */
  async prepare(text: string): Promise<{ text: string; dir: string }> {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      return { text, dir: process.cwd() }; // the loader reports what is wrong with it
    }
    const wanted = referencedModules(doc);
    if (wanted.length === 0) return { text, dir: process.cwd() };
    if (!this.options.trustedKey) {
      throw refused(wanted[0]!, 'the document names uploaded modules, and GATEHOUSE_TRUSTED_KEY (the control plane\'s public key) is not set');
    }
    const dir = await this.folder();
    await Promise.all(wanted.map((sha) => this.ensure(sha, dir)));
    rewriteModuleRefs(doc, (sha) => `${sha}.wasm`);
    return { text: JSON.stringify(doc), dir };
  }

  private async folder(): Promise<string> {
    if (this.dir === null) this.dir = await mkdtemp(join(tmpdir(), 'gatehouse-modules-'));
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    if (!this.swept) {
      this.swept = true;
      await removeStaleTemps(this.dir);
    }
    return this.dir;
  }

  /**
   * Removes the modules that none of `documents` names (the configuration in force and those in the backup), once
   * their files are STALE_TEMP_MS old: a younger one may be a replica's download for a revision this gateway has not
   * seen yet. Without this the folder grows with every module ever uploaded. Returns the digests removed.
   */
  async prune(documents: string[], olderThanMs = STALE_TEMP_MS): Promise<string[]> {
    if (this.dir === null) return [];
    const keep = new Set<string>();
    for (const text of documents) {
      try {
        for (const sha of referencedModules(JSON.parse(text))) keep.add(sha);
      } catch {
        return []; // a document that cannot be read might name anything: keep everything
      }
    }
    const files = await removeOldFiles(this.dir, olderThanMs, (name) => {
      const m = MODULE_FILE.exec(name);
      return m !== null && !keep.has(m[1]!);
    });
    return [...new Set(files.map((name) => MODULE_FILE.exec(name)![1]!))];
  }

  /** The module is on disk and checks out, or is fetched, checked and written; throws a ConfigError otherwise. */
  private async ensure(sha: string, dir: string): Promise<void> {
    const wasm = join(dir, `${sha}.wasm`);
    const sig = join(dir, `${sha}.sig`);
    const kept = await Promise.all([readFile(wasm).catch(() => null), readFile(sig, 'utf8').catch(() => null)]);
    if (kept[0] && kept[1] !== null && this.problem(sha, kept[0], kept[1].trim()) === null) return;
    // A file that does not check out is replaced below by a rename, not removed first: a replica sharing the folder
    // may be between writing the signature and the module, and removing them would fail its load.
    const { bytes, signature } = await this.fetch(sha);
    const problem = this.problem(sha, bytes, signature);
    if (problem) throw refused(sha, problem);
    await replaceAtomically(sig, Buffer.from(signature));
    await replaceAtomically(wasm, bytes);
    // Durable before the document that needs it is applied and backed up: a start from the backup finds it.
    await syncDir(dir);
  }

  private problem(sha: string, bytes: Uint8Array, signature: string): string | null {
    if (sha256Hex(bytes) !== sha) return 'its content does not match its sha256 (altered or cut short)';
    if (!signatureValid(this.options.trustedKey!, sha, signature)) return 'its signature is not the trusted control plane\'s';
    return null;
  }

  private async fetch(sha: string): Promise<{ bytes: Uint8Array; signature: string }> {
    let reply;
    try {
      reply = await this.options.client.call('GET', modulePath(sha), { timeoutMs: DOWNLOAD_TIMEOUT_MS });
    } catch (err) {
      throw new ModuleDownloadError(sha, `could not be downloaded: ${(err as Error).message}`);
    }
    // No answer, a 5xx or a refused token say nothing of the document: it is tried again. Any other status (404: the
    // control plane does not have the module) is the document's problem.
    if (reply.status >= 500 || reply.status === 401 || reply.status === 403) {
      throw new ModuleDownloadError(sha, `could not be downloaded: the control plane answered ${reply.status}`);
    }
    if (reply.status !== 200) throw refused(sha, `could not be downloaded: the control plane answered ${reply.status}`);
    const signature = reply.headers[SIGNATURE_HEADER];
    return { bytes: reply.body, signature: typeof signature === 'string' ? signature : '' };
  }
}

/** A module the control plane could not hand over now: the document naming it is not at fault, and is tried again. */
export class ModuleDownloadError extends ConfigError {
  constructor(sha: string, message: string) {
    super([{ where: `module sha256:${sha}`, message }], 'a policy module from the control plane could not be downloaded');
    this.name = 'ModuleDownloadError';
  }
}

function refused(sha: string, message: string): ConfigError {
  return new ConfigError([{ where: `module sha256:${sha}`, message }], 'a policy module from the control plane was refused');
}
