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
});
