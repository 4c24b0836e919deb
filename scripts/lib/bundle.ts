// The single-file gateway: one esbuild pass from runtime/entry/gateway.ts into one ES module that runs with nothing else from
// the repository (`node gatehouse.mjs`, `deno run -A gatehouse.mjs`), and `deno compile` of it into one executable.
//
// What differs from running the repository is only where the gateway's assets come from (runtime/assets/): the bundle
// uses runtime/assets/embedded.ts instead of repository.ts, and this script provides what that module imports,
// `gatehouse:embedded-assets`: the default document, every built-in policy compiled now with the SDK, and the version.
// The SDK and its AssemblyScript compiler are left out, so `source:` policies are refused with a message saying what
// to do instead (runtime/config/embedded-policies.ts).

import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { RepositoryPolicySources } from '../../runtime/config/repository-policies.ts';
import { repoRoot } from '../../runtime/assets/repo-root.ts';

export const DEFAULT_BUNDLE = join('dist', 'bundle', 'gatehouse.mjs');
export const DEFAULT_EXECUTABLE = join('dist', 'bundle', 'gatehouse');

export interface BundleResult {
  /** Absolute. */
  outFile: string;
  bytes: number;
  /** The built-in policies embedded, and their modules' bytes in all. */
  policies: string[];
  policyBytes: number;
  /** Compiling the policies (served from the SDK's cache when unchanged), then esbuild. */
  policyMs: number;
  esbuildMs: number;
}

const EMBEDDED_ASSETS = 'gatehouse:embedded-assets';

/**
 * Packages bundled as CommonJS call `require` for Node's own modules, and some may read files next to themselves
 * through `__dirname`: an ES module has neither, so the bundle makes them, for its own file. Under Deno the same
 * `node:` modules give them.
 */
const BANNER = [
  '// Gatehouse, single-file bundle (scripts/lib/bundle.ts). Run: node gatehouse.mjs [--config <file>]',
  "import { createRequire as __gatehouseCreateRequire } from 'node:module';",
  "import { dirname as __gatehouseDirname } from 'node:path';",
  "import { fileURLToPath as __gatehouseFileURLToPath } from 'node:url';",
  'const require = __gatehouseCreateRequire(import.meta.url);',
  'const __filename = __gatehouseFileURLToPath(import.meta.url);',
  'const __dirname = __gatehouseDirname(__filename);',
].join('\n');

