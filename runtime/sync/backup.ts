// The configuration backup (GATEHOUSE_BACKUP_DIR): every document applied from the control plane is written to disk,
// atomically (a temporary file, fsync, rename), and the one before it is kept. A gateway that restarts while the control
// plane is unreachable starts from the newest backup that checks out (its digest matches), else from the previous one.

import { createHash } from 'node:crypto';
import { open, readFile, rename, mkdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface BackupEntry {
  /** The configuration document, as the control plane sent it. */
  text: string;
  etag: string | null;
  revision: string | null;
  savedAt: string;
}

interface BackupFile extends BackupEntry {
  /** sha256 of `text`: a file cut short or altered does not pass for a configuration. */
  sha256: string;
}

const CURRENT = 'config.json';
const PREVIOUS = 'config.previous.json';

const digest = (text: string) => createHash('sha256').update(text).digest('hex');

export class ConfigBackup {
  constructor(readonly dir: string) {}

  /** Writes `entry` as the current backup; the current one becomes the previous. */
  async save(entry: Omit<BackupEntry, 'savedAt'>): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const file: BackupFile = { ...entry, savedAt: new Date().toISOString(), sha256: digest(entry.text) };
    const temp = join(this.dir, `${CURRENT}.${process.pid}.tmp`);
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(JSON.stringify(file));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(join(this.dir, CURRENT), join(this.dir, PREVIOUS)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await rename(temp, join(this.dir, CURRENT));
    // The renames are durable once the directory itself is synced.
    const dir = await open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /**
   * The backups that check out, newest first, with what was wrong with the others: `use` tries them in order until
   * one applies.
   */
  async entries(): Promise<{ usable: (BackupEntry & { file: string })[]; problems: string[] }> {
    const usable: (BackupEntry & { file: string })[] = [];
    const problems: string[] = [];
    for (const name of [CURRENT, PREVIOUS]) {
      const path = join(this.dir, name);
      let raw: string;
      try {
        raw = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(`${path}: ${(err as Error).message}`);
        continue;
      }
      let file: Partial<BackupFile>;
      try {
        file = JSON.parse(raw) as Partial<BackupFile>;
      } catch {
        problems.push(`${path}: not valid JSON (cut short or altered)`);
        continue;
      }
      if (typeof file.text !== 'string' || file.sha256 !== digest(file.text)) {
        problems.push(`${path}: its digest does not match its content (cut short or altered)`);
        continue;
      }
      usable.push({ file: path, text: file.text, etag: file.etag ?? null, revision: file.revision ?? null, savedAt: String(file.savedAt) });
    }
    return { usable, problems };
  }
}
