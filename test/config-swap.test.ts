// A request that started under one configuration and reaches its backend after a new one was applied: the old
// configuration's backend pools must still take it (found by npm run scenario:fleet: a 502 now and then at a change).
// The gateway is its own process, under the suite's runtime.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startGatewayProcess, tempDir, writeConfig } from './support/gateway-process.ts';

let backend: Server;
let backendPort: number;

before(async () => {
  backend = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.end(`received ${Buffer.concat(chunks).toString('utf8')}`));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendPort = (backend.address() as AddressInfo).port;
});

after(async () => {
  backend.closeAllConnections();
  await new Promise((r) => backend.close(r));
});

/** find-and-replace reads the whole request body before the request goes on, so it waits on the client. */
const config = (version: string) => `
version: 1
apis:
  - id: body
    pathPrefix: /body
    backend: { url: "http://127.0.0.1:${backendPort}" }
    policies:
      inbound:
        - { policy: find-and-replace, config: { from: secret, to: "[removed]" } }
      outbound:
        - { policy: set-header, config: { name: x-config-version, value: ${version} } }
`;

test('a request begun before a configuration change is forwarded after it', async () => {
  const dir = tempDir();
  const file = writeConfig(dir, 'gateway.yaml', config('v1'));
  const g = await startGatewayProcess({ config: file });
  try {
    // The request's head arrives under v1; its body, which the chain waits for, only after v2 is in force.
    let finishBody: () => void = () => undefined;
    const bodyDone = new Promise<void>((r) => (finishBody = r));
    async function* body() {
      yield Buffer.from('a secret ');
      await bodyDone;
      yield Buffer.from('and the rest');
    }
    const answer = request(`${g.url}/body/upload`, { method: 'POST', body: Readable.from(body()) }).then(async (res) => ({
      status: res.statusCode,
      text: await res.body.text(),
    }));
    await new Promise((r) => setTimeout(r, 300));
    const applied = g.logs.filter((l) => l.msg === 'configuration applied').length;
    writeConfig(dir, 'gateway.yaml', config('v2'));
    await g.waitForLog(() => g.logs.filter((l) => l.msg === 'configuration applied').length > applied, 15_000);
    const now = await request(`${g.url}/body/check`, { method: 'POST', body: 'x' });
    await now.body.dump();
    assert.equal(now.headers['x-config-version'], 'v2', 'v2 is in force');
    finishBody();
    const res = await answer;
    assert.equal(res.status, 200, `the request begun under v1 was forwarded: ${res.text}`);
    assert.equal(res.text, 'received a [removed] and the rest');
  } finally {
    await g.stop();
  }
});
