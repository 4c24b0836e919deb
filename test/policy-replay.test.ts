// Calls of deterministic handlers answered from earlier calls (runtime/policy-host/replay.ts; abi/policy-abi.md,
// section 2): replayed only when every value read is the same, never for a call that did anything a replay cannot
// make again, and bounded.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Field } from '../abi/index.ts';
import { PolicyHost, type BindSpec, type Grants, type PolicyBinding } from '../runtime/policy-host/index.ts';
import { MAX_POLICY_URL_PART } from '../runtime/policy-host/exchange.ts';
import { GatewayEffects } from '../runtime/pipeline/effects.ts';
import { MemoryCounterStore } from '../runtime/state/counter-store.ts';
import { Logger, memorySink } from '../runtime/telemetry/logger.ts';
import { processClocks } from '../runtime/adapters/process-clocks.ts';
import { MAX_CALLS, MAX_STEPS, MAX_VALUE_CHARS } from '../runtime/policy-host/replay.ts';
import { buildLiveConfig } from '../runtime/gateway/live-config.ts';
import type { GatewayDocument } from '../runtime/config/types.ts';
import { buildFixture, makeExchange, newHost, type TestHost } from './support/policies.ts';
import { hostileModule, layout } from './support/hostile-modules.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { send } from './support/requests.ts';

const DETERMINISTIC = '{"name":"echo","version":"1","deterministic":true}';
const PLAIN = '{"name":"echo","version":"1"}';
/** Where the echo module reads values into, and what it may read (a value of MAX_VALUE_CHARS and more fits). */
const BUF = 16384;
const BUF_CAP = 32768;
/** A second buffer, for what the imports that stop a recording write. */
const BUF2 = 12288;

const DATA = ['x-in', 'x-out', 'none', 'x-a', '1', 'x-b', 'a', 'message', 'm', '{"key":"k","limit":1000000,"periodSeconds":60}', 'XX', '{}'];
const [IN, OUT, NONE, XA, ONE, XB, A, MESSAGE, METRIC, COUNTER, ALG, JWK] = layout(DATA);

/** Sets request header x-out to request header x-in's value ("none" without one), after `prelude`. */
function echoModule(descriptor: string, prelude = '', imports = ''): Promise<Uint8Array> {
  return hostileModule({
    descriptor,
    data: DATA,
    imports,
    locals: '(local $r i32)',
    inbound: `
      ${prelude}
      (local.set $r (call $get (i32.const ${Field.REQUEST_HEADER}) (i32.const ${IN!.ptr}) (i32.const ${IN!.len}) (i32.const ${BUF}) (i32.const ${BUF_CAP})))
      (if (i32.lt_s (local.get $r) (i32.const 0))
        (then (drop (call $set (i32.const ${Field.REQUEST_HEADER}) (i32.const ${OUT!.ptr}) (i32.const ${OUT!.len}) (i32.const ${NONE!.ptr}) (i32.const ${NONE!.len}))))
        (else (drop (call $set (i32.const ${Field.REQUEST_HEADER}) (i32.const ${OUT!.ptr}) (i32.const ${OUT!.len}) (i32.const ${BUF}) (local.get $r)))))
      (i32.const 0)`,
  });
}

let t: TestHost;
let serial = 0;

before(() => {
  t = newHost();
});

async function bindWarm(wasm: Uint8Array, spec: Pick<BindSpec, 'grants' | 'config' | 'computedKeys'> = {}, host: PolicyHost = t.host): Promise<PolicyBinding> {
  const module = await host.load(wasm);
  const binding = host.bind({ id: `api:replay-${++serial}/inbound/0`, phase: 'inbound', module, ...spec });
  // Ready before the first call, as a gateway's bindings are: that call is then recorded.
  await binding.warm();
  return binding;
}

/** Runs the binding on a request with header x-in (absent when null); the x-out the policy set. */
async function echo(binding: PolicyBinding, value: string | null): Promise<string | undefined> {
  const exchange = makeExchange({ headers: value === null ? {} : { 'x-in': value } });
  await binding.run('inbound', exchange);
  return exchange.request.headers.get('x-out')?.[0];
}

