// Hostile modules written by hand (not by our SDK) in a real gateway process: each costs its own request an error,
// never the gateway or another API. Before the kernel was the host's, the log flood below stalled every route and
// grew the gateway's log and memory by hundreds of MiB from one request.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hostileModule, type HostileModule } from './support/hostile-modules.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { send, startRecordingBackend, type RecordingBackend } from './support/requests.ts';

const MODULES: Record<string, HostileModule> = {
  // 64 kernel log lines of 16 KiB at info, which the gateway writes.
  'log-flood': {
    name: 'log-flood',
    locals: '(local $i i32)',
    inbound: `
      (loop $again
        (call $log_info (call $alloc (i64.const 16384)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $again (i32.lt_u (local.get $i) (i32.const 64))))
      (i32.const 0)`,
  },
  loop: { name: 'loop', inbound: '(loop $again (br $again)) (i32.const 0)' },
  // Kernel blocks of 8 MiB until refused.
  'block-hoarder': {
    name: 'block-hoarder',
    inbound: '(loop $again (call $store_u8 (call $alloc (i64.const 8388608)) (i32.const 1)) (br $again)) (i32.const 0)',
  },
};

let backend: RecordingBackend;
let gw: GatewayProcess;

/** Resident memory of a process, in MiB (Linux). */
function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

before(async () => {
  backend = await startRecordingBackend(() => ({ body: 'ok' }));
  const dir = tempDir();
  for (const [name, m] of Object.entries(MODULES)) writeFileSync(join(dir, `${name}.wasm`), await hostileModule(m));
  const api = (id: string, policies = '') =>
    `  - { id: ${id}, pathPrefix: /${id}, backend: { url: "http://127.0.0.1:${backend.port}" }${policies ? `, policies: { inbound: [${policies}] }` : ''} }`;
  const config = `version: 1
apis:
${api('steady')}
${Object.keys(MODULES)
  // The hoarder's breaker is off, so that each of its requests really allocates; its CPU budget is generous, so that
  // the memory cap ends its calls (zeroing 16 MiB of blocks may take more than the default 50 ms on a slow machine).
  .map((name) => api(name, `{ module: ./${name}.wasm${name === 'block-hoarder' ? ', circuitBreaker: { failures: 0 }, limits: { cpuMs: 2000 }' : ''} }`))
  .join('\n')}
`;
  gw = await startGatewayProcess({ config: writeConfig(dir, 'gateway.yaml', config), env: { GATEHOUSE_LOG_LEVEL: 'info' } });
});

after(async () => {
  await gw?.stop();
  backend?.server.closeAllConnections();
  await new Promise((r) => backend?.server.close(r));
});

function policyFailures(reason: string) {
  return gw.logs.filter((l) => l.msg === 'policy call failed' && l.reason === reason);
}

describe('hostile modules in a gateway', () => {
  test('a kernel log flood fails its request for the log budget; the log gets at most the budget; others are served', async () => {
    const before = gw.logs.length;
    const flooded = await send(gw.url, '/log-flood/x');
    assert.equal(flooded.status, 500);
    await gw.waitForLog((l) => l.msg === 'policy call failed' && l.reason === 'log-budget');
    const policyLines = gw.logs.slice(before).filter((l) => l.source === 'policy');
    assert.ok(policyLines.length <= 1, `${policyLines.length} lines of the flood reached the log`);
    assert.equal((await send(gw.url, '/steady/x')).status, 200);
  });

  test('kernel blocks past the memory cap fail the request; the gateway does not grow by them', async () => {
    const rssBefore = rssMiB(gw.child.pid!);
    for (let i = 0; i < 10; i++) assert.equal((await send(gw.url, '/block-hoarder/x')).status, 500);
    await gw.waitForLog(() => policyFailures('memory-cap').length === 10);
    const grown = rssMiB(gw.child.pid!) - rssBefore;
    // Ten calls each allowed 16 MiB at most, given back after each: far from the 320 MiB a call used to hold.
    assert.ok(grown < 96, `the gateway grew by ${grown.toFixed(0)} MiB over ten requests`);
    assert.equal((await send(gw.url, '/steady/x')).status, 200);
  });

  test('a looping policy: three requests stopped at the budget, then its breaker opens and it fails at once', async () => {
    const took: number[] = [];
    for (let i = 0; i < 6; i++) {
      const started = performance.now();
      assert.equal((await send(gw.url, '/loop/x')).status, 500);
      took.push(performance.now() - started);
    }
    const loopBreaker = (l: Record<string, unknown>) => l.binding === 'api:loop/inbound/0' && String(l.msg).startsWith('policy circuit opened');
    const opened = await gw.waitForLog(loopBreaker);
    assert.equal(policyFailures('cpu-budget').length, 3);
    assert.ok(Math.max(...took.slice(3)) < Math.min(...took.slice(0, 3)), `calls took ${took.map((t) => t.toFixed(0)).join(', ')} ms`);
    assert.deepEqual(gw.logs.filter(loopBreaker), [opened], 'logged once');
    const metrics = await send(`http://127.0.0.1:${gw.adminPort}`, '/metrics');
    assert.match(metrics.body, /gatehouse_policy_circuit_opens_total\{policy="loop"\} 1/);
    assert.match(metrics.body, /gatehouse_policy_failures_total\{policy="loop",reason="circuit-open"\} 3/);
    assert.equal((await send(gw.url, '/steady/x')).status, 200);
  });
});
