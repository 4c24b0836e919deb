// Watches the folders of the `source:` policies of the configuration in force, for the author's dev loop: when a
// policy's sources change, the gateway serving from a file offers its configuration document again to the one owner
// of the configuration (gateway/config-store.ts), which builds the changed policy (the build is cached by content, so
// only that one compiles) and swaps the whole configuration in, or keeps the one in force when it does not build.
// A rebuilt module is thus a new version of the document; nothing else loads modules behind the owner's back.
//
// Polling, as the configuration file's watcher (watch.ts), for the same reasons: editors that save by renaming, and
// the same behaviour under Node and Deno. Each interval the files of each folder (`.ts` and `.json`, test files
// excepted: they do not change the module; dot folders and node_modules skipped) are listed with their size and
// modification time; only when that changes are their contents hashed, and only a change of content is reported.

import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Poller } from './poller.ts';
import { policyEntries } from './policy-entries.ts';

/** The folders of the `source:` entries of `doc` (a parsed document), resolved against `baseDir`. */
export function sourceFolders(doc: unknown, baseDir: string): string[] {
  const folders = new Set<string>();
  for (const { entry } of policyEntries(doc)) {
    if (typeof entry.source !== 'string') continue;
    const target = resolve(baseDir, entry.source);
    folders.add(target.endsWith('.ts') ? dirname(target) : target);
  }
  return [...folders].sort();
}

const MAX_FILES = 1000;
const sourceFile = (name: string) => (name.endsWith('.ts') || name.endsWith('.json')) && !/\.test\.(ts|json)$/.test(name);

/** The policy files under `dir`, with what stat says of them (at most MAX_FILES). */
async function listFiles(dir: string): Promise<{ file: string; signature: string }[]> {
  const out: { file: string; signature: string }[] = [];
  const walk = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(d)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (out.length >= MAX_FILES || name.startsWith('.') || name === 'node_modules') continue;
      const file = join(d, name);
      try {
        const s = await stat(file);
        if (s.isDirectory()) await walk(file);
        else if (sourceFile(name)) out.push({ file, signature: `${s.size}:${s.mtimeMs}` });
      } catch {
        // gone since listed: the next poll sees it
      }
    }
  };
  await walk(dir);
  return out;
}

export interface SourceWatcherOptions {
  /** Poll interval in ms (the configuration file's). */
  intervalMs: number;
  /** Some folders' sources changed (their names); never called twice at once. */
  onChange: (folders: string[]) => Promise<void>;
}

export class SourceFolderWatcher {
  private readonly poller: Poller;
  /** By folder: the stat signature and the content digest of its files when last looked at. */
  private seen = new Map<string, { signature: string; digest: string }>();
  private folders: string[] = [];

  constructor(private readonly options: SourceWatcherOptions) {
    this.poller = new Poller(() => this.check(), options.intervalMs);
  }

  /**
   * The folders to watch from now on (those of the configuration just put in force). A folder already watched keeps
   * what was seen of it; a new one is taken as it is now, so that what was just built is not reported as a change.
   */
  async watch(folders: string[]): Promise<void> {
    const seen = new Map<string, { signature: string; digest: string }>();
    for (const folder of folders) seen.set(folder, this.seen.get(folder) ?? (await this.look(folder)));
    this.seen = seen;
    this.folders = folders;
  }

  start(): void {
    this.poller.start();
  }

  stop(): Promise<void> {
    return this.poller.stop();
  }

  /** Checks now; resolves when a change found has been handled. */
  poll(): Promise<void> {
    return this.poller.poll();
  }

  private async look(folder: string, previous?: { signature: string; digest: string }): Promise<{ signature: string; digest: string }> {
    const files = await listFiles(folder);
    const signature = files.map((f) => `${f.file}\0${f.signature}`).join('\n');
    if (previous && previous.signature === signature) return previous;
    const hash = createHash('sha256');
    for (const { file } of files) {
      hash.update(`${file}\0`);
      try {
        hash.update(await readFile(file));
      } catch {
        hash.update('\0gone');
      }
    }
    return { signature, digest: hash.digest('hex') };
  }

  private async check(): Promise<void> {
    const changed: string[] = [];
    for (const folder of this.folders) {
      const before = this.seen.get(folder);
      const now = await this.look(folder, before);
      this.seen.set(folder, now);
      if (before && before.digest !== now.digest) changed.push(folder);
    }
    if (changed.length > 0) await this.options.onChange(changed);
  }
}
