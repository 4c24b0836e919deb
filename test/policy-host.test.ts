// The policy host's own promises: a module is loaded once per content, and a binding is refused, naming every problem,
// unless its phase, configuration, grants, limits and circuit breaker settings are all valid. Modules are written in
// WebAssembly text, so this file builds no policy with the SDK and runs in well under a second.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { GatewayEffects } from '../runtime/pipeline/effects.ts';
import {
  DEFAULT_BREAKER,
  PolicyConfigError,
  PolicyHost,
  PolicyLoadError,
  type BindSpec,
  type PolicyModule,
} from '../runtime/policy-host/index.ts';
import { MemoryCounterStore } from '../runtime/state/counter-store.ts';
import { Logger, memorySink, type LogRecord } from '../runtime/telemetry/logger.ts';
import { MetricsRegistry } from '../runtime/telemetry/metrics.ts';
import { makeExchange, newHost, policyFailure, rawModule } from './support/policies.ts';
import { processClocks } from '../runtime/adapters/process-clocks.ts';

const NAMED_SCHEMA = '{"type":"object","required":["name"],"properties":{"name":{"type":"string"}}}';
const WASI_IMPORT = '(import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))';

async function loaded(parts: Parameters<typeof rawModule>[0] = {}): Promise<{ host: PolicyHost; module: PolicyModule }> {
  const { host } = newHost();
  return { host, module: await host.load(await rawModule(parts)) };
}

/** The problems of a binding the host refuses; the error names the binding. */
function refused(host: PolicyHost, spec: BindSpec): string[] {
  try {
    host.bind(spec);
  } catch (err) {
    assert.ok(err instanceof PolicyConfigError, String(err));
    assert.equal(err.where, spec.id);
    return err.problems;
  }
  assert.fail(`binding ${spec.id} was accepted`);
}

describe('loading', () => {
  test('the same bytes are loaded once, remembered by their sha256', async () => {
    const { host } = newHost();
    const bytes = await rawModule();
    const [a, b] = await Promise.all([host.load(bytes), host.load(new Uint8Array(bytes))]);
    assert.equal(a, b);
    assert.equal(await host.load(bytes), a);
    assert.deepEqual(host.loadedModules(), [createHash('sha256').update(bytes).digest('hex')]);
  });

  test('a module that failed to load is not remembered: the next attempt loads it again and reports the error again', async () => {
    const { host } = newHost();
    const bytes = new TextEncoder().encode('not wasm');
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(host.load(bytes), (err: unknown) => err instanceof PolicyLoadError && /not a valid WebAssembly module/.test(err.message));
      assert.deepEqual(host.loadedModules(), []);
    }
  });

  test('a host without a logger or metrics of its own gets fresh ones; given ones are used', async () => {
    const effects = new GatewayEffects({ counters: new MemoryCounterStore() });
    const bare = new PolicyHost({ effects, clocks: processClocks });
    assert.ok(bare.logger instanceof Logger);
    assert.ok(bare.metrics instanceof MetricsRegistry);
    const logger = new Logger(memorySink([]));
    const metrics = new MetricsRegistry();
    const given = new PolicyHost({ effects, logger, metrics, clocks: processClocks });
    assert.equal(given.logger, logger);
    assert.equal(given.metrics, metrics);
  });
});

