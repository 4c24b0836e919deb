// Metered modules of the offline test runner, kept between runs next to the build cache, so that `gatehouse-policy
// test` on a policy it has seen loads neither binaryen nor runs the meter (about a second of each run otherwise).
//
// Trust: this folder holds what the build cache beside it holds, on the author's machine; whoever can write it can
// already replace the built module the tests run. An entry is still checked before use, so a file cut short or left
// by another version is not run: its name carries the digest of the module it was made from and the instrumenter's
// version (instrumenterVersion(), which changes with the meter's code and binaryen), and its content the sha256 of
// the metered bytes. The gateway keeps its own cache under a stricter model (runtime/sync/instrumented-cache.ts).
// A store that cannot be read or written only costs time.

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { instrumenterVersion, type InstrumentedModuleStore } from '../../runtime/policy-host/index.ts';

const DIGEST_BYTES = 32;

function sha256(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

export class MeteredModuleStore implements InstrumentedModuleStore {
  constructor(private readonly dir: string) {}

  private file(moduleSha256: string): string | null {
    let version: string;
    try {
      version = instrumenterVersion();
    } catch {
      return null;
    }
    return path.join(this.dir, `${moduleSha256}.${version.slice(0, 16)}.metered`);
  }

  async read(moduleSha256: string): Promise<Uint8Array | null> {
    const file = this.file(moduleSha256);
    if (file === null) return null;
    try {
      const entry = await readFile(file);
      if (entry.byteLength <= DIGEST_BYTES) return null;
      const metered = new Uint8Array(entry.subarray(DIGEST_BYTES));
      return sha256(metered).equals(entry.subarray(0, DIGEST_BYTES)) ? metered : null;
    } catch {
      return null;
    }
  }

  async write(moduleSha256: string, metered: Uint8Array): Promise<void> {
    const file = this.file(moduleSha256);
    if (file === null) return;
    try {
      await mkdir(this.dir, { recursive: true });
      const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      await writeFile(tmp, Buffer.concat([sha256(metered), metered]));
      await rename(tmp, file);
    } catch {
      // Only costs time.
    }
  }
}