describe('replayed calls of a module declared deterministic', () => {
  test('the same value read again: the changes are made again without a call; another value runs the module', async () => {
    const binding = await bindWarm(await echoModule(DETERMINISTIC));
    assert.equal(await echo(binding, 'alpha'), 'alpha');
    assert.equal(await echo(binding, 'alpha'), 'alpha');
    assert.equal(binding.stats.replays, 1);
    assert.equal(await echo(binding, 'beta'), 'beta');
    assert.equal(binding.stats.replays, 1, 'a value no kept call read runs the module');
    assert.equal(await echo(binding, null), 'none');
    assert.equal(await echo(binding, null), 'none', 'a header not found is a value like another');
    assert.equal(await echo(binding, 'beta'), 'beta');
    assert.equal(await echo(binding, 'alpha'), 'alpha');
    assert.equal(binding.stats.replays, 4);
    assert.equal(binding.stats.calls, 7);
  });

  test('a module that does not declare it is called every time', async () => {
    const binding = await bindWarm(await echoModule(PLAIN));
    for (let i = 0; i < 3; i++) assert.equal(await echo(binding, 'alpha'), 'alpha');
    assert.equal(binding.stats.replays, 0);
  });

  test('a host made with replay off calls every module (GATEHOUSE_POLICY_REPLAY=off)', async () => {
    const binding = await bindWarm(await echoModule(DETERMINISTIC), {}, newHost(undefined, undefined, false).host);
    for (let i = 0; i < 3; i++) assert.equal(await echo(binding, 'alpha'), 'alpha');
    assert.equal(binding.stats.replays, 0);
  });

  // Each of these makes the call one a replay cannot make again (or one its tree cannot key on): the module declares
  // itself deterministic, yet every call must run it.
  const stoppers: { name: string; prelude: string; grants?: Grants; imports?: string; descriptor?: string }[] = [
    { name: 'now', prelude: '(drop (call $now))' },
    { name: 'log', prelude: `(call $log (i32.const 2) (i32.const ${MESSAGE!.ptr}) (i32.const ${MESSAGE!.len}))` },
    { name: 'the kernel log_info', prelude: '(call $log_info (call $alloc (i64.const 1)))' },
    { name: 'list', prelude: `(drop (call $list (i32.const ${Field.REQUEST_HEADER}) (i32.const ${BUF2}) (i32.const 1024)))` },
    { name: 'metric', prelude: `(drop (call $metric (i32.const ${METRIC!.ptr}) (i32.const ${METRIC!.len}) (f64.const 1) (i32.const 0) (i32.const 0)))` },
    {
      name: 'effect (an in-memory counter, completed in the call)',
      prelude: `(drop (call $effect (i32.const 1) (i32.const ${COUNTER!.ptr}) (i32.const ${COUNTER!.len}) (i32.const ${BUF2}) (i32.const 1024)))`,
      grants: { counters: true },
    },
    {
      name: 'verify',
      prelude: `(drop (call $verify (i32.const ${ALG!.ptr}) (i32.const ${ALG!.len}) (i32.const ${JWK!.ptr}) (i32.const ${JWK!.len}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))`,
    },
    { name: "the kernel's var_get", prelude: '(drop (call $var_get (call $alloc (i64.const 1))))' },
    { name: "the kernel's var_set", prelude: '(call $var_set (call $alloc (i64.const 1)) (call $alloc (i64.const 1)))' },
    {
      name: "WASI's clock",
      prelude: `(drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const ${BUF2})))`,
      imports: '(import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))',
      grants: { wasi: true },
    },
    {
      name: 'a read of the request body',
      descriptor: '{"name":"echo","version":"1","deterministic":true,"requestBody":true}',
      prelude: `(drop (call $get (i32.const ${Field.REQUEST_BODY}) (i32.const 0) (i32.const 0) (i32.const ${BUF2}) (i32.const 1024)))`,
    },
  ];
  for (const { name, prelude, grants, imports, descriptor } of stoppers) {
    test(`a call that used ${name} is never replayed`, async () => {
      const binding = await bindWarm(await echoModule(descriptor ?? DETERMINISTIC, prelude, imports), { grants });
      for (let i = 0; i < 3; i++) assert.equal(await echo(binding, 'alpha'), 'alpha');
      assert.equal(binding.stats.failures, 0, JSON.stringify(binding.stats.lastFailure));
      assert.equal(binding.stats.replays, 0);
    });
  }

  test(`a call of more than ${MAX_STEPS} reads and changes is not kept; one of ${MAX_STEPS} is`, async () => {
    // `reads` reads of x-in before the echo's own read and write.
    const readsFirst = (reads: number) =>
      `(local.set $r (i32.const ${reads}))
       (loop $again
         (if (local.get $r) (then
           (drop (call $get (i32.const ${Field.REQUEST_HEADER}) (i32.const ${IN!.ptr}) (i32.const ${IN!.len}) (i32.const ${BUF2}) (i32.const 1024)))
           (local.set $r (i32.sub (local.get $r) (i32.const 1)))
           (br $again))))`;
    const within = await bindWarm(await echoModule(DETERMINISTIC, readsFirst(MAX_STEPS - 2)));
    const past = await bindWarm(await echoModule(DETERMINISTIC, readsFirst(MAX_STEPS - 1)));
    for (let i = 0; i < 2; i++) {
      assert.equal(await echo(within, 'alpha'), 'alpha');
      assert.equal(await echo(past, 'alpha'), 'alpha');
    }
    assert.equal(within.stats.replays, 1);
    assert.equal(past.stats.replays, 0);
  });

  test('a value longer than MAX_VALUE_CHARS is not kept', async () => {
    const binding = await bindWarm(await echoModule(DETERMINISTIC));
    const long = 'v'.repeat(MAX_VALUE_CHARS + 1);
    for (let i = 0; i < 3; i++) assert.equal(await echo(binding, long), long);
    assert.equal(binding.stats.replays, 0);
  });

  test('a read after the call wrote is not kept: the module sees its own write, which a replay could not know', async () => {
    // add x-a: 1, then x-b: what x-a reads. A request that already has x-a: 1 reads "1, 1", where the first call
    // read "1": a replay keyed on x-a as the request had it would set x-b to 1.
    const binding = await bindWarm(
      await hostileModule({
        descriptor: DETERMINISTIC,
        data: DATA,
        locals: '(local $r i32)',
        inbound: `
          (drop (call $add (i32.const ${Field.REQUEST_HEADER}) (i32.const ${XA!.ptr}) (i32.const ${XA!.len}) (i32.const ${ONE!.ptr}) (i32.const ${ONE!.len})))
          (local.set $r (call $get (i32.const ${Field.REQUEST_HEADER}) (i32.const ${XA!.ptr}) (i32.const ${XA!.len}) (i32.const ${BUF}) (i32.const 1024)))
          (drop (call $set (i32.const ${Field.REQUEST_HEADER}) (i32.const ${XB!.ptr}) (i32.const ${XB!.len}) (i32.const ${BUF}) (local.get $r)))
          (i32.const 0)`,
      }),
    );
    const first = makeExchange();
    await binding.run('inbound', first);
    assert.equal(first.request.headers.get('x-b')?.[0], '1');
    const second = makeExchange({ headers: { 'x-a': '1' } });
    await binding.run('inbound', second);
    assert.deepEqual(second.request.headers.get('x-a'), ['1', '1']);
    assert.equal(second.request.headers.get('x-b')?.[0], '1, 1');
    assert.equal(binding.stats.replays, 0);
  });

  test('a change whose status differs from the recorded one rolls the replay back, and the module decides', async () => {
    // Adds query parameter a=1 without reading the query, and answers 400 when the host refuses it: the status depends
    // on the query's length, which the module never read.
    const binding = await bindWarm(
      await hostileModule({
        descriptor: DETERMINISTIC,
        data: DATA,
        inbound: `
          (if (call $add (i32.const ${Field.REQUEST_QUERY_PARAM}) (i32.const ${A!.ptr}) (i32.const ${A!.len}) (i32.const ${ONE!.ptr}) (i32.const ${ONE!.len}))
            (then (drop (call $respond (i32.const 400)))))
          (i32.const 0)`,
      }),
    );
    const short = makeExchange({ query: 'b=2' });
    await binding.run('inbound', short);
    assert.equal(short.request.query, 'b=2&a=1');
    const again = makeExchange({ query: 'c=3' });
    await binding.run('inbound', again);
    assert.equal(again.request.query, 'c=3&a=1');
    assert.equal(binding.stats.replays, 1);
    const full = 'b=' + 'x'.repeat(MAX_POLICY_URL_PART - 4);
    const long = makeExchange({ query: full });
    await binding.run('inbound', long);
    assert.equal(long.responded, true, 'the module was called, saw INVALID_VALUE and answered');
    assert.equal(long.response.status, 400);
    assert.equal(long.request.query, full);
    assert.equal(binding.stats.replays, 1);
  });

  test(`a tree of more than ${MAX_CALLS} calls is emptied, and the calls after it are not recorded for a while`, async () => {
    const binding = await bindWarm(await echoModule(DETERMINISTIC));
    for (let i = 0; i <= MAX_CALLS; i++) assert.equal(await echo(binding, `v${i}`), `v${i}`);
    assert.equal(binding.stats.replays, 0);
    // v0 was kept among the first MAX_CALLS, then dropped with the rest; what follows is not recorded.
    for (let i = 0; i < 3; i++) assert.equal(await echo(binding, 'v0'), 'v0');
    assert.equal(binding.stats.replays, 0);
  });
});

