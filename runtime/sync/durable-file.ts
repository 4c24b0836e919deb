// Writes that survive a crash or power cut: the bytes are fsynced before a file is renamed into place, and the folder
// is fsynced after, so that a rename (or a new file) is itself on disk. The backup and the module cache both need this.

import { randomBytes } from 'node:crypto';
import { link, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Creates `path` (readable by its owner only) with `content`, synced; fails (EEXIST) if it exists. */
async function createSynced(path: string, content: string | Uint8Array): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * A name beside `path` for a file being written, no other writer's: replicas of one gateway may share a backup volume,
 * and a process id does not tell them apart (each container's gateway may be process 1).
 */
function tempPath(path: string): string {
  return `${path}.${randomBytes(8).toString('hex')}.tmp`;
}

/**
 * Replaces `path` with `content` in one step: readers see the old file or the new one, never part of either; of
 * writers racing, the last rename wins whole.
 */
export async function replaceAtomically(path: string, content: string | Uint8Array): Promise<void> {
  const temp = tempPath(path);
  await createSynced(temp, content);
  await rename(temp, path);
}

/**
 * Creates `path` with `content` unless it exists (EEXIST then): whoever reads it, a writer that lost the race included,
 * sees the whole content, never an empty or partly written file. The content is written aside and hard-linked in.
 */
export async function createOnce(path: string, content: string | Uint8Array): Promise<void> {
  const temp = tempPath(path);
  await createSynced(temp, content);
  try {
    await link(temp, path);
  } catch (err) {
    // Some shared file systems have no hard links (SMB shares, Azure Files over SMB among them): created in place
    // there, which a reader could catch half written.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw err;
    await createSynced(path, content);
  } finally {
    await rm(temp, { force: true });
  }
}

/** No write takes this long (a module download times out after 10 s): a temporary file this old is abandoned. */
export const STALE_TEMP_MS = 10 * 60_000;

/**
 * Removes the files of `dir` that `wanted` picks by name and that were last written more than `olderThanMs` ago;
 * returns their names. A folder that cannot be read is left as it is; a file that cannot be removed is an error.
 */
export async function removeOldFiles(dir: string, olderThanMs: number, wanted: (name: string) => boolean): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const before = Date.now() - olderThanMs;
  const removed: string[] = [];
  for (const name of names) {
    if (!wanted(name)) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => null);
    if (!info || info.mtimeMs >= before) continue;
    await rm(path, { force: true });
    removed.push(name);
  }
  return removed;
}

/**
 * Removes the temporary files in `dir` of writers that died mid-write (an out-of-memory kill during a module download,
 * say), which nothing else would remove; younger ones may be another replica's write in progress. Best effort: what
 * cannot be removed stays.
 */
export async function removeStaleTemps(dir: string): Promise<void> {
  await removeOldFiles(dir, STALE_TEMP_MS, (name) => /\.[0-9a-f]{16}\.tmp$/.test(name)).catch(() => undefined);
}

/** Makes the renames and new files of `dir` durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
