// The instrumented-module cache (GATEHOUSE_INSTRUMENTED_CACHE_DIR): policy modules as the CPU meter rewrote them
// (policy-host/instrument.ts), kept between starts by the digest of the module they were made from, so that a gateway
// whose modules were all seen before never loads binaryen (0.9 s and 76 MiB) nor spends its time metering them.
//
// Threat model. A metered module is what makes the CPU budget hold: an entry altered by whoever can write the folder
// would be an UNMETERED module running in the gateway, a loop no deadline stops. So the folder is not trusted, and an
// entry is used only when it proves itself:
//   - it is sealed with HMAC-SHA256 under a key only the gateway holds: GATEHOUSE_INSTRUMENTED_CACHE_KEY (32 bytes, inline or
//     a file such as a Kubernetes Secret), else a key made once (crypto random) and kept in `<dir>/cache.key`, mode
//     0600. A key kept in the folder is only as safe as the folder: the gateway then uses the cache only if the folder
//     is a real directory of its own user that no one else can write (not a symbolic link, owner = the process's uid,
//     no group or other write bit) and the key file a regular file of its user that no one else can read or write;
//     otherwise it says why, once, and meters in memory. Someone who runs as the gateway's user can change the
//     gateway itself and is outside this model; so is Windows, where no owner or mode is checked (restrict the folder's
//     ACL, or give the key).
//   - the sealed bytes bind the entry to the sha256 of the module it was made from and to the instrumenter's version
//     (instrumenterVersion(): derived from the metering's own code and binaryen's version, so that any change to the
//     metering invalidates every entry without anyone bumping a number).
//   - an entry is read only if it is a regular file (opened without following a symbolic link, never blocking on a
//     FIFO) of at most MAX_ENTRY_BYTES; entries are written whole (a temporary file, fsync, rename).
// An entry that fails any check (altered, cut short, sealed with another key, made for another module or by another
// instrumenter, unreadable) is refused with a structured warning naming it and why; the module is metered again from
// its own bytes and the entry rewritten. A refused or missing entry only costs time; a read error never stops a load.
//
// A fleet sharing a volume: replicas given the same GATEHOUSE_INSTRUMENTED_CACHE_KEY share the entries. The names of entries
// carry a tag of the key and the instrumenter's version, so replicas with different keys (or versions, during a
// rolling upgrade) keep apart entries instead of overwriting each other's. Without a given key, replicas of one user
// share the key file made by the first; replicas of other users find a key they may not use and run without the cache.
//
// With no usable folder (not writable, not private, the key unreadable) the gateway starts all the same, metering every
// module in memory, and says so once. Entries of older versions stay until removed: deleting the folder is always safe.

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { instrumenterVersion } from '../policy-host/instrument.ts';
import type { InstrumentedModuleStore } from '../policy-host/module.ts';
import type { Logger } from '../telemetry/logger.ts';
import { createOnce, removeStaleTemps, replaceAtomically } from './durable-file.ts';

/** The cache's own key, made when GATEHOUSE_INSTRUMENTED_CACHE_KEY is not given. */
export const KEY_FILE = 'cache.key';
/** Entries: `<sha256 of the original module>.<tag of the key and version>.metered`. */
const ENTRY_SUFFIX = '.metered';
/** Format and purpose of an entry, first in it and sealed with it. */
const MAGIC = Buffer.from('GHMETER1', 'ascii');
const DIGEST_BYTES = 32;
/** magic, the original module's sha256, the instrumenter's version (a sha256). */
const HEADER_BYTES = MAGIC.length + DIGEST_BYTES + DIGEST_BYTES;
const MAC_BYTES = 32;
/** The largest entry read: a file above it is refused without being read (policy modules are at most a few MB). */
export const MAX_ENTRY_BYTES = 64 * 1024 * 1024;

export interface InstrumentedCacheOptions {
  dir: string;
  /** GATEHOUSE_INSTRUMENTED_CACHE_KEY (32 bytes); absent: a key made once and kept in `<dir>/cache.key`. */
  key?: Buffer;
  logger: Logger;
  /** The instrumenter's version; instrumenterVersion() unless a test seals entries of another version. */
  version?: () => string;
}

/** What a load of the cache found, since the process started. */
export interface InstrumentedCacheCounts {
  /** Modules whose entry was found and proved itself. */
  fromCache: number;
  /** Modules metered by binaryen: no entry, a refused entry, or no usable cache. */
  byBinaryen: number;
  /** Entries refused (each also logged). */
  refused: number;
}

