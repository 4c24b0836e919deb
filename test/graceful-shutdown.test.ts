// Graceful shutdown as an orchestrator needs it: on SIGTERM the gateway turns not-ready at once but goes on serving for
// GATEHOUSE_SHUTDOWN_DELAY_MS (load balancers are still sending it requests until they see the probe), then stops
// accepting, lets in-flight requests finish and exits 0. The gateway is its own process, under the suite's runtime.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { isDeno } from '../runtime/adapters/index.ts';
import { startGatewayProcess, tempDir, writeConfig } from './support/gateway-process.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

const DELAY_MS = 1500;
/** Longer than the delay by a margin, so that the request is still in flight when the listener closes. */
const SLOW_MS = 3200;
const PROBE = '/status-0123456789abcdef';
const SHUTDOWN_TIMEOUT_MS = 1000;
/**
 * How long after the shutdown timeout the process may take to exit: closing its listeners and pools, flushing
 * telemetry (TELEMETRY_FLUSH_MIN_MS at least) and writing its last log lines, on a 2-core machine shared with other
 * tests. Timing-based by nature (the promise is a bound in time); 4 s is far below what a timeout multiplied by 10 or
 * 1000 would take, so the test still tells the two apart.
 */
const EXIT_MARGIN_MS = 4000;

let backend: Server;
let backendPort: number;
/** Requests the backend has received, by path: lets the test know the slow one reached it before the signal. */
const received: string[] = [];

