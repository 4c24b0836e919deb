// The build cache: modules by the hash of everything that goes into them (the builder, the compiler and its flags, the
// SDK's sources, the policy folder's files), checked against the other files the compiler read before use.

import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { PolicyDescriptor } from '../../abi/index.ts';
import type { CompileOutput } from './compile.ts';
import type { BuildDiagnostic } from './diagnostics.ts';
import { ASC_FLAGS, compilerVersion, sha256 } from './toolchain.ts';

/**
 * Bumped whenever the generated code, the build flags or the checks a module must pass change, so that older cache
 * entries are not used (3: the ABI's module check, abi/module-check.ts; 4: the key is a digest of the sources, and the
 * descriptor comes from the entry). A change to how policy.json and schema.json become the descriptor bumps it too.
 */
export const BUILDER_VERSION = 4;

export interface CacheMeta {
  builder: number;
  sha256: string;
  descriptor: PolicyDescriptor;
  sourceMap: boolean;
  warnings: BuildDiagnostic[];
  deps: { path: string; sha256: string | null }[];
}

function listSources(dir: string, recursive: boolean, filter: (name: string) => boolean): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith('.') || name === 'node_modules') continue;
      const p = path.join(d, name);
      let isDir = false;
      try {
        isDir = statSync(p).isDirectory();
      } catch {
        continue;
      }
      if (isDir) {
        if (recursive) walk(p);
      } else if (filter(name)) {
        out.push(p);
      }
    }
  };
  walk(dir);
  return out;
}

/**
 * The digest of everything a build is made from: the builder, the compiler's version and flags, the SDK's sources, and
 * the policy folder's own files and name (policy.json, schema.json and the folder's name make the descriptor). Nothing
 * is parsed and the compiler is not loaded, so a build in the cache costs reading and hashing files.
 * `mapName`: the module's file name a source map refers to (null without a source map).
 */
export async function cacheKey(source: string, sdkDir: string, mapName: string | null): Promise<string> {
  const hash = createHash('sha256');
  const add = (label: string, value: string | Uint8Array) => {
    hash.update(`${label}\0${typeof value === 'string' ? value.length : value.byteLength}\0`);
    hash.update(value);
  };
  add('builder', String(BUILDER_VERSION));
  add('asc', compilerVersion());
  add('flags', JSON.stringify(ASC_FLAGS));
  add('options', JSON.stringify({ sourceMap: mapName !== null, outName: mapName }));
  add('source', path.basename(source));
  add('folder', path.basename(path.dirname(source)));
  for (const file of listSources(sdkDir, true, (n) => n.endsWith('.ts'))) {
    add(`sdk:${path.relative(sdkDir, file)}`, await readFile(file));
  }
  // The policy folder's own files (test files do not change the module).
  const dir = path.dirname(source);
  const own = (n: string) => (n.endsWith('.ts') || n.endsWith('.json')) && !/\.test\.(ts|json)$/.test(n);
  for (const file of listSources(dir, false, own)) {
    add(`policy:${path.basename(file)}`, await readFile(file));
  }
  return hash.digest('hex');
}

async function depsUnchanged(dir: string, deps: CacheMeta['deps']): Promise<boolean> {
  for (const dep of deps) {
    let text: string | null;
    try {
      text = await readFile(path.resolve(dir, dep.path), 'utf8');
    } catch {
      text = null;
    }
    if ((text === null ? null : sha256(text)) !== dep.sha256) return false;
  }
  return true;
}

async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

export async function readCache(
  cacheDir: string,
  key: string,
  dir: string,
): Promise<{ wasm: Uint8Array; meta: CacheMeta; sourceMap: string | null } | null> {
  try {
    const meta = JSON.parse(await readFile(path.join(cacheDir, `${key}.json`), 'utf8')) as CacheMeta;
    if (meta.builder !== BUILDER_VERSION) return null;
    const wasm = new Uint8Array(await readFile(path.join(cacheDir, `${key}.wasm`)));
    if (sha256(wasm) !== meta.sha256) return null;
    if (!(await depsUnchanged(dir, meta.deps))) return null;
    const sourceMap = meta.sourceMap ? await readFile(path.join(cacheDir, `${key}.wasm.map`), 'utf8') : null;
    return { wasm, meta, sourceMap };
  } catch {
    return null;
  }
}

export async function writeCache(cacheDir: string, key: string, out: CompileOutput, meta: CacheMeta): Promise<void> {
  try {
    await mkdir(cacheDir, { recursive: true });
    if (out.sourceMap !== null) await writeAtomic(path.join(cacheDir, `${key}.wasm.map`), out.sourceMap);
    await writeAtomic(path.join(cacheDir, `${key}.wasm`), out.wasm);
    await writeAtomic(path.join(cacheDir, `${key}.json`), JSON.stringify(meta, null, 2));
  } catch {
    // A cache that cannot be written only costs time.
  }
}
