// The gateway's assets inside the single-file bundle: scripts/lib/bundle.ts builds the bundle from main.ts with this
// module in place of repository.ts, and provides `gatehouse:embedded-assets` (the default document, the built-in
// policies compiled at bundle time, the version). Not used outside the bundle.

import { Buffer } from 'node:buffer';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assets } from 'gatehouse:embedded-assets';
import { EmbeddedPolicySources } from '../config/embedded-policies.ts';
import type { GatewayAssets } from './gateway-assets.ts';

export function gatewayAssets(): GatewayAssets {
  const program = `the single-file bundle ${basename(fileURLToPath(import.meta.url))} (${assets.version})`;
  return {
    defaultDocument: {
      source: `the embedded default configuration (${assets.defaultDocumentName})`,
      baseDir: process.cwd(),
      read: () => Promise.resolve(assets.defaultDocument),
    },
    policies: new EmbeddedPolicySources(
      assets.policies.map((p) => ({ name: p.name, needs: p.needs, wasm: new Uint8Array(Buffer.from(p.wasmBase64, 'base64')) })),
      program,
    ),
    version: assets.version,
    // The exporter thread's code, bundled on its own when the bundle was made: the bundle stays one file.
    appInsightsExporter: new URL(assets.appInsightsExporter),
  };
}
