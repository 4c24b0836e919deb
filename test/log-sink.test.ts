// The log's output is bounded: a real gateway process whose standard output is a pipe nobody reads for a while, or
// a reader that went away, keeps serving with bounded memory, counts the lines it drops (/metrics) and says how many
// once it can write again; a line over the line limit is replaced by a short record. Under Node and under Deno (the
// gateway runs under the suite's runtime).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { send } from './support/requests.ts';
import { waitFor, waitForAsync } from './support/wait.ts';
import { isDeno } from '../runtime/adapters/index.ts';
import { DEFAULT_LOG_LIMITS } from '../runtime/telemetry/log-sink.ts';

const CONFIG = `
version: 1
apis:
  - id: echo
    pathPrefix: /echo
    backend: { url: builtin:echo }
`;

const agent = new Agent({ connections: 8 });

after(async () => {
  await agent.close();
});

/** A value of /metrics (a series without labels). */
async function metric(g: GatewayProcess, name: string): Promise<number> {
  const text = (await send(`http://127.0.0.1:${g.adminPort}`, '/metrics', { dispatcher: agent })).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} is on /metrics`);
  return Number(line.slice(name.length + 1));
}

/** Sends `count` GETs of `path` to the gateway, 8 at a time; resolves with how many got an answer. */
async function flood(g: GatewayProcess, path: string, count: number): Promise<number> {
  let next = 0;
  let answered = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      const res = await request(`${g.url}${path}`, { dispatcher: agent });
      await res.body.dump();
      answered++;
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return answered;
}

const MiB = 1024 * 1024;

function startGateway(): Promise<GatewayProcess> {
  const file = writeConfig(tempDir('gatehouse-log-'), 'gateway.yaml', CONFIG);
  // Request heads up to 2 MiB, so that one request makes an access-log line as long as its path.
  return startGatewayProcess({ config: file, env: { GATEHOUSE_MAX_HEADER_BYTES: String(2 * MiB) } });
}

describe('log output bounds', () => {
  let g: GatewayProcess;

  before(async () => {
    g = await startGateway();
  });

  after(async () => {
    g.child.stdout!.resume();
    await g?.stop();
  });

  test('a line over the line limit is written as a short record with its message, size and beginning', async () => {
    const path = `/nowhere/${'a'.repeat(MiB)}`;
    assert.equal((await send(g.url, path, { dispatcher: agent })).status, 404);
    const cut = await g.waitForLog((l) => l.msg === 'log line cut: longer than the limit');
    assert.equal(cut.level, 'info');
    assert.equal(cut.originalMsg, 'request');
    assert.ok((cut.bytes as number) > MiB, String(cut.bytes));
    assert.equal(cut.limitBytes, DEFAULT_LOG_LIMITS.maxLineBytes);
    assert.match(String(cut.head), /^\{"time":"[^"]+","level":"info","msg":"request".*"path":"\/nowhere\/aaaa/);
    assert.ok(JSON.stringify(cut).length < 4096, 'the record is short');
    // The lines after it are whole.
    assert.equal((await send(g.url, '/echo/after-the-cut', { dispatcher: agent })).status, 200);
    await g.waitForLog((l) => l.msg === 'request' && l.path === '/echo/after-the-cut');
    assert.equal(await metric(g, 'gatehouse_log_lines_cut_total'), 1);
    assert.equal(await metric(g, 'gatehouse_log_lines_dropped_total'), 0);
  });

  test('while standard output is not read, the gateway serves on with bounded memory, drops lines and counts them; then it says how many', async () => {
    // Warm: the request path's code compiled and its memory settled before the baseline is read.
    const path = `/nowhere/${'b'.repeat(48 * 1024)}`;
    await flood(g, path, 200);
    await waitFor('the warm-up lines', () => g.logs.filter((l) => l.msg === 'request' && String(l.path).startsWith('/nowhere/bbb')).length === 200, 10_000);
    const rssBefore = await metric(g, 'process_resident_memory_bytes');

    g.child.stdout!.pause();
    // About 150 MiB of access log, 38 times the pending bound, into a pipe that takes 64 KiB.
    const requests = 3200;
    const startedAt = Date.now();
    assert.equal(await flood(g, path, requests), requests, 'every request answered while the log is not read');
    const dropped = await metric(g, 'gatehouse_log_lines_dropped_total');
    const rssAfter = await metric(g, 'process_resident_memory_bytes');
    assert.equal((await send(`http://127.0.0.1:${g.adminPort}`, '/livez', { dispatcher: agent })).status, 200);
    const logBytes = requests * path.length;
    assert.ok(dropped > requests / 2, `${dropped} of ${requests} lines dropped (${Math.round(logBytes / MiB)} MiB logged in ${Date.now() - startedAt} ms)`);
    // Without the bound, all of it would wait in the process (Node queues it, in UTF-16 strings and buffers).
    const grewMiB = (rssAfter - rssBefore) / MiB;
    assert.ok(grewMiB < 64, `resident memory grew by ${grewMiB.toFixed(1)} MiB while ${Math.round(logBytes / MiB)} MiB were logged`);

    const linesBefore = g.logs.length;
    g.child.stdout!.resume();
    const report = await g.waitForLog((l) => l.msg === 'log lines dropped', 15_000);
    assert.equal(report.level, 'warn');
    assert.equal(report.droppedTotal, dropped);
    assert.equal(report.why, 'the log output could not keep up');
    assert.ok(Date.parse(String(report.firstDroppedAt)) >= startedAt - 1000);
    // Every request's line arrived, or was counted as dropped: none lost unheard.
    await waitForAsync('the lines written before the gap have been read', async () => {
      const seen = g.logs.slice(linesBefore).filter((l) => l.msg === 'request').length;
      return seen + dropped === requests;
    }, 10_000);
    assert.equal(report.dropped, dropped);
    // Writing works again: the next line arrives whole, and nothing more was dropped.
    assert.equal((await send(g.url, '/echo/after-the-flood', { dispatcher: agent })).status, 200);
    await g.waitForLog((l) => l.msg === 'request' && l.path === '/echo/after-the-flood');
    assert.equal(await metric(g, 'gatehouse_log_lines_dropped_total'), dropped);
  });
});

describe('a log reader that goes away', () => {
  test('writes fail (EPIPE): the gateway serves on and counts the lines as dropped', async () => {
    const g = await startGateway();
    try {
      // The reading end of the pipe is closed: every write from now on fails.
      g.child.stdout!.destroy();
      for (let i = 0; i < 20; i++) assert.equal((await send(g.url, `/echo/unheard-${i}`, { dispatcher: agent })).status, 200);
      await waitForAsync('the failed writes are counted', async () => (await metric(g, 'gatehouse_log_lines_dropped_total')) >= 20, 10_000);
      assert.equal((await send(`http://127.0.0.1:${g.adminPort}`, '/livez', { dispatcher: agent })).status, 200);
      assert.equal(g.child.exitCode, null, 'still running');
    } finally {
      await g.stop();
    }
    const code = await g.exited;
    // Deno's node:child_process reports a child ended after a signal as killed by it, whatever its exit code (see
    // test/graceful-shutdown.test.ts): the exit code is asserted under Node.
    if (!isDeno) assert.equal(code, 0, 'an orderly exit, its last lines dropped rather than waited for');
  });
});