describe('binding: what is checked', () => {
  test('a phase the module has no handler for is refused, naming the handlers it has', async () => {
    const { host, module } = await loaded({
      exports: '(func (export "on_inbound") (result i32) (i32.const 0)) (func (export "on_backend") (result i32) (i32.const 0))',
    });
    assert.deepEqual(refused(host, { id: 'api:a/outbound/0', phase: 'outbound', module }), [
      'policy raw has no outbound handler (it handles: inbound, backend)',
    ]);
    host.bind({ id: 'api:a/backend/0', phase: 'backend', module });
  });

  test('a configuration is checked against the schema: no config at all is checked as {}', async () => {
    const { host, module } = await loaded({ descriptor: `{"name":"named","version":"1","configSchema":${NAMED_SCHEMA}}` });
    const missing = ["config (root): must have required property 'name'"];
    assert.deepEqual(refused(host, { id: 'api:a/inbound/0', phase: 'inbound', module }), missing);
    assert.deepEqual(refused(host, { id: 'api:a/inbound/1', phase: 'inbound', module, config: {} }), missing);
    assert.deepEqual(refused(host, { id: 'api:a/inbound/2', phase: 'inbound', module, config: { name: 5 } }), [
      'config /name: must be string',
    ]);
    const binding = host.bind({ id: 'api:a/inbound/3', phase: 'inbound', module, config: { name: 'x-user' } });
    assert.equal(binding.configValue(''), '{"name":"x-user"}');
    assert.equal(binding.configValue('name'), 'x-user');
  });

  test('a module without a schema takes any configuration; none reads as {}', async () => {
    const { host, module } = await loaded();
    assert.equal(host.bind({ id: 'a/0', phase: 'inbound', module }).configValue(''), '{}');
    assert.equal(host.bind({ id: 'a/1', phase: 'inbound', module, config: { any: [1] } }).configValue(''), '{"any":[1]}');
  });

  test('grants: unknown names, wrong types, relative guest paths, empty host directories and bad host lists are refused', async () => {
    const { host, module } = await loaded();
    const problems = (grants: unknown) => refused(host, { id: 'g/0', phase: 'inbound', module, grants: grants as never });
    assert.deepEqual(problems({ network: true }), ['grants.network: unknown grant (known: wasi, filesystem, http, backend, counters, openidConfig)']);
    assert.deepEqual(problems({ wasi: 1 }), ['grants.wasi: must be a boolean']);
    assert.deepEqual(problems({ counters: 'yes' }), ['grants.counters: must be a boolean']);
    for (const filesystem of ['/data', null, ['/data'], 7]) {
      assert.deepEqual(problems({ filesystem }), ['grants.filesystem: must map guest paths to host directories'], String(filesystem));
    }
    assert.deepEqual(problems({ filesystem: { data: '/srv/data', '/empty': '', '/number': 5, '/ok': '/srv/ok' } }), [
      'grants.filesystem["data"]: guest path must be absolute',
      'grants.filesystem["/empty"]: host directory must be a non-empty string',
      'grants.filesystem["/number"]: host directory must be a non-empty string',
    ]);
    assert.deepEqual(problems({ http: { allowedHosts: [] } }), [
      'grants.http.allowedHosts: must be a non-empty list of hosts with their ports ("orders.internal:8443", "*.svc.example.com:443")',
    ]);
    assert.deepEqual(problems({ backend: { allowedHosts: [''] } }), [
      'grants.backend.allowedHosts[0]: must be a host and port like "orders.internal:8443" (got "")',
    ]);
    assert.deepEqual(problems({ openidConfig: ['ftp://issuer/x', 'https://user:pw@issuer/x', 'https://issuer/ok'] }), [
      'grants.openidConfig[0]: must be an absolute http:// or https:// URL (got "ftp://issuer/x")',
      'grants.openidConfig[1]: must be an absolute http:// or https:// URL (got "https://user:pw@issuer/x")',
    ]);
    assert.deepEqual(problems({ openidConfig: Array.from({ length: 9 }, (_, i) => `https://issuer/${i}`) }), ['grants.openidConfig: must be a list of at most 8 URLs']);
  });

  test('valid grants are accepted and kept on the binding; no grants are none', async () => {
    const { host, module } = await loaded();
    const grants = {
      wasi: false,
      counters: true,
      filesystem: { '/data': '/srv/data' },
      http: { allowedHosts: ['api.example.com:443'] },
      backend: { allowedHosts: ['*.svc.example.com:443'] },
    };
    assert.deepEqual(host.bind({ id: 'g/0', phase: 'inbound', module, grants }).grants, grants);
    assert.deepEqual(host.bind({ id: 'g/1', phase: 'inbound', module }).grants, {});
  });

  test('a module that imports WASI needs "wasi": true or a filesystem grant', async () => {
    const { host, module } = await loaded({ imports: WASI_IMPORT });
    const problem = ['policy raw imports WASI, which its grants do not include ("wasi": true)'];
    assert.deepEqual(refused(host, { id: 'w/0', phase: 'inbound', module }), problem);
    assert.deepEqual(refused(host, { id: 'w/1', phase: 'inbound', module, grants: { wasi: false } }), problem);
    host.bind({ id: 'w/2', phase: 'inbound', module, grants: { wasi: true } });
    host.bind({ id: 'w/3', phase: 'inbound', module, grants: { filesystem: { '/data': '/srv/data' } } });
  });

  test('each limit must be a finite number above 0 and at most its maximum', async () => {
    const { host, module } = await loaded();
    const maxima = { cpuMs: 10_000, memoryBytes: 1024 ** 3, outputBytes: 1024 ** 3, logLines: 100_000, logBytes: 1024 ** 3 };
    for (const [name, max] of Object.entries(maxima)) {
      for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '5', max + 1]) {
        const expected = [`limits.${name}: must be a number above 0 and at most ${max} (got ${JSON.stringify(bad)})`];
        // A memory cap below the module's one initial page is also too small for it (the next test checks that).
        if (name === 'memoryBytes' && Number(bad) < 65536) {
          expected.push(`limits.memoryBytes: policy raw needs 65536 bytes at start, above the cap of ${bad}`);
        }
        assert.deepEqual(refused(host, { id: 'l/0', phase: 'inbound', module, limits: { [name]: bad } }), expected);
      }
      for (const good of [name === 'memoryBytes' ? 65536 : 0.5, max]) host.bind({ id: 'l/1', phase: 'inbound', module, limits: { [name]: good } });
    }
    host.bind({ id: 'l/2', phase: 'inbound', module, limits: {} });
  });

  test('the memory cap must hold the pages the module starts with', async () => {
    const { host, module } = await loaded({ memory: '(memory (export "memory") 2)' });
    assert.deepEqual(refused(host, { id: 'm/0', phase: 'inbound', module, limits: { memoryBytes: 131071 } }), [
      'limits.memoryBytes: policy raw needs 131072 bytes at start, above the cap of 131071',
    ]);
    host.bind({ id: 'm/1', phase: 'inbound', module, limits: { memoryBytes: 131072 } });
  });

  test('each circuit breaker setting must be an integer in its range', async () => {
    const { host, module } = await loaded();
    const ranges: Record<string, [number, number]> = { failures: [0, 1000], windowMs: [1, 3_600_000], coolDownMs: [1, 3_600_000] };
    for (const [name, [min, max]] of Object.entries(ranges)) {
      for (const bad of [min - 1, max + 1, 1.5, '3', null]) {
        assert.deepEqual(refused(host, { id: 'b/0', phase: 'inbound', module, circuitBreaker: { [name]: bad } }), [
          `circuitBreaker.${name}: must be an integer from ${min} to ${max} (got ${JSON.stringify(bad)})`,
        ]);
      }
      for (const good of [min, max]) host.bind({ id: 'b/1', phase: 'inbound', module, circuitBreaker: { [name]: good } });
    }
  });

  test('every problem is listed, in order: phase, configuration, grants, WASI, limits, circuit breaker', async () => {
    const { host, module } = await loaded({
      descriptor: `{"name":"named","version":"1","configSchema":${NAMED_SCHEMA}}`,
      imports: WASI_IMPORT,
    });
    assert.deepEqual(
      refused(host, {
        id: 'api:all/outbound/0',
        phase: 'outbound',
        module,
        grants: { counters: 1 } as never,
        limits: { cpuMs: 0 },
        circuitBreaker: { failures: -1 },
      }),
      [
        'policy named has no outbound handler (it handles: inbound)',
        "config (root): must have required property 'name'",
        'grants.counters: must be a boolean',
        'policy named imports WASI, which its grants do not include ("wasi": true)',
        'limits.cpuMs: must be a number above 0 and at most 10000 (got 0)',
        'circuitBreaker.failures: must be an integer from 0 to 1000 (got -1)',
      ],
    );
  });

  test('failOpen is on only when it is true', async () => {
    const { host, module } = await loaded();
    assert.equal(host.bind({ id: 'f/0', phase: 'inbound', module, failOpen: true }).failOpen, true);
    assert.equal(host.bind({ id: 'f/1', phase: 'inbound', module, failOpen: 'yes' as never }).failOpen, false);
    assert.equal(host.bind({ id: 'f/2', phase: 'inbound', module }).failOpen, false);
  });
});

