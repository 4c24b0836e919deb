// The exchange's undo journal: a call that fails or waits for effects leaves the request and response exactly as the
// call found them, whatever it changed and in whatever order; a committed call keeps its changes.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Field } from '../abi/index.ts';
import type { PolicyBinding } from '../runtime/policy-host/index.ts';
import type { WriteOp } from '../runtime/policy-host/instance.ts';
import type { Exchange } from '../runtime/policy-host/exchange.ts';
import { buildFixture, makeExchange, newHost } from './support/policies.ts';

let binding: PolicyBinding;

before(async () => {
  const { host } = newHost();
  binding = host.bind({ id: 'api:journal/inbound/0', phase: 'inbound', module: await host.load(await buildFixture('header-ops')) });
});

/** Everything a call may change, as plain values (maps as sorted entries, header values copied). */
function snapshot(exchange: Exchange) {
  const entries = <V>(map: Map<string, V>) => [...map.entries()].map(([k, v]) => [k, Array.isArray(v) ? [...v] : v]).sort();
  return {
    method: exchange.request.method,
    path: exchange.request.path,
    query: exchange.request.query,
    requestHeaders: entries(exchange.request.headers),
    status: exchange.response.status,
    responseHeaders: entries(exchange.response.headers),
    responded: exchange.responded,
    variables: entries(exchange.variables),
    backendUrl: exchange.backendUrl,
  };
}

function fresh(): Exchange {
  const exchange = makeExchange({
    method: 'GET',
    path: '/orders/7',
    query: 'a=1&b=2',
    headers: { accept: 'text/plain', 'x-kept': 'one', 'x-gone': 'bye', 'x-listed': 'first' },
  });
  exchange.variables.set('tenant', 'acme');
  exchange.response.headers.set('cache-control', ['no-store']);
  return exchange;
}

/** Every kind of change, several to the same places, some undoing others. */
const CHANGES: Array<[WriteOp, number, string, string | null]> = [
  ['set', Field.REQUEST_METHOD, '', 'post'],
  ['set', Field.REQUEST_PATH, '', '/v2/orders/7'],
  ['set', Field.REQUEST_PATH, '', '/v3/orders/7'],
  ['set', Field.REQUEST_QUERY_PARAM, 'a', '9'],
  ['remove', Field.REQUEST_QUERY_PARAM, 'b', null],
  ['set', Field.REQUEST_HEADER, 'X-Kept', 'two'],
  ['add', Field.REQUEST_HEADER, 'x-kept', 'three'],
  ['add', Field.REQUEST_HEADER, 'x-listed', 'second'],
  ['add', Field.REQUEST_HEADER, 'x-listed', 'third'],
  ['remove', Field.REQUEST_HEADER, 'x-gone', null],
  ['set', Field.REQUEST_HEADER, 'x-gone', 'back again'],
  ['set', Field.REQUEST_HEADER, 'x-new', 'fresh'],
  ['add', Field.RESPONSE_HEADER, 'vary', 'Origin'],
  ['remove', Field.RESPONSE_HEADER, 'cache-control', null],
  ['set', Field.VARIABLE, 'tenant', 'globex'],
  ['set', Field.VARIABLE, 'user', 'u1'],
  ['remove', Field.VARIABLE, 'user', null],
  ['set', Field.RESPONSE_STATUS, '', '203'],
];

function changeEverything(exchange: Exchange): void {
  for (const [op, field, name, value] of CHANGES) assert.equal(exchange.write(op, field, name, value), 0, `${op} ${field} ${name}`);
  assert.equal(exchange.respond(418), 0);
}

