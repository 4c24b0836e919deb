// The SDK's helpers for authors (utf8Encode, base64Encode, concatBytes, incremental SHA-256/HMAC, header checks and
// non-trapping setters, the forwarded path and URL, formatNumber, JSON's repeated keys): their offline cases, and the
// forwarded path checked against the gateway's own forwarding rule.

import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { Exchange, headerMap } from '../runtime/policy-host/exchange.ts';
import { basePathOf } from '../runtime/proxy/backends.ts';
import { pathBelowPrefix } from '../runtime/proxy/forward.ts';
import { runPolicyTests } from '../sdk/cli/policy-test.ts';
import { buildFixture, makeExchange, newHost } from './support/policies.ts';

describe('SDK helpers for authors', () => {
  test('the offline cases of the helpers fixture all pass', async () => {
    const run = await runPolicyTests(join(repoRoot(), 'test', 'fixtures', 'policies', 'author-helpers'));
    const failures = run.results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.problems.join('; ')}`);
    assert.deepEqual(failures, []);
    assert.ok(run.passed >= 16, `${run.passed} cases passed`);
  });

  test('Sha256 and HmacSha256 fed in slices agree with node:crypto for every slice size around the block', async () => {
    const { host } = newHost();
    const module = await host.load(await buildFixture('author-helpers'));
    for (const slice of [1, 3, 63, 64, 65, 128, 1000]) {
      const binding = host.bind({ id: `hash/${slice}`, phase: 'inbound', module, config: { slice } });
      for (const length of [0, 55, 56, 64, 119, 120, 129, 4097]) {
        const data = randomBytes(length);
        const exchange = makeExchange({ method: 'POST', body: new Uint8Array(data), headers: { 'x-op': 'hash' } });
        await binding.run('inbound', exchange);
        const at = `${length} bytes in slices of ${slice}`;
        assert.equal(exchange.request.headers.get('x-sha256')?.[0], createHash('sha256').update(data).digest('hex'), at);
        assert.equal(exchange.request.headers.get('x-hmac')?.[0], createHmac('sha256', 'key').update(data).digest('hex'), at);
      }
    }
  });

  test('request.forwardedPath() and forwardedUrl() are what the gateway forwards to', async () => {
    const { host } = newHost();
    const binding = host.bind({ id: 'forward/0', phase: 'inbound', module: await host.load(await buildFixture('author-helpers')) });
    const backends = ['http://b.test', 'http://b.test/', 'http://b.test:8080/v2', 'http://b.test:8080/v2/', 'https://b.test/a/b//'];
    const prefixes = ['', '/', '/shop', '/shop/v1'];
    const paths = ['/', '/shop', '/shop/', '/shop/items/1', '/shopping', '/shop/v1/x', '/other'];
    for (const backendUrl of backends) {
      for (const apiPathPrefix of prefixes) {
        for (const path of paths) {
          const exchange = new Exchange({
            requestId: 'r',
            api: 'a',
            operation: 'o',
            backendUrl,
            apiPathPrefix,
            request: { method: 'GET', path, query: 'q=1', headers: headerMap({ 'x-op': 'forward' }), body: null, clientAddress: '127.0.0.1' },
          });
          await binding.run('inbound', exchange);
          const url = new URL(backendUrl);
          const expected = basePathOf(url) + pathBelowPrefix(path, apiPathPrefix) || '/';
          const at = `${backendUrl} ${apiPathPrefix} ${path}`;
          assert.equal(exchange.request.headers.get('x-forwarded-path')?.[0], expected, at);
          assert.equal(exchange.request.headers.get('x-forwarded-url')?.[0], `${url.origin}${expected}?q=1`, at);
        }
      }
    }
  });
});