describe('binding: what it is given', () => {
  test('a failing call is logged under the binding and its policy, and counted in the host metrics', async () => {
    const logs: LogRecord[] = [];
    const metrics = new MetricsRegistry();
    const host = new PolicyHost({
      clocks: processClocks,
      logger: new Logger(memorySink(logs), 'debug'),
      metrics,
      effects: new GatewayEffects({ counters: new MemoryCounterStore() }),
    });
    const module = await host.load(await rawModule({ exports: '(func (export "on_inbound") (result i32) (unreachable))' }));
    const binding = host.bind({ id: 'api:t/inbound/0', phase: 'inbound', module });
    assert.equal((await policyFailure(binding.run('inbound', makeExchange()))).reason, 'trap');
    const failed = logs.find((r) => r.msg === 'policy call failed');
    assert.ok(failed, JSON.stringify(logs));
    assert.equal(failed.policy, 'raw');
    assert.equal(failed.binding, 'api:t/inbound/0');
    const text = metrics.render();
    for (const line of [
      '# HELP gatehouse_policy_calls_total Policy handler calls, by policy.',
      'gatehouse_policy_calls_total{policy="raw"} 1',
      '# HELP gatehouse_policy_failures_total Failed policy calls, by policy and reason.',
      'gatehouse_policy_failures_total{policy="raw",reason="trap"} 1',
      '# HELP gatehouse_policy_instance_recycles_total Policy instances discarded after a trap or a broken limit, by policy.',
      'gatehouse_policy_instance_recycles_total{policy="raw"} 1',
      '# HELP gatehouse_policy_circuit_opens_total Times a binding stopped being called after running into its CPU budget or a cap too often, by policy.',
    ]) {
      assert.ok(text.split('\n').includes(line), `${line}\nnot in\n${text}`);
    }
  });

  test('limits and circuit breaker settings given are used, with the defaults for the rest', async () => {
    const { host, logs } = newHost();
    // Loops until its CPU budget of 1 ms stops it: a budget failure, which the breaker counts.
    const module = await host.load(await rawModule({ exports: '(func (export "on_inbound") (result i32) (loop $spin (br $spin)) (i32.const 0))' }));
    const binding = host.bind({
      id: 'api:spin/inbound/0',
      phase: 'inbound',
      module,
      limits: { cpuMs: 1 },
      circuitBreaker: { failures: 1, coolDownMs: 60_000 },
    });
    assert.equal((await policyFailure(binding.run('inbound', makeExchange()))).reason, 'cpu-budget');
    const opened = logs.find((r) => r.msg.startsWith('policy circuit opened'));
    assert.ok(opened, JSON.stringify(logs));
    assert.deepEqual(
      { failures: opened.failures, windowMs: opened.windowMs, coolDownMs: opened.coolDownMs },
      { failures: 1, windowMs: DEFAULT_BREAKER.windowMs, coolDownMs: 60_000 },
    );
    assert.equal((await policyFailure(binding.run('inbound', makeExchange()))).reason, 'circuit-open');
    assert.match(host.metrics.render(), /^gatehouse_policy_circuit_opens_total\{policy="raw"\} 1$/m);
  });
});
