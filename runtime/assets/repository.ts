// The gateway's assets as files of the repository (or of its npm install): runtime/config/default.yaml, policies/,
// package.json. The single-file bundle replaces this module with embedded.ts (scripts/lib/bundle.ts): main.ts imports
// this one, and the bundle is built from main.ts.

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RepositoryPolicySources } from '../config/repository-policies.ts';
import { repoRoot } from './repo-root.ts';
import type { GatewayAssets } from './gateway-assets.ts';

export function gatewayAssets(): GatewayAssets {
  const root = repoRoot();
  const defaultFile = join(root, 'runtime', 'config', 'default.yaml');
  return {
    defaultDocument: { source: defaultFile, baseDir: dirname(defaultFile), read: () => readFile(defaultFile, 'utf8') },
    policies: new RepositoryPolicySources(join(root, 'policies')),
    version: packageVersion(root),
    appInsightsExporter: pathToFileURL(
      // Deno runs the TypeScript sources (this module's URL ends in .ts); Node runs what scripts/build.mjs put in dist/.
      import.meta.url.endsWith('.ts')
        ? join(root, 'runtime', 'telemetry', 'appinsights-exporter.ts')
        : join(root, 'dist', 'runtime', 'telemetry', 'appinsights-exporter.js'),
    ),
  };
}

function packageVersion(root: string): string {
  try {
    return String((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: unknown }).version);
  } catch {
    return 'unknown';
  }
}
