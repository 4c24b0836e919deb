// Gatehouse writes Application Insights envelopes itself (runtime/telemetry/appinsights-envelopes.ts), in the shapes the
// `applicationinsights` SDK sends. This holds the two side by side: the real SDK (3.x, in a process of its own under
// Deno, test/support/appinsights-sdk-reference.ts) and the gateway's exporter, both sending to local HTTPS ingestion
// endpoints, compared envelope type by envelope type: the same members, the same tags, values of the same kinds.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gatewayAssets } from '../runtime/assets/repository.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { parseConnectionString, startApplicationInsights } from '../runtime/telemetry/appinsights.ts';
import { Logger } from '../runtime/telemetry/logger.ts';
import { denoExecutable } from '../scripts/lib/bundle.ts';
import { connectionString, startIngestionEndpoint, type Envelope } from './support/ingestion.ts';
import { waitFor } from './support/wait.ts';

const TYPES = ['Request', 'RemoteDependency', 'Exception', 'Metric'];

/** An envelope's shape: each member's path and the kind of its value, and the tag names. */
function shape(e: Envelope): string[] {
  const paths: string[] = [];
  const walk = (value: unknown, path: string) => {
    if (Array.isArray(value)) value.forEach((v) => walk(v, `${path}[]`));
    else if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) walk(v, path === '' ? k : `${path}.${k}`);
      if (Object.keys(value).length === 0) paths.push(`${path}: {}`);
    } else paths.push(`${path}: ${typeof value}`);
  };
  walk(e, '');
  return [...new Set(paths)].sort();
}

/** Members whose values are the program's own: the SDK adds OpenTelemetry's attributes as properties. */
const OWN = /^(data\.baseData\.properties\.(http\.|_MS\.)|tags\.ai\.internal\.sdkVersion)/;

test('the envelopes the exporter thread writes have the shapes of the SDK\'s own', { timeout: 120_000 }, async () => {
  const sdkEndpoint = await startIngestionEndpoint();
  const ourEndpoint = await startIngestionEndpoint();
  try {
    const reference = spawn(denoExecutable(), ['run', '-A', join(repoRoot(), 'test', 'support', 'appinsights-sdk-reference.ts'), connectionString(sdkEndpoint.port)], {
      cwd: repoRoot(),
      env: { ...process.env, NODE_EXTRA_CA_CERTS: sdkEndpoint.certFile },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    reference.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => reference.on('close', resolve));
    assert.equal(code, 0, `the SDK's reference run failed: ${stderr}`);

    const parsed = parseConnectionString(connectionString(ourEndpoint.port));
    assert.ok(parsed.ok);
    const assets = gatewayAssets();
    const telemetry = await startApplicationInsights(
      { ...parsed.value, samplingPercentage: 100, ca: readFileSync(ourEndpoint.certFile, 'utf8') },
      new Logger(() => {}),
      { script: assets.appInsightsExporter, version: assets.version },
    );
    const failure = { source: 'backend' as const, reason: 'unreachable', message: 'backend unreachable (ECONNREFUSED)', policy: null, failedOpen: false };
    const now = Date.now();
    telemetry.request({
      requestId: 'ours-1',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      parentSpanId: 'b7ad6b7169203331',
      method: 'GET',
      route: '/shop/orders/{id}',
      url: 'http://gateway.test/shop/orders/1',
      api: 'shop',
      operation: 'get-order',
      status: 502,
      startTime: now,
      durationMs: 12.5,
      backend: { method: 'GET', origin: 'http://orders.test:8080', path: '/v1/orders/1', pathTemplate: '/v1/orders/{id}', startTime: now, durationMs: 10.25, status: null, failure },
      failures: [failure],
    });
    telemetry.metric({ name: 'orders_seen', value: 3, dimensions: [['region', 'eu-west']] });
    await telemetry.close(10_000);
    await waitFor('our envelopes', () => ourEndpoint.envelopes.length === 4, 5000);

    for (const type of TYPES) {
      const sdk = sdkEndpoint.envelopes.find((e) => e.name === `Microsoft.ApplicationInsights.${type}`);
      const ours = ourEndpoint.envelopes.find((e) => e.name === `Microsoft.ApplicationInsights.${type}`);
      assert.ok(sdk, `the SDK sent a ${type}`);
      assert.ok(ours, `the exporter sent a ${type}`);
      const sdkShape = shape(sdk).filter((p) => !OWN.test(p));
      const ourShape = shape(ours).filter((p) => !OWN.test(p));
      // The SDK's backend call and failure were not inside its request's context here: ours carry the parent tags more.
      const ourExtra = ourShape.filter((p) => !sdkShape.includes(p));
      assert.deepEqual(sdkShape.filter((p) => !ourShape.includes(p)), [], `${type}: what the SDK sends and the exporter does not`);
      assert.ok(
        ourExtra.every((p) => /^tags\.ai\.operation\.(parentId|name|id): string$/.test(p)),
        `${type}: what the exporter sends and the SDK does not: ${ourExtra.join(', ')}`,
      );
    }
  } finally {
    await sdkEndpoint.close();
    await ourEndpoint.close();
  }
});
