// Header names as policies write and read them through the exchange (the ABI's REQUEST_HEADER and RESPONSE_HEADER
// fields): keyed in lower case whatever case the policy used, found whatever case it asks with, refused when they are
// not HTTP tokens, framing headers read-only.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Field, Status } from '../abi/index.ts';
import { makeExchange } from './support/policies.ts';

describe('header names through the exchange', () => {
  test('a name written in any case is kept in lower case and found in any case', () => {
    const exchange = makeExchange({ headers: { 'x-present': 'here' } });
    for (const field of [Field.REQUEST_HEADER, Field.RESPONSE_HEADER]) {
      assert.equal(exchange.write('set', field, 'X-Mixed-Case', 'one'), Status.OK);
      assert.equal(exchange.write('add', field, 'x-MIXED-case', 'two'), Status.OK);
      const headers = field === Field.REQUEST_HEADER ? exchange.request.headers : exchange.response.headers;
      assert.deepEqual(headers.get('x-mixed-case'), ['one', 'two']);
      assert.equal(headers.has('X-Mixed-Case'), false);
      assert.equal(exchange.read(field, 'X-MIXED-CASE'), 'one, two');
      assert.equal(exchange.read(field, 'x-mixed-case'), 'one, two');
      assert.equal(exchange.write('remove', field, 'X-Mixed-CASE', null), Status.OK);
      assert.equal(headers.has('x-mixed-case'), false);
    }
    assert.equal(exchange.read(Field.REQUEST_HEADER, 'X-Present'), 'here');
  });

  test('a name that is not a token is refused, as is a framing header, and nothing is written', () => {
    const exchange = makeExchange();
    const before = [...exchange.request.headers.keys()];
    // U+212A (Kelvin sign) lower-cases to an ASCII "k": still not a token.
    for (const name of ['', 'x bad', 'x:bad', 'caf\u00e9', '\u212a', 'X-\u212a']) {
      assert.equal(exchange.write('set', Field.REQUEST_HEADER, name, 'v'), Status.INVALID_VALUE, JSON.stringify(name));
      assert.equal(exchange.write('remove', Field.REQUEST_HEADER, name, null), Status.INVALID_VALUE, JSON.stringify(name));
    }
    for (const name of ['Content-Length', 'transfer-encoding', 'CONNECTION']) {
      assert.equal(exchange.write('set', Field.REQUEST_HEADER, name, '1'), Status.READ_ONLY, name);
    }
    assert.deepEqual([...exchange.request.headers.keys()], before);
    // A name that is no token is simply not found when read.
    assert.equal(exchange.read(Field.REQUEST_HEADER, 'caf\u00e9'), null);
  });
});
