// `gatehouse-policy build` as a library: compiles a policy written in AssemblyScript into a Gatehouse policy module
// (ABI v1, abi/policy-abi.md).
//
// - The AssemblyScript compiler runs in-process (compile.ts).
// - Compiler diagnostics become `PolicyBuildError.diagnostics` (file, line, column, message).
// - The module's imports are checked: only `extism:host/env` and `gatehouse:host/v1`, with hints for the usual
//   AssemblyScript imports (`env.seed`, `env.Date.now`, `env.console.log`, ...) (module-check.ts).
// - Results are cached by content under `<repo>/.cache/policy-builds/` (cache.ts). Whether a build is in the cache is
//   decided from a digest of its sources before anything is parsed: the descriptor's checks (the ABI, ajv) and the
//   compiler (AssemblyScript, binaryen) are loaded only for a build that is not.

import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { DESCRIBE_EXPORT } from '../../abi/constants.ts';
import type { PolicyDescriptor } from '../../abi/index.ts';
import { BUILDER_VERSION, cacheKey, readCache, writeCache } from './cache.ts';
import type { CompileOutput } from './compile.ts';
import { buildError, displayPath, lineColumn, PolicyBuildError, type BuildDiagnostic } from './diagnostics.ts';
import { defaultCacheDir, sdkAssemblyDir } from './locations.ts';
import { sha256 } from './toolchain.ts';

export interface BuildOptions {
  /** The policy's entry file (`policy.ts`), or its folder. */
  source: string;
  /** Where to write the module (and `<outFile>.map` with `sourceMap`); nothing is written without it or `outDir`. */
  outFile?: string;
  /** Instead of `outFile`: write the module into this folder as `<policy name>.wasm`. */
  outDir?: string;
  /** Emit a source map (returned as `sourceMap`, written next to `outFile`). */
  sourceMap?: boolean;
  /** Build cache folder; default `<repo root>/.cache/policy-builds`. */
  cacheDir?: string;
}

export interface BuildResult {
  wasm: Uint8Array;
  outFile: string | null;
  sha256: string;
  descriptor: PolicyDescriptor;
  /** True when the module came from the build cache. */
  cached: boolean;
  /** The source map's JSON text, when asked for. */
  sourceMap: string | null;
  /** Compiler warnings (a build with warnings succeeds). */
  warnings: BuildDiagnostic[];
}

// One compilation at a time per process (the compiler is CPU-bound and large); identical builds share one promise.
let queue: Promise<unknown> = Promise.resolve();
const inflight = new Map<string, Promise<{ out: CompileOutput; descriptor: PolicyDescriptor; cached: boolean }>>();

function resolveSource(source: string): string {
  let file = path.resolve(source);
  if (existsSync(file) && statSync(file).isDirectory()) file = path.join(file, 'policy.ts');
  if (!existsSync(file)) {
    throw new PolicyBuildError(`${displayPath(file)}: no such file (give the policy's .ts file or its folder)`, [
      { file, line: 0, column: 0, message: 'no such file' },
    ]);
  }
  if (!file.endsWith('.ts')) {
    throw new PolicyBuildError(`${displayPath(file)}: a policy source must be an AssemblyScript .ts file`, [
      { file, line: 0, column: 0, message: 'not a .ts file' },
    ]);
  }
  return file;
}

/**
 * Builds the policy whose entry file is `options.source` (or the `policy.ts` of the folder given), reading
 * `policy.json` and `schema.json` next to it. Throws `PolicyBuildError` with `diagnostics` on any problem.
 */
export async function buildPolicy(options: BuildOptions): Promise<BuildResult> {
  const source = resolveSource(options.source);
  const dir = path.dirname(source);
  const sourceMap = options.sourceMap === true;
  const explicitOut = options.outFile ? path.resolve(options.outFile) : null;
  // The module's file name, which a source map refers to: named after the policy with `outDir` (known once the
  // descriptor is, so the key says only that), else the output's or the source's.
  const outNameOf = (descriptor: PolicyDescriptor) =>
    explicitOut ? path.basename(explicitOut) : options.outDir ? `${descriptor.name}.wasm` : `${path.basename(source, '.ts')}.wasm`;
  const mapName = !sourceMap ? null : explicitOut ? path.basename(explicitOut) : options.outDir ? '<policy name>.wasm' : `${path.basename(source, '.ts')}.wasm`;
  const sdkDir = sdkAssemblyDir();
  const cacheDir = path.resolve(options.cacheDir ?? defaultCacheDir());
  const key = await cacheKey(source, sdkDir, mapName);

  let job = inflight.get(key);
  if (!job) {
    job = (async () => {
      const hit = await readCache(cacheDir, key, dir);
      if (hit) {
        return {
          out: { wasm: hit.wasm, sourceMap: hit.sourceMap, warnings: hit.meta.warnings ?? [], deps: hit.meta.deps },
          descriptor: hit.meta.descriptor,
          cached: true,
        };
      }
      const { readDescriptor } = await import('./descriptor.ts');
      const { descriptor } = await readDescriptor(dir);
      const sourceText = await readFile(source, 'utf8');
      const clash = /\b(export\s+function|function|let|const|var)\s+gatehouse_policy_v1\b/.exec(sourceText);
      if (clash) {
        const { line, column } = lineColumn(sourceText, clash.index);
        throw buildError(`${displayPath(source)} defines ${DESCRIBE_EXPORT}`, [
          { file: source, line, column, message: `${DESCRIBE_EXPORT} is generated by the build from policy.json and schema.json; remove it from the policy` },
        ]);
      }
      const { compile } = await import('./compile.ts');
      const run = queue.then(() => compile(source, descriptor, sdkDir, sourceMap, outNameOf(descriptor)));
      queue = run.catch(() => {});
      const out = await run;
      await writeCache(cacheDir, key, out, {
        builder: BUILDER_VERSION,
        sha256: sha256(out.wasm),
        descriptor,
        sourceMap: out.sourceMap !== null,
        warnings: out.warnings,
        deps: out.deps,
      });
      return { out, descriptor, cached: false };
    })();
    inflight.set(key, job);
    job.then(
      () => inflight.delete(key),
      () => inflight.delete(key),
    );
  }
  const { out, descriptor, cached } = await job;
  const outFile = explicitOut ?? (options.outDir ? path.join(path.resolve(options.outDir), outNameOf(descriptor)) : null);
  const wasm = new Uint8Array(out.wasm);
  if (outFile) {
    await mkdir(path.dirname(outFile), { recursive: true });
    await writeFile(outFile, wasm);
    if (out.sourceMap !== null) await writeFile(`${outFile}.map`, out.sourceMap);
  }
  return {
    wasm,
    outFile,
    sha256: sha256(wasm),
    descriptor,
    cached,
    sourceMap: out.sourceMap,
    warnings: out.warnings,
  };
}
