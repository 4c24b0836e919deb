// A call that ends without returning is logged with what ended it: the limit's setting and value, or the abort and
// the policy's function that led to it (the module keeps its names, runtime/policy-host/errors.ts), and the instance
// is replaced so that the next call runs on a fresh one.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PolicyFailure } from '../runtime/policy-host/index.ts';
import { buildFixture, makeExchange, newHost } from './support/policies.ts';

describe('trap reasons', () => {
  // `cpuMs`: the budget of the call, where the default (50 ms) could end it first. Growing to the memory cap zeroes
  // 16 MiB a page fault at a time: a clean-clone CI run under Deno, two test files at a time on a slow machine, took
  // more than 50 ms of the process's CPU for it and failed with cpu-budget.
  const expectations: { mode: string; reason: string; message: RegExp; limit?: [string, number]; at?: RegExp; cpuMs?: number }[] = [
    {
      mode: 'map-missing',
      reason: 'abort',
      message: /abort: Key does not exist at ~lib\/map\.ts:\d+:\d+, called from policy\.ts: (on_inbound|lookup)\(\)$/,
      at: /^policy\.ts: (on_inbound|lookup)\(\)$/,
    },
    { mode: 'index', reason: 'abort', message: /abort: Index out of range at ~lib\/array\.ts:\d+:\d+, called from policy\.ts: on_inbound\(\)$/, at: /^policy\.ts: on_inbound\(\)$/ },
    { mode: 'memory', reason: 'memory-cap', message: /at the cap of 16777216 bytes .*\(setting limits\.memoryBytes: 16777216\)$/, limit: ['limits.memoryBytes', 16777216], at: /^policy\.ts: on_inbound\(\)$/, cpuMs: 5000 },
    { mode: 'output', reason: 'output-cap', message: /output cap of 1048576 bytes \(setting limits\.outputBytes: 1048576\)$/, limit: ['limits.outputBytes', 1048576] },
    { mode: 'cpu', reason: 'cpu-budget', message: /CPU budget of 50 ms \(setting limits\.cpuMs: 50\)$/, limit: ['limits.cpuMs', 50] },
    { mode: 'stack', reason: 'stack-overflow', message: /overflowed the stack .* in policy\.ts: depth\(\)$/, at: /^policy\.ts: depth\(\)$/ },
  ];

  for (const e of expectations) {
    test(`${e.mode}: reason ${e.reason}, logged with ${e.limit ? 'the limit' : 'where it stopped'}; the next call runs`, async () => {
      const { host, logs } = newHost();
      const module = await host.load(await buildFixture('trap-reasons'));
      const binding = host.bind({ id: `traps/${e.mode}`, phase: 'inbound', module, ...(e.cpuMs ? { limits: { cpuMs: e.cpuMs } } : {}) });
      const err = await binding.run('inbound', makeExchange({ headers: { 'x-mode': e.mode } })).then(
        () => null,
        (x: unknown) => x,
      );
      assert.ok(err instanceof PolicyFailure, String(err));
      assert.equal(err.reason, e.reason, err.message);
      assert.match(err.message, e.message);
      const line = logs.find((l) => l.msg === 'policy call failed');
      assert.ok(line, JSON.stringify(logs));
      assert.equal(line.reason, e.reason);
      assert.equal(line.recycled, true);
      if (e.limit) assert.deepEqual([line.limit, line.limitValue], e.limit);
      else assert.equal(line.limit, undefined);
      if (e.at) assert.match(String(line.at), e.at);
      // The instance that trapped is not used again.
      const ok = makeExchange();
      await binding.run('inbound', ok);
      assert.equal(binding.stats.recycles, 1);
      assert.equal(binding.stats.consecutiveFailures, 0);
    });
  }

  test('an abort in the policy\'s own file names that line', async () => {
    const { host, logs } = newHost();
    const module = await host.load(await buildFixture('adversarial'));
    const binding = host.bind({ id: 'traps/assert', phase: 'inbound', module, config: { mode: 'abort' } });
    await assert.rejects(binding.run('inbound', makeExchange()), (err: PolicyFailure) => err.reason === 'abort');
    assert.match(String(logs.find((l) => l.msg === 'policy call failed')?.at), /^policy\.ts:\d+:\d+$/);
  });

  test('a module\'s own function names are cut and kept to printable ASCII before they reach a message', async () => {
    const { authorFrame } = await import('../runtime/policy-host/errors.ts');
    const err = new Error('x');
    err.stack = `RuntimeError: unreachable\n    at ~lib/x (wasm://wasm/1:wasm-function[1]:0x1)\n    at evil/${'a'.repeat(500)}\u0007 (wasm://wasm/1:wasm-function[2]:0x2)`;
    const at = authorFrame(err)!;
    assert.ok(at.length < 200, at);
    assert.match(at, /^evil\.ts: a+\(\)$/);
    err.stack = 'RuntimeError: unreachable\n    at wasm-function[3] (wasm://wasm/1:wasm-function[3]:0x2)';
    assert.equal(authorFrame(err), null);
  });
});