describe('what replay keeps in a gateway', () => {
  /** A host whose bindings' replay trees may hold `chars` characters together. */
  const hostWithBudget = (chars: number) =>
    new PolicyHost({
      logger: new Logger(memorySink([]), 'info'),
      effects: new GatewayEffects({ counters: new MemoryCounterStore() }),
      clocks: processClocks,
      replayChars: chars,
    });

  test('the trees of all bindings share one budget: past it, the binding that would go over keeps nothing and rests', async () => {
    // Each call of the echo module reads one value and makes one change: 141 characters kept with its steps, 846 for
    // six; the second binding's first call would take the budget of 900 past it.
    const host = hostWithBudget(900);
    const wasm = await echoModule(DETERMINISTIC);
    const first = await bindWarm(wasm, {}, host);
    for (let i = 0; i < 6; i++) assert.equal(await echo(first, `v${i}`), `v${i}`);
    assert.equal(await echo(first, 'v0'), 'v0');
    assert.equal(first.stats.replays, 1, 'the first binding keeps its six calls');
    const second = await bindWarm(wasm, {}, host);
    for (let i = 0; i < 3; i++) assert.equal(await echo(second, 'w'), 'w');
    assert.equal(second.stats.replays, 0, 'the budget is spent: the second binding keeps nothing');
    assert.equal(await echo(first, 'v5'), 'v5');
    assert.equal(first.stats.replays, 2, 'what the first binding kept stays');
  });

  test('a configuration replaced gives back what its bindings kept, once its requests have left', async () => {
    const host = hostWithBudget(900);
    const wasm = await echoModule(DETERMINISTIC);
    const old = await bindWarm(wasm, {}, host);
    const doc = { version: 1, apis: [{ id: 'a', pathPrefix: '/a', backend: { url: 'http://127.0.0.1:1' } }] } as unknown as GatewayDocument;
    const live = buildLiveConfig(doc, { global: { inbound: [old] }, apis: new Map() }, { source: 'test', echoUrl: 'http://127.0.0.1:1' });
    for (let i = 0; i < 6; i++) assert.equal(await echo(old, `v${i}`), `v${i}`);
    live.enter();
    const retired = live.retire();
    const replacing = await bindWarm(wasm, {}, host);
    assert.equal(await echo(replacing, 'w'), 'w');
    assert.equal(await echo(replacing, 'w'), 'w');
    assert.equal(replacing.stats.replays, 0, 'while a request holds the old configuration, its calls stay kept');
    live.leave();
    await retired;
    const next = await bindWarm(wasm, {}, host);
    for (let i = 0; i < 3; i++) assert.equal(await echo(next, 'w'), 'w');
    assert.equal(next.stats.replays, 2, 'the budget the old bindings held is free again');
  });
});