before(async () => {
  backend = createServer((req, res) => {
    received.push(req.url ?? '');
    req.resume();
    req.on('end', () => {
      if (req.url === '/slow') setTimeout(() => res.end('slow done'), SLOW_MS);
      // Answered only when the test ends (closeAllConnections): outlasts any shutdown timeout.
      else if (req.url !== '/hang') res.end('ok');
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendPort = (backend.address() as AddressInfo).port;
});

after(async () => {
  backend.closeAllConnections();
  await new Promise((r) => backend.close(r));
});

describe('graceful shutdown', () => {
  test('after SIGTERM: 503 on the probes, requests served through the delay, in-flight ones finished, exit 0', async () => {
    const config = writeConfig(
      tempDir(),
      'gateway.yaml',
      `version: 1\napis:\n  - id: shop\n    pathPrefix: /\n    backend: { url: "http://127.0.0.1:${backendPort}" }\n`,
    );
    const g = await startGatewayProcess({ config, env: { GATEHOUSE_SHUTDOWN_DELAY_MS: String(DELAY_MS) } });
    // A client that keeps its connections open, as a load balancer's upstream pool does.
    const keepAlive = new Agent({ connections: 4, keepAliveTimeout: 30_000 });
    const fresh = () => new Agent({ pipelining: 0 });
    try {
      assert.equal((await send(g.url, PROBE)).status, 200);
      assert.equal((await send(g.url, '/warm', { dispatcher: keepAlive })).status, 200);

      const slow = send(g.url, '/slow', { dispatcher: keepAlive });
      await waitForAsync('the slow request to reach the backend', async () => received.includes('/slow'), 5000);
      const signalled = Date.now();
      g.child.kill('SIGTERM');

      await waitForAsync('the probe to answer 503', async () => (await send(g.url, PROBE)).status === 503, 1000);
      const probe = await send(g.url, PROBE);
      assert.equal(probe.body, 'shutting down');
      const readyz = await send(`http://127.0.0.1:${g.adminPort}`, '/readyz');
      assert.equal(readyz.status, 503);
      assert.deepEqual(JSON.parse(readyz.body), { status: 'not ready', reason: 'shutting down' });

      // Through most of the delay, requests on kept connections and on new ones are served; each answer closes its
      // connection so that the client's next request opens one (which a load balancer would send elsewhere).
      let served = 0;
      while (Date.now() - signalled < DELAY_MS - 400) {
        for (const dispatcher of [keepAlive, fresh()]) {
          const res = await request(`${g.url}/during-delay`, { dispatcher });
          assert.equal(res.statusCode, 200, 'a request during the delay is served');
          assert.equal(await res.body.text(), 'ok');
          assert.equal(res.headers.connection, 'close');
          served++;
          if (dispatcher !== keepAlive) await dispatcher.close();
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(served >= 4, `requests were served during the delay (${served})`);

      // Then the listener closes, while the slow request is still in flight.
      await waitForAsync(
        'the listener to close',
        async () => {
          const dispatcher = fresh();
          try {
            await send(g.url, '/after-delay', { dispatcher });
            return false;
          } catch (err) {
            return /ECONNREFUSED|connect/i.test(String((err as { code?: string }).code ?? err));
          } finally {
            await dispatcher.destroy();
          }
        },
        DELAY_MS + 3000,
      );
      const closedAfterMs = Date.now() - signalled;
      assert.ok(closedAfterMs >= DELAY_MS - 100, `the listener closed ${closedAfterMs} ms after SIGTERM, not before the delay`);
      assert.ok(!g.logs.some((l) => l.msg === 'stopped'), 'the slow request is still in flight');

      const done = await slow;
      assert.equal(done.status, 200, 'the request in flight through the whole shutdown is answered');
      assert.equal(done.body, 'slow done');
      const code = await g.exited;
      assert.ok(g.logs.some((l) => l.msg === 'stopped'), 'the graceful shutdown ran to its end');
      // Deno's node:child_process reports a child ended after a signal as killed by it, whatever its exit code (see
      // test/gateway.test.ts), so the exit code is asserted under Node; the log line above shows the orderly end.
      if (!isDeno) assert.equal(code, 0);
      const order = g.logs.map((l) => l.msg).filter((m) => m === 'shutting down' || m === 'no longer accepting connections: draining' || m === 'stopped');
      assert.deepEqual(order, ['shutting down', 'no longer accepting connections: draining', 'stopped']);
    } finally {
      await keepAlive.destroy().catch(() => undefined);
      await g.stop('SIGKILL');
    }
  });

  test('a request that outlasts GATEHOUSE_SHUTDOWN_TIMEOUT_MS is cut at the timeout, and the process exits', async () => {
    const config = writeConfig(
      tempDir(),
      'gateway.yaml',
      `version: 1\napis:\n  - id: shop\n    pathPrefix: /\n    backend: { url: "http://127.0.0.1:${backendPort}", timeoutMs: 120000 }\n`,
    );
    const g = await startGatewayProcess({ config, env: { GATEHOUSE_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) } });
    try {
      const hanging = send(g.url, '/hang').catch((err: unknown) => err);
      await waitForAsync('the request to reach the backend', async () => received.includes('/hang'), 5000);
      const signalled = performance.now();
      g.child.kill('SIGTERM');
      const cut = await g.waitForLog((l) => l.msg === 'shutdown timeout: in-flight requests cut off', SHUTDOWN_TIMEOUT_MS + EXIT_MARGIN_MS);
      assert.equal(cut.inFlight, 1, 'the hanging request was in flight at the timeout');
      await g.exited;
      const exitedAfterMs = performance.now() - signalled;
      assert.ok(exitedAfterMs >= SHUTDOWN_TIMEOUT_MS - 50, `exited ${exitedAfterMs} ms after SIGTERM: not before the timeout`);
      assert.ok(exitedAfterMs < SHUTDOWN_TIMEOUT_MS + EXIT_MARGIN_MS, `exited ${exitedAfterMs} ms after SIGTERM, the timeout is ${SHUTDOWN_TIMEOUT_MS} ms`);
      assert.ok(g.logs.some((l) => l.msg === 'stopped'), 'the shutdown ran to its end after the cut');
      const outcome = await hanging;
      // Cut: its backend connection is destroyed, so the client gets the gateway's 502 or, if the process is gone first,
      // a closed connection; never an answer from the backend.
      assert.ok(outcome instanceof Error || (outcome as { status: number }).status === 502, `the hanging request was cut: ${JSON.stringify(outcome)}`);
    } finally {
      await g.stop('SIGKILL');
    }
  });

  test('SIGINT (Ctrl-C) does not wait, and ends the delay of a SIGTERM before it', async () => {
    const config = writeConfig(
      tempDir(),
      'gateway.yaml',
      `version: 1\napis:\n  - id: shop\n    pathPrefix: /\n    backend: { url: "http://127.0.0.1:${backendPort}" }\n`,
    );
    const g = await startGatewayProcess({ config, env: { GATEHOUSE_SHUTDOWN_DELAY_MS: '60000' } });
    try {
      const started = Date.now();
      g.child.kill('SIGTERM');
      await waitForAsync('the probe to answer 503', async () => (await send(g.url, PROBE)).status === 503, 1000);
      // By pid: Deno's ChildProcess.kill sends nothing once it has sent a signal.
      process.kill(g.child.pid!, 'SIGINT');
      await g.exited;
      assert.ok(Date.now() - started < 10_000, 'the gateway stopped without the 60 s delay');
      assert.ok(g.logs.some((l) => l.msg === 'stopped'));
    } finally {
      await g.stop('SIGKILL');
    }
  });
});