interface Opened {
  key: Buffer;
  /** The instrumenter's version, as 32 bytes. */
  version: Buffer;
  /** Ends every entry's name: entries of other keys and versions never share a name with this gateway's. */
  tag: string;
}

/** The sealed entry for `metered`, made from the module whose sha256 is `moduleSha256`. */
export function sealEntry(key: Buffer, version: Buffer, moduleSha256: string, metered: Uint8Array): Buffer {
  const body = Buffer.concat([MAGIC, Buffer.from(moduleSha256, 'hex'), version, metered]);
  return Buffer.concat([body, createHmac('sha256', key).update(body).digest()]);
}

/** The metered module an entry holds, or why it is refused. */
export function openEntry(entry: Uint8Array, key: Buffer, version: Buffer, moduleSha256: string): { metered: Uint8Array } | { problem: string } {
  if (entry.byteLength < HEADER_BYTES + MAC_BYTES || !Buffer.from(entry.subarray(0, MAGIC.length)).equals(MAGIC)) {
    return { problem: 'it is not an entry of this cache (no header)' };
  }
  const body = entry.subarray(0, entry.byteLength - MAC_BYTES);
  const mac = createHmac('sha256', key).update(body).digest();
  if (!timingSafeEqual(mac, entry.subarray(entry.byteLength - MAC_BYTES))) {
    return { problem: "its HMAC does not check out under this gateway's key: it was altered, cut short or sealed with another key" };
  }
  const forModule = Buffer.from(entry.subarray(MAGIC.length, MAGIC.length + DIGEST_BYTES)).toString('hex');
  if (forModule !== moduleSha256) return { problem: `it holds the metered module of another module (sha256:${forModule.slice(0, 12)})` };
  if (!Buffer.from(entry.subarray(MAGIC.length + DIGEST_BYTES, HEADER_BYTES)).equals(version)) {
    return { problem: 'it was made by another version of the instrumenter' };
  }
  // A copy: the module keeps it for as long as it is loaded, not the whole file it was read with.
  return { metered: new Uint8Array(entry.subarray(HEADER_BYTES, entry.byteLength - MAC_BYTES)) };
}

/** Why the user of this process may not keep a key in `info`'s file or folder; null when it may. */
function notPrivate(info: Stats, what: string, forbiddenBits: number, directory: boolean): string | null {
  if (info.isSymbolicLink()) return `${what} is a symbolic link`;
  if (directory ? !info.isDirectory() : !info.isFile()) return `${what} is not a ${directory ? 'directory' : 'regular file'}`;
  const uid = process.getuid?.();
  if (uid === undefined) return null;
  if (info.uid !== uid) return `${what} belongs to uid ${info.uid}, not to this gateway's user (uid ${uid})`;
  if ((info.mode & forbiddenBits) !== 0) {
    return `${what} has mode 0${(info.mode & 0o777).toString(8)}: other users could ${directory ? 'replace the key in it' : 'read or replace the key'}`;
  }
  return null;
}

/** Opens without following a symbolic link and without waiting on a FIFO; O_NOFOLLOW and O_NONBLOCK where defined. */
const READ_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

export class InstrumentedModuleCache implements InstrumentedModuleStore {
  private opened: Promise<Opened | null> | null = null;
  private writeFailed = false;
  private readonly tally: InstrumentedCacheCounts = { fromCache: 0, byBinaryen: 0, refused: 0 };

  constructor(private readonly options: InstrumentedCacheOptions) {}

  get dir(): string {
    return this.options.dir;
  }

  counts(): InstrumentedCacheCounts {
    return { ...this.tally };
  }

  async read(sha256: string): Promise<Uint8Array | null> {
    const at = await this.open();
    if (at === null) {
      this.tally.byBinaryen++;
      return null;
    }
    const entry = this.entryPath(at, sha256);
    const found = await readEntry(entry);
    if (found === null) {
      this.options.logger.debug('policy module not in the instrumented-module cache; metering it', { module: sha256, entry });
      this.tally.byBinaryen++;
      return null;
    }
    const opened = 'problem' in found ? found : openEntry(found.bytes, at.key, at.version, sha256);
    if ('problem' in opened) {
      this.options.logger.warn('instrumented-module cache entry refused; metering the module again from its own bytes', {
        entry,
        module: sha256,
        reason: opened.problem,
      });
      this.tally.refused++;
      this.tally.byBinaryen++;
      return null;
    }
    this.tally.fromCache++;
    return opened.metered;
  }

