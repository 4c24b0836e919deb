// npm run bundle: the single-file gateway, dist/bundle/gatehouse.mjs (scripts/lib/bundle.ts says what is in it).
// npm run compile: the same, then `deno compile` of it into dist/bundle/gatehouse, one executable.
//
//   node dist/scripts/bundle.js [--out <file.mjs>] [--compile [--executable <file>]]

import { join, relative, resolve } from 'node:path';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { buildBundle, compileBundle, CompileUnavailable, DEFAULT_BUNDLE, DEFAULT_EXECUTABLE } from './lib/bundle.ts';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const outFile = resolve(option('--out') ?? join(repoRoot(), DEFAULT_BUNDLE));

try {
  const bundle = await buildBundle(outFile);
  const shown = relative(process.cwd(), bundle.outFile);
  process.stdout.write(
    `bundle: ${shown} ${mb(bundle.bytes)}, ${bundle.policies.length} built-in policies (${mb(bundle.policyBytes)}) ` +
      `compiled in ${Math.round(bundle.policyMs)} ms, esbuild ${Math.round(bundle.esbuildMs)} ms\n` +
      `run it: node ${shown} (or deno run -A ${shown})\n`,
  );
  if (process.argv.includes('--compile')) {
    const executable = resolve(option('--executable') ?? join(repoRoot(), DEFAULT_EXECUTABLE));
    const compiled = await compileBundle(outFile, executable);
    process.stdout.write(`executable: ${executable} ${mb(compiled.bytes)}, deno compile ${Math.round(compiled.ms)} ms\n`);
  }
} catch (err) {
  process.stderr.write(`${err instanceof CompileUnavailable ? '' : 'bundle failed: '}${(err as Error).message}\n`);
  process.exit(1);
}