describe('the exchange undo journal', () => {
  test('a rolled-back call leaves every field as it found it, header value lists included', () => {
    const exchange = fresh();
    const before = snapshot(exchange);
    const listed = exchange.request.headers.get('x-listed')!;
    exchange.begin(binding);
    changeEverything(exchange);
    assert.notDeepEqual(snapshot(exchange), before);
    exchange.rollback();
    assert.deepEqual(snapshot(exchange), before);
    assert.deepEqual(listed, ['first'], 'values appended to a header in place are taken off again');
  });

  test('a committed call keeps its changes; a later call that rolls back undoes only its own', () => {
    const exchange = fresh();
    exchange.begin(binding);
    assert.equal(exchange.write('set', Field.REQUEST_HEADER, 'x-kept', 'committed'), 0);
    assert.equal(exchange.write('add', Field.REQUEST_HEADER, 'x-listed', 'committed'), 0);
    exchange.commit();
    const afterFirst = snapshot(exchange);
    exchange.begin(binding);
    changeEverything(exchange);
    exchange.rollback();
    assert.deepEqual(snapshot(exchange), afterFirst);
    assert.deepEqual(exchange.request.headers.get('x-kept'), ['committed']);
    assert.deepEqual(exchange.request.headers.get('x-listed'), ['first', 'committed']);
  });

  test('rolling back twice, or after a commit, changes nothing more', () => {
    const exchange = fresh();
    exchange.begin(binding);
    changeEverything(exchange);
    exchange.commit();
    const committed = snapshot(exchange);
    exchange.rollback();
    assert.deepEqual(snapshot(exchange), committed);
    exchange.begin(binding);
    assert.equal(exchange.write('set', Field.VARIABLE, 'tenant', 'initech'), 0);
    exchange.rollback();
    exchange.rollback();
    assert.deepEqual(snapshot(exchange), committed);
  });

  test('once a call ends, its journal holds nothing it replaced: a body replaced is not kept for the exchange\'s life', async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    assert.ok(gc, 'the suites run with --expose-gc');
    const exchange = fresh();
    const replacedBy = (end: 'commit' | 'rollback') => {
      const body = new Uint8Array(1024);
      exchange.response.body = body;
      exchange.begin(binding);
      assert.equal(exchange.write('set', Field.RESPONSE_BODY, '', new Uint8Array(1)), 0);
      exchange[end]();
      return new WeakRef(body);
    };
    const committed = replacedBy('commit');
    // After a rollback the body is back in the exchange; replaced again outside a call, nothing may hold it.
    const rolledBack = replacedBy('rollback');
    exchange.response.body = null;
    await new Promise((resolve) => setImmediate(resolve));
    gc!();
    assert.equal(committed.deref(), undefined, 'the body a committed call replaced');
    assert.equal(rolledBack.deref(), undefined, 'the body a rolled-back call put back, then let go of');
  });

  test('a body a call writes goes without the Content-Encoding of the body it replaced; a rollback puts both back', () => {
    const exchange = fresh();
    const backendBody = new Uint8Array([0x1f, 0x8b, 8]);
    exchange.response.body = backendBody;
    exchange.response.headers.set('content-encoding', ['gzip']);
    exchange.begin(binding);
    assert.equal(exchange.write('set', Field.RESPONSE_BODY, '', new TextEncoder().encode('plain')), 0);
    assert.equal(exchange.response.headers.has('content-encoding'), false);
    exchange.rollback();
    assert.equal(exchange.response.body, backendBody);
    assert.deepEqual(exchange.response.headers.get('content-encoding'), ['gzip']);
    // A policy that encodes what it writes sets the header after the body, and keeps it.
    exchange.begin(binding);
    assert.equal(exchange.write('set', Field.RESPONSE_BODY, '', backendBody), 0);
    assert.equal(exchange.write('set', Field.RESPONSE_HEADER, 'content-encoding', 'gzip'), 0);
    exchange.commit();
    assert.deepEqual(exchange.response.headers.get('content-encoding'), ['gzip']);
  });

  test('changes made outside a call (by the gateway) are not journaled: a later rollback keeps them', () => {
    const exchange = fresh();
    assert.equal(exchange.write('set', Field.REQUEST_HEADER, 'x-gateway', 'set outside'), 0);
    exchange.begin(binding);
    assert.equal(exchange.write('set', Field.REQUEST_HEADER, 'x-policy', 'set inside'), 0);
    exchange.rollback();
    assert.deepEqual(exchange.request.headers.get('x-gateway'), ['set outside']);
    assert.equal(exchange.request.headers.has('x-policy'), false);
  });
});
