// A folder laid out and updated as the kubelet updates a Secret mounted as a volume: each version of the files in a
// hidden folder of its own, `..data` a symbolic link to the current one, and each file a link through `..data`. An
// update writes a new folder and renames a new `..data` link over the old one, so a reader sees the old files or the
// new ones, never a mix and never a missing file.

import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync, existsSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export class SecretVolume {
  private version = 0;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** The path a container reads `key` at. */
  path(key: string): string {
    return join(this.dir, key);
  }

  /** Puts `files` (key: content) in place as one update. */
  write(files: Record<string, string>): void {
    const name = `..${new Date().toISOString().replace(/[:.]/g, '_')}.${++this.version}`;
    mkdirSync(join(this.dir, name));
    for (const [key, content] of Object.entries(files)) writeFileSync(join(this.dir, name, key), content, { mode: 0o440 });
    const data = join(this.dir, '..data');
    const previous = existsSync(data) ? readlinkSync(data) : null;
    symlinkSync(name, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), data);
    for (const key of Object.keys(files)) {
      if (!existsSync(join(this.dir, key))) symlinkSync(join('..data', key), join(this.dir, key));
    }
    if (previous) rmSync(join(this.dir, previous), { recursive: true, force: true });
  }
}