export async function buildBundle(outFile = join(repoRoot(), DEFAULT_BUNDLE)): Promise<BundleResult> {
  const root = repoRoot();
  const policyStart = performance.now();
  const sources = new RepositoryPolicySources(join(root, 'policies'));
  const names = sources.builtinNames();
  const policies: { name: string; needs: string[]; wasmBase64: string }[] = [];
  let policyBytes = 0;
  // One at a time: the SDK compiles one policy at a time anyway, and most come from its cache.
  for (const name of names) {
    // Built as the repository builds them (the SDK, its cache); `needs` is carried as written in policy.json.
    const wasm = await sources.builtin(name)!.wasm();
    const descriptor = JSON.parse(await readFile(join(root, 'policies', name, 'policy.json'), 'utf8')) as { needs?: unknown };
    const needs = Array.isArray(descriptor.needs) ? descriptor.needs.filter((n): n is string => typeof n === 'string') : [];
    policies.push({ name, needs, wasmBase64: Buffer.from(wasm).toString('base64') });
    policyBytes += wasm.byteLength;
  }
  const policyMs = performance.now() - policyStart;

  // The Application Insights exporter runs in a worker thread, which needs a module of its own: bundled apart and
  // carried as a data: URL, so that the bundle stays one file (runtime/assets/embedded.ts).
  const exporter = await build({
    absWorkingDir: root,
    entryPoints: [join(root, 'runtime', 'telemetry', 'appinsights-exporter.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    legalComments: 'none',
    logLevel: 'warning',
  });
  const exporterCode = exporter.outputFiles[0]!.contents;

  const assets = {
    version: (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version,
    appInsightsExporter: `data:text/javascript;base64,${Buffer.from(exporterCode).toString('base64')}`,
    defaultDocument: readFileSync(join(root, 'runtime', 'config', 'default.yaml'), 'utf8'),
    defaultDocumentName: 'runtime/config/default.yaml',
    policies,
  };

  const repositoryAssets = join(root, 'runtime', 'assets', 'repository.ts');
  const embeddedAssets = join(root, 'runtime', 'assets', 'embedded.ts');
  let swapped = 0;
  const embed: Plugin = {
    name: 'gatehouse-embedded-assets',
    setup(b) {
      b.onResolve({ filter: /^gatehouse:embedded-assets$/ }, () => ({ path: EMBEDDED_ASSETS, namespace: 'gatehouse' }));
      b.onLoad({ filter: /.*/, namespace: 'gatehouse' }, () => ({
        contents: `export const assets = ${JSON.stringify(assets)};`,
        loader: 'js',
      }));
      b.onResolve({ filter: /\/assets\/repository\.ts$/ }, (args) => {
        if (resolve(args.resolveDir, args.path) !== repositoryAssets) return undefined;
        swapped++;
        return { path: embeddedAssets };
      });
    },
  };

  mkdirSync(dirname(outFile), { recursive: true });
  const esbuildStart = performance.now();
  const result = await build({
    absWorkingDir: root,
    entryPoints: [join(root, 'runtime', 'entry', 'gateway.ts')],
    outfile: outFile,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // binaryen's module is a string of 15 MB, mostly bytes above 0x7f: written as UTF-8 rather than \u escapes it
    // stays that size instead of doubling.
    charset: 'utf8',
    // Resolve packages as Node does. esbuild otherwise adds the `module` condition, which gives some packages an ES
    // build whose default export lacks what the CommonJS one has (it broke @opentelemetry/api when the bundle carried
    // the Application Insights SDK).
    conditions: [],
    banner: { js: BANNER },
    legalComments: 'none',
    metafile: true,
    plugins: [embed],
    logLevel: 'warning',
  });
  const esbuildMs = performance.now() - esbuildStart;
  if (swapped === 0) {
    throw new Error(`the bundle did not replace runtime/assets/repository.ts with embedded.ts: is it still imported by runtime/entry/gateway.ts?`);
  }
  // The compiler would make the bundle larger and still not work (it reads the SDK's AssemblyScript library from files).
  const compiler = Object.keys(result.metafile.inputs).filter((p) => p.includes('node_modules/assemblyscript/') || p.startsWith('sdk/'));
  if (compiler.length > 0) {
    throw new Error(`the bundle must not include the policy SDK or its compiler, but it imports ${compiler.slice(0, 3).join(', ')}`);
  }
  return {
    outFile,
    bytes: statSync(outFile).size,
    policies: names.slice(),
    policyBytes,
    policyMs,
    esbuildMs,
  };
}

/** The `deno` of this repository's node_modules (the npm package `deno`, pinned in package.json). */
export function denoExecutable(): string {
  return join(repoRoot(), 'node_modules', '.bin', 'deno');
}

/** The version of the npm package `deno` installed here (its runtime binary must be of the same version). */
function denoVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(repoRoot(), 'node_modules', 'deno', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'this version';
  }
}

export class CompileUnavailable extends Error {}

/**
 * `deno compile` of the bundle into one executable. Deno builds it on its runtime binary (`denort`), which it downloads
 * from dl.deno.land on first use unless DENORT_BIN names one: without either, this throws CompileUnavailable.
 */
export async function compileBundle(bundle: string, executable: string): Promise<{ bytes: number; ms: number }> {
  const start = performance.now();
  const args = ['compile', '-A', '--no-check', '--quiet', '--output', executable, bundle];
  const { code, output } = await new Promise<{ code: number | null; output: string }>((done, fail) => {
    const child = spawn(denoExecutable(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, output }));
  });
  if (code !== 0) {
    // Without Deno's colour codes: the message is read by a person, in a log.
    const text = output.replace(/\x1b\[[0-9;]*m/g, '').trim();
    if (/denort|dl\.deno\.land/.test(text)) {
      throw new CompileUnavailable(
        `deno compile needs the runtime binary of Deno ${denoVersion()} (denort), which it downloads from dl.deno.land on first ` +
          `use, and it could not: set DENORT_BIN to a denort binary of that version, or allow the download.\n` +
          `Deno said: ${text}`,
      );
    }
    throw new Error(`deno ${args.join(' ')} failed (exit ${code}):\n${text}`);
  }
  return { bytes: statSync(executable).size, ms: performance.now() - start };
}
