// How a policy reads its configuration through the SDK: keys named by literals are remembered by address
// (sdk/assembly/index.ts, configValue), so these checks read many keys, many times, on one instance, every way.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildFixture, makeExchange, newHost } from './support/policies.ts';

const KEYS = Array.from({ length: 24 }, (_, i) => `k${i}`);
const config: Record<string, unknown> = { n: 42, flag: true, list: ['a', 'b'], more: ['x'] };
for (const [i, key] of KEYS.entries()) config[key] = `v${i}.`;
const forwards = KEYS.map((_, i) => `v${i}.`).join('');
const backwards = [...KEYS].reverse().map((k) => `v${k.slice(1)}.`).join('');

describe('SDK configuration reads', () => {
  test('literal and built names, typed values, absent keys and arrays stay right over many calls of one instance', async () => {
    const { host } = newHost();
    const binding = host.bind({ id: 'config/0', phase: 'inbound', module: await host.load(await buildFixture('config-reads')), config });
    const run = async (op: string) => {
      const exchange = makeExchange({ headers: { 'x-op': op } });
      await binding.run('inbound', exchange);
      return (name: string) => exchange.request.headers.get(name)?.[0];
    };
    // Interleaved, so that each kind of read meets slots the others filled.
    for (let round = 0; round < 5; round++) {
      const literals = await run('literals');
      assert.equal(literals('x-forwards'), forwards, `round ${round}: literal keys forwards`);
      assert.equal(literals('x-backwards'), backwards, `round ${round}: literal keys backwards`);
      assert.equal((await run('built'))('x-built'), forwards, `round ${round}: keys named at run time`);
      assert.equal((await run('typed'))('x-typed'), '42,true,fallback,has-not', `round ${round}: typed and absent keys`);
      assert.equal((await run('array'))('x-array'), 'a|b;a|b;x', `round ${round}: arrays are copies`);
    }
  });

  test('headers named by literals, by kept names (more strings than the SDK keeps encoded) and by names built anew, and kept and built values, are never confused', async () => {
    const { host } = newHost();
    const binding = host.bind({ id: 'names/0', phase: 'inbound', module: await host.load(await buildFixture('header-names')) });
    const headers: Record<string, string> = {};
    for (let i = 0; i < 40; i++) headers[`h${i}`] = `v${i}.`;
    const values = Array.from({ length: 40 }, (_, i) => `v${i}.`);
    const run = async (op: string) => {
      const exchange = makeExchange({ headers: { ...headers, 'x-op': op } });
      await binding.run('inbound', exchange);
      return exchange;
    };
    for (let round = 0; round < 5; round++) {
      const literals = await run('literals');
      assert.equal(literals.request.headers.get('x-forwards')?.[0], values.join(''), `round ${round}: literal names forwards`);
      assert.equal(literals.request.headers.get('x-backwards')?.[0], [...values].reverse().join(''), `round ${round}: backwards`);
      const set = [...literals.response.headers.keys()].sort();
      assert.deepEqual(set, ['h0', 'h14', 'h21', 'h28', 'h35', 'h7'], `round ${round}: response headers set by literal names`);
      assert.equal(literals.response.headers.get('h35')?.[0], 'set-35');
      assert.equal(literals.request.headers.has('h39'), false, `round ${round}: removed by a literal name`);
      const passes = [0, 1, 2].map((pass) => values.map((_, i) => values[(i + pass * 7) % 40]).join('')).join('');
      const built = await run('built');
      assert.equal(built.request.headers.get('x-built')?.[0], passes, `round ${round}: names built at run time`);
      for (let i = 0; i < 40; i++) assert.deepEqual(built.response.headers.get(`v${i}`), [`p2-${i}`], `round ${round}: value built at run time`);
      const kept = await run('kept');
      assert.equal(kept.request.headers.get('x-kept')?.[0], values.join('').repeat(4), `round ${round}: kept names`);
      assert.deepEqual(kept.response.headers.get('x-kept-values'), Array.from({ length: 160 }, (_, i) => `kept-${i}`), `round ${round}: kept values`);
    }
  });
});