describe('replayed calls of the built-in policies', () => {
  test('key-auth: each key, a wrong one and none are answered as the module answers them, from replays after the first', async () => {
    const binding = await bindWarm(await buildFixture('key-auth'), {
      config: { keys: [{ id: 'alice', key: 'alice-key-0001' }, { id: 'bob', key: 'bob-key-00001' }], identityHeader: 'x-consumer-id' },
    });
    const bodies = new Map<string, string>();
    const sequence = ['alice-key-0001', 'bob-key-00001', 'wrong-key-0001', null, 'alice-key-0001', 'wrong-key-0001', null, 'bob-key-00001', 'alice-key-0001'];
    for (const key of sequence) {
      const exchange = makeExchange({ headers: key === null ? {} : { 'x-api-key': key } });
      await binding.run('inbound', exchange);
      const who = key === 'alice-key-0001' ? 'alice' : key === 'bob-key-00001' ? 'bob' : null;
      if (who !== null) {
        assert.equal(exchange.responded, false, `key ${key}`);
        assert.equal(exchange.request.headers.get('x-consumer-id')?.[0], who);
        assert.equal(exchange.variables.get('subscription-id'), who);
        assert.equal(exchange.request.headers.has('x-api-key'), false, 'the key is not forwarded');
      } else {
        assert.equal(exchange.responded, true, `key ${key}`);
        assert.equal(exchange.response.status, 401);
        assert.equal(exchange.request.headers.has('x-consumer-id'), false);
        const problem = JSON.parse(new TextDecoder().decode(exchange.response.body!)) as { detail: string; requestId: string };
        assert.equal(problem.requestId, exchange.requestId, 'a refusal names its own request: it is never replayed');
        bodies.set(String(key), problem.detail);
      }
    }
    assert.match(bodies.get('null')!, /missing API key/);
    assert.match(bodies.get('wrong-key-0001')!, /invalid API key/);
    // Alice's second and third calls and Bob's second; a refusal reads the request's id, so the module writes each.
    assert.equal(binding.stats.replays, 3);
  });

  test('set-header with a computed value: a call is replayed only for the value computed for it', async () => {
    const binding = await bindWarm(await buildFixture('set-header'), { config: { name: 'x-who' }, computedKeys: ['value'] });
    const values = ['a', 'b', 'a', 'b', 'c', 'a'];
    for (const value of values) {
      const exchange = makeExchange();
      exchange.computedConfig = new Map([['value', value]]);
      await binding.run('inbound', exchange);
      assert.equal(exchange.request.headers.get('x-who')?.[0], value);
    }
    assert.equal(binding.stats.replays, 3);
  });
});