  async write(sha256: string, metered: Uint8Array): Promise<void> {
    const at = await this.open();
    if (at === null) return;
    const entry = this.entryPath(at, sha256);
    const sealed = sealEntry(at.key, at.version, sha256, metered);
    if (sealed.byteLength > MAX_ENTRY_BYTES) {
      this.options.logger.debug('metered module too large for the instrumented-module cache', { module: sha256, bytes: sealed.byteLength });
      return;
    }
    try {
      await replaceAtomically(entry, sealed);
    } catch (err) {
      // Said once: a folder that cannot be written fails every write the same way.
      const log = this.writeFailed ? this.options.logger.debug : this.options.logger.warn;
      this.writeFailed = true;
      log.call(this.options.logger, 'cannot write the instrumented-module cache; the module is metered again at the next start', {
        entry,
        module: sha256,
        error: (err as Error).message,
      });
    }
  }

  private entryPath(at: Opened, sha256: string): string {
    return join(this.options.dir, `${sha256}.${at.tag}${ENTRY_SUFFIX}`);
  }

  /** The key and version, once; null (said once) when the cache cannot be used. */
  private open(): Promise<Opened | null> {
    this.opened ??= this.openOnce().catch((err: Error) => {
      this.options.logger.warn('instrumented modules are not cached: every start meters every policy module again (binaryen)', {
        dir: this.options.dir,
        reason: err.message,
      });
      return null;
    });
    return this.opened;
  }

  private async openOnce(): Promise<Opened> {
    const { dir } = this.options;
    let versionText: string;
    try {
      versionText = (this.options.version ?? instrumenterVersion)();
    } catch (err) {
      throw new Error(`the instrumenter's own code cannot be read to version the entries: ${(err as Error).message}`);
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const key = this.options.key ?? (await this.keptKey());
    await removeStaleTemps(dir);
    const version = createHash('sha256').update(versionText).digest();
    const tag = createHmac('sha256', key).update('entry name\0').update(version).digest('hex').slice(0, 16);
    return { key, version, tag };
  }

  /** The key kept in the folder, made by the first gateway to need it; refused unless folder and file are private. */
  private async keptKey(): Promise<Buffer> {
    const { dir } = this.options;
    const folderProblem = notPrivate(await lstat(dir), `the folder ${dir}`, 0o022, true);
    if (folderProblem) throw new Error(`${folderProblem}; give GATEHOUSE_INSTRUMENTED_CACHE_KEY or a folder of this user's`);
    const path = join(dir, KEY_FILE);
    try {
      // Of gateways racing to make it, one wins and the others read its key.
      await createOnce(path, randomBytes(32).toString('hex'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const fileProblem = notPrivate(await lstat(path), `the key file ${path}`, 0o077, false);
    if (fileProblem) throw new Error(fileProblem);
    const text = (await readFile(path, 'utf8')).trim();
    if (!/^[0-9a-f]{64}$/.test(text)) throw new Error(`the key file ${path} does not hold a key (64 hex digits); remove it to have a new one made`);
    return Buffer.from(text, 'hex');
  }
}

/** An entry's bytes; null when there is none; a problem when it is not a regular file, too large or unreadable. */
async function readEntry(path: string): Promise<{ bytes: Uint8Array } | { problem: string } | null> {
  let handle;
  try {
    handle = await open(path, READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') return { problem: 'it is a symbolic link' };
    return { problem: `it cannot be read: ${(err as Error).message}` };
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return { problem: 'it is not a regular file' };
    if (info.size > MAX_ENTRY_BYTES) return { problem: `it is ${info.size} bytes long, more than the ${MAX_ENTRY_BYTES} an entry may have` };
    // As many bytes as the size said, not whatever a writer appends meanwhile: one more means the file grew.
    const bytes = Buffer.alloc(info.size + 1);
    let filled = 0;
    for (;;) {
      const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
      if (filled > info.size) return { problem: 'it grew while it was read' };
    }
    return { bytes: bytes.subarray(0, filled) };
  } catch (err) {
    return { problem: `it cannot be read: ${(err as Error).message}` };
  } finally {
    await handle.close();
  }
}
