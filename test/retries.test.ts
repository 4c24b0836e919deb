// Retries and active health checks, with a real gateway process and real backends on 127.0.0.1: a pool with a dead
// member answers every request; statuses are retried when an API says so, Retry-After is respected, the budget bounds
// what a failing backend gets, a streamed body is never sent twice; health checks take a failing member out and bring
// it back.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { freePort } from './support/ports.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

interface Backend {
  server: Server;
  url: string;
  /** Requests received, by path (the health path included). */
  hits: Map<string, number>;
  /** What /healthz answers. */
  health: number;
}

/** A backend whose answer `answer` chooses from the path and the number of requests that path has had. */
async function startBackend(name: string, answer: (path: string, n: number) => { status: number; headers?: Record<string, string> }): Promise<Backend> {
  const b = { hits: new Map<string, number>(), health: 200 } as Backend;
  b.server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const n = (b.hits.get(path) ?? 0) + 1;
    b.hits.set(path, n);
    req.resume();
    req.on('end', () => {
      if (path === '/healthz') return res.writeHead(b.health).end();
      const { status, headers } = answer(path, n);
      res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(name);
    });
  });
  await new Promise<void>((r) => b.server.listen(0, '127.0.0.1', r));
  b.url = `http://127.0.0.1:${(b.server.address() as AddressInfo).port}`;
  return b;
}

const hits = (b: Backend, path: string) => b.hits.get(path) ?? 0;

let live: Backend;
let flaky: Backend;
let sick: Backend;
let g: GatewayProcess;
let deadUrl: string;

async function metric(line: string): Promise<number> {
  const text = (await send(`http://127.0.0.1:${g.adminPort}`, '/metrics')).body;
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found ? Number(found.slice(line.length + 1)) : 0;
}

before(async () => {
  live = await startBackend('live', () => ({ status: 200 }));
  flaky = await startBackend('flaky', (path, n) => {
    if (path.startsWith('/once')) return { status: n % 2 === 1 ? 503 : 200 };
    if (path === '/later') return { status: 503, headers: { 'retry-after': '5' } };
    return { status: 503 };
  });
  sick = await startBackend('sick', () => ({ status: 200 }));
  // A port nothing listens on: connections are refused.
  deadUrl = `http://127.0.0.1:${await freePort()}`;
  const config = writeConfig(
    tempDir(),
    'gateway.yaml',
    `
version: 1
apis:
  - id: pool
    pathPrefix: /pool
    backend: { pool: { urls: ["${deadUrl}", "${live.url}"] } }
  - id: posts
    pathPrefix: /posts
    backend: { pool: { urls: ["${deadUrl}", "${live.url}"] } }
  - id: flaky
    pathPrefix: /flaky
    backend:
      url: "${flaky.url}"
      retry: { count: 2, on: [503], backoffMs: 5, maxBackoffMs: 1000 }
  - id: budget
    pathPrefix: /budget
    backend:
      url: "${flaky.url}"
      retry: { count: 3, on: [503], backoffMs: 0, budgetPercent: 10, minRetriesPerSecond: 0 }
  - id: checked
    pathPrefix: /checked
    backend:
      pool:
        urls: ["${live.url}", "${sick.url}"]
        healthCheck: { path: /healthz, intervalMs: 100, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 2 }
`,
  );
  g = await startGatewayProcess({ config });
});

after(async () => {
  await g?.stop();
  for (const b of [live, flaky, sick]) {
    b.server.closeAllConnections();
    await new Promise((r) => b.server.close(r));
  }
});

describe('retries', () => {
  test('a pool with one dead member answers every request of a run (0 failed)', async () => {
    const agent = new Agent({ connections: 10 });
    const statuses = new Map<number, number>();
    try {
      // 400 requests, 10 at a time.
      let next = 0;
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          while (next < 400) {
            next++;
            const { status } = await send(g.url, '/pool/item', { dispatcher: agent });
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
          }
        }),
      );
    } finally {
      await agent.close();
    }
    assert.deepEqual([...statuses], [[200, 400]]);
    assert.ok((await metric('gatehouse_backend_retries_total{api="pool",reason="connect-failure"}')) >= 1);
  });

  test('a streamed request body is never sent twice: a POST to the dead member gets 502', async () => {
    // The pool's round robin starts at its first member, the dead one.
    const res = await send(g.url, '/posts/x', { method: 'POST', body: 'once only', headers: { 'content-type': 'text/plain' } });
    assert.equal(res.status, 502);
    assert.equal((await send(g.url, '/posts/x', { method: 'POST', body: 'once only' })).status, 200, 'the next goes to the live one');
  });

  test('an API retrying 503: the client gets the second answer', async () => {
    const res = await send(g.url, '/flaky/once-a');
    assert.equal(res.status, 200);
    assert.equal(hits(flaky, '/once-a'), 2);
    assert.ok((await metric('gatehouse_backend_retries_total{api="flaky",reason="503"}')) >= 1);
  });

  test('Retry-After longer than maxBackoffMs: the 503 is passed on, not retried', async () => {
    const res = await send(g.url, '/flaky/later');
    assert.equal(res.status, 503);
    assert.equal(res.headers['retry-after'], '5');
    assert.equal(hits(flaky, '/later'), 1);
    assert.equal(await metric('gatehouse_backend_retries_skipped_total{api="flaky",why="retry-after"}'), 1);
  });

  test('the retry budget bounds what an always-failing backend gets', async () => {
    for (let i = 0; i < 100; i++) assert.equal((await send(g.url, '/budget/down')).status, 503);
    const got = hits(flaky, '/down');
    // Without a budget: 400 (1 + 3 retries each). With 10%: 100 requests, 10 retries earned, 10 held at the start.
    assert.ok(got >= 110 && got <= 121, `the backend got ${got} requests for 100`);
    assert.ok((await metric('gatehouse_backend_retries_skipped_total{api="budget",why="budget"}')) >= 70);
  });
});

describe('active health checks', () => {
  test('a member failing its checks is taken out of the pool, and brought back when it passes', async () => {
    const inService = `gatehouse_backend_in_service{api="checked",backend="${sick.url}"}`;
    await waitForAsync('the checks to run', async () => hits(sick, '/healthz') >= 2, 5000);
    assert.equal(await metric(inService), 1);
    sick.health = 503;
    await waitForAsync('the sick member to be taken out', async () => (await metric(inService)) === 0, 5000);
    const before = hits(sick, '/r');
    for (let i = 0; i < 20; i++) assert.equal((await send(g.url, '/checked/r')).body, 'live');
    assert.equal(hits(sick, '/r'), before, 'no request reached the member out of the pool');
    assert.ok(g.logs.some((l) => l.msg === 'backend failed its health checks: out of the pool' && l.backend === sick.url && l.check === 'status 503'));
    sick.health = 200;
    await waitForAsync('the member to be brought back', async () => (await metric(inService)) === 1, 5000);
    const bodies = new Set<string>();
    for (let i = 0; i < 4; i++) bodies.add((await send(g.url, '/checked/r')).body);
    assert.deepEqual([...bodies].sort(), ['live', 'sick']);
    assert.ok((await metric(`gatehouse_backend_health_checks_total{api="checked",backend="${sick.url}",result="fail"}`)) >= 2);
  });
});