describe('replay in a gateway', () => {
  let running: GatewayProcess | undefined;
  let dir: string;
  let config: string;
  before(() => {
    dir = tempDir('gatehouse-replay-');
    config = writeConfig(
      dir,
      'gateway.yaml',
      [
        'version: 1',
        'apis:',
        '  - id: echo',
        '    pathPrefix: /echo',
        '    backend: { url: "builtin:echo" }',
        '    policies:',
        '      inbound:',
        '        - policy: key-auth',
        "          config: { keys: [{ id: alice, key: alice-key-0001 }], identityHeader: x-consumer-id }",
        '',
      ].join('\n'),
    );
  });
  after(() => running?.stop());

  async function replaysAfterFive(env: Record<string, string>): Promise<string> {
    await running?.stop();
    const gateway = await startGatewayProcess({ config, env });
    running = gateway;
    for (let i = 0; i < 5; i++) {
      const res = await send(gateway.url, '/echo/x', { headers: { 'x-api-key': 'alice-key-0001' } });
      assert.equal(res.status, 200);
    }
    assert.equal((await send(gateway.url, '/echo/x')).status, 401);
    const metrics = await send(`http://127.0.0.1:${gateway.adminPort}`, '/metrics');
    assert.match(metrics.body, /gatehouse_policy_calls_total\{policy="key-auth"\} 6/);
    return /gatehouse_policy_replays_total\{policy="key-auth"\} (\d+)/.exec(metrics.body)?.[1] ?? 'absent';
  }

  test('its metrics count the replayed calls; GATEHOUSE_POLICY_REPLAY=off calls the module every time', async () => {
    assert.equal(await replaysAfterFive({}), '4');
    assert.equal(await replaysAfterFive({ GATEHOUSE_POLICY_REPLAY: 'off' }), 'absent');
  });

  test('GATEHOUSE_POLICY_REPLAY takes on or off, and names itself otherwise', async () => {
    await assert.rejects(
      startGatewayProcess({ config, env: { GATEHOUSE_POLICY_REPLAY: 'yes' } }),
      /exited with 2 before listening: gatehouse: GATEHOUSE_POLICY_REPLAY=yes must be on or off/,
    );
  });
});
