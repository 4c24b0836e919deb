// Writes that survive a crash or power cut: the bytes are fsynced before a file is renamed into place, and the folder
// is fsynced after, so that a rename (or a new file) is itself on disk. The backup and the module cache both need this.

import { randomBytes } from 'node:crypto';
import { open, rename } from 'node:fs/promises';

/** Creates `path` (readable by its owner only) with `content`, synced; with `exclusive`, fails (EEXIST) if it exists. */
export async function createSynced(path: string, content: string | Uint8Array, exclusive = false): Promise<void> {
  const handle = await open(path, exclusive ? 'wx' : 'w', 0o600);
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
  await createSynced(temp, content, true);
  await rename(temp, path);
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
