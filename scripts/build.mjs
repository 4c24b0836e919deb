// Transpiles the TypeScript sources for Node (Deno runs them as they are).
// One esbuild pass over every entry point; shared code goes into chunks, packages stay external.
import { build } from 'esbuild';
import { readdirSync, statSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function entries(dir, match) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (name === 'fixtures' || name === 'node_modules') continue;
      if (statSync(p).isDirectory()) walk(p);
      else if (match(name)) out.push(relative(root, p));
    }
  };
  walk(join(root, dir));
  return out;
}

const entryPoints = [
  'runtime/entry/gateway.ts',
  'runtime/entry/control-plane.ts',
  'runtime/operator-cli/gatehouse.ts',
  'sdk/cli/gatehouse-policy.ts',
  // A worker thread's code: started by URL (runtime/assets/repository.ts), so it must be a file of its own in dist/.
  'runtime/telemetry/appinsights-exporter.ts',
  ...entries('test', (n) => n.endsWith('.test.ts')),
  ...entries('scripts', (n) => n.endsWith('.ts')),
];

rmSync(join(root, 'dist'), { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints,
  outdir: 'dist',
  outbase: '.',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: 'linked',
  chunkNames: 'chunks/[name]-[hash]',
  logLevel: 'warning',
});
