// Gateway tokens, made and checked with a token key of the test's own and a clock of its own: what is refused, and why
// (a token not shaped as one is `malformed` even when its signature is right; one not signed with the key is `forged`;
// then the expiry, both ways).

import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  checkToken,
  issueToken,
  MAX_CLOCK_SKEW_SECONDS,
  MAX_TOKEN_DAYS,
  newTokenId,
  readClaims,
  TOKEN_ID,
  type TokenClaims,
} from '../runtime/gateway-api/tokens.ts';
import { earlierFormatToken } from './support/token-key.ts';

const key = randomBytes(32);
const now = 1_800_000_000;
const day = 86_400;
const id = '0123456789abcdef';
/** Claims as issued: a gw2 token always has an id. */
type IssuedClaims = TokenClaims & { id: string };
const claims = (over: Partial<IssuedClaims> = {}): IssuedClaims => ({ gateway: 'edge-1', generation: 3, expires: now + day, id, ...over });
/** Any body, signed with `key` as the control plane signs tokens: to make tokens of shapes `issueToken` refuses. */
const signed = (body: string, withKey = key) => `${body}.${createHmac('sha256', withKey).update(body).digest('base64url')}`;

describe('gateway tokens', () => {
  test('an issued token reads back as its claims and checks out until it expires', () => {
    const token = issueToken(key, claims());
    assert.match(token, /^gw2\.edge-1\.3\.1800086400\.0123456789abcdef\.[A-Za-z0-9_-]{43}$/);
    assert.equal(token, signed(`gw2.edge-1.3.${now + day}.${id}`));
    assert.deepEqual(readClaims(token), claims());
    assert.deepEqual(checkToken(key, token, now), { ok: true, claims: claims() });
    assert.deepEqual(checkToken(key, token, now + day - 1), { ok: true, claims: claims() });
    assert.deepEqual(checkToken(key, token, now + day), { ok: false, reason: 'expired' });
    assert.deepEqual(checkToken(key, token, now + day + 1), { ok: false, reason: 'expired' });
  });

  test('a token id is 16 hex digits, a new one each time', () => {
    const ids = new Set(Array.from({ length: 20 }, () => newTokenId()));
    assert.equal(ids.size, 20);
    for (const made of ids) assert.match(made, TOKEN_ID);
    for (const bad of ['0123456789abcde', '0123456789abcdef0', '0123456789ABCDEF', '-123456789abcdef', 'x0123456789abcdef', '0123456789abcdefx']) {
      assert.equal(TOKEN_ID.test(bad), false, bad);
    }
  });

  test('issuing refuses a gateway id or token id that could not be read back', () => {
    for (const gateway of ['', 'Edge', '-edge', 'edge.1', 'edge_1', `e${'x'.repeat(63)}`, ' edge', 'edge ']) {
      assert.throws(() => issueToken(key, claims({ gateway })), { message: `gateway id ${JSON.stringify(gateway)} is not valid` });
    }
    for (const gateway of ['e', '0', 'edge-1', `e${'x'.repeat(62)}`, 'a-']) assert.ok(issueToken(key, claims({ gateway })));
    for (const bad of ['0123456789abcde', 'zzzzzzzzzzzzzzzz']) {
      assert.throws(() => issueToken(key, claims({ id: bad })), { message: `token id "${bad}" is not 16 hex digits` });
    }
  });

  test('a token signed with another key, or altered after signing, is forged', () => {
    const token = issueToken(key, claims());
    assert.deepEqual(checkToken(randomBytes(32), token, now), { ok: false, reason: 'forged' });
    assert.deepEqual(checkToken(key, signed(`gw2.edge-1.3.${now + day}.${id}`, randomBytes(32)), now), { ok: false, reason: 'forged' });
    // Each claim raised after signing, the signature left as it was.
    const [, , , , , signature] = token.split('.');
    for (const body of [`gw2.edge-2.3.${now + day}.${id}`, `gw2.edge-1.4.${now + day}.${id}`, `gw2.edge-1.3.${now + 2 * day}.${id}`, `gw2.edge-1.3.${now + day}.fedcba9876543210`]) {
      assert.deepEqual(checkToken(key, `${body}.${signature}`, now), { ok: false, reason: 'forged' }, body);
    }
    // One character of the signature changed.
    const last = token.at(-1) === 'A' ? 'B' : 'A';
    assert.deepEqual(checkToken(key, `${token.slice(0, -1)}${last}`, now), { ok: false, reason: 'forged' });
  });

  test('a string not shaped as a whole token is malformed, even when signed with the key', () => {
    const good = `gw2.edge-1.3.${now + day}.${id}`;
    const bodies = [
      `gw3.edge-1.3.${now + day}.${id}`,
      `xgw2.edge-1.3.${now + day}.${id}`,
      `gw2.Edge-1.3.${now + day}.${id}`,
      `gw2.-edge.3.${now + day}.${id}`,
      `gw2.edge_1.3.${now + day}.${id}`,
      `gw2.e${'x'.repeat(63)}.3.${now + day}.${id}`,
      `gw2..3.${now + day}.${id}`,
      `gw2.edge-1.1234567890.${now + day}.${id}`,
      `gw2.edge-1..${now + day}.${id}`,
      `gw2.edge-1.-3.${now + day}.${id}`,
      `gw2.edge-1.3.1234567890123.${id}`,
      `gw2.edge-1.3..${id}`,
      `gw2.edge-1.3.${now + day}.0123456789abcde`,
      `gw2.edge-1.3.${now + day}.0123456789abcdef0`,
      `gw2.edge-1.3.${now + day}.0123456789ABCDEF`,
      `gw2.edge-1.3.${now + day}`,
    ];
    for (const body of bodies) {
      const token = signed(body);
      assert.deepEqual(checkToken(key, token, now), { ok: false, reason: 'malformed' }, body);
      assert.equal(readClaims(token), null, body);
    }
    const token = signed(good);
    // Cut short (a token file caught half-written), longer, padded, or with its signature in another alphabet.
    for (const bad of [token.slice(0, -1), `${token}A`, ` ${token}`, `${token}\n`, `${token.slice(0, -1)}=`, `${token.slice(0, -1)}+`, `${token.slice(0, -1)}/`, '']) {
      assert.deepEqual(checkToken(key, bad, now), { ok: false, reason: 'malformed' }, JSON.stringify(bad));
      assert.equal(readClaims(bad), null, JSON.stringify(bad));
    }
    // The widest claims that still read: 63-character gateway, 9-digit generation, 12-digit expiry.
    const widest = signed(`gw2.e${'x'.repeat(62)}.999999999.${now + day}.${id}`);
    assert.equal(checkToken(key, widest, now).ok, true);
    assert.deepEqual(readClaims(signed(`gw2.0.0.999999999999.${id}`)), { gateway: '0', generation: 0, expires: 999_999_999_999, id });
  });

  test('an expiry further ahead than any token is issued for is refused, naming the claims; within the clock skew it is not', () => {
    const limit = now + MAX_TOKEN_DAYS * day + MAX_CLOCK_SKEW_SECONDS;
    assert.equal(MAX_TOKEN_DAYS, 30);
    assert.equal(MAX_CLOCK_SKEW_SECONDS, 300);
    assert.deepEqual(checkToken(key, issueToken(key, claims({ expires: limit })), now), { ok: true, claims: claims({ expires: limit }) });
    assert.deepEqual(checkToken(key, issueToken(key, claims({ expires: limit + 1 })), now), {
      ok: false,
      reason: 'lifetime-exceeded',
      claims: claims({ expires: limit + 1 }),
    });
  });

  test('a token of the earlier format (no id) checks out with a null id; altered, it is forged; its shape is checked as strictly', () => {
    const token = earlierFormatToken(key, 'edge-1', 3, now + day);
    const earlier = { gateway: 'edge-1', generation: 3, expires: now + day, id: null };
    assert.deepEqual(readClaims(token), earlier);
    assert.deepEqual(checkToken(key, token, now), { ok: true, claims: earlier });
    assert.deepEqual(checkToken(key, token, now + day), { ok: false, reason: 'expired' });
    // The widest generation that still reads: 9 digits.
    assert.deepEqual(readClaims(earlierFormatToken(key, 'edge-1', 999_999_999, now + day)), { ...earlier, generation: 999_999_999 });
    assert.deepEqual(checkToken(key, earlierFormatToken(randomBytes(32), 'edge-1', 3, now + day), now), { ok: false, reason: 'forged' });
    assert.deepEqual(checkToken(key, earlierFormatToken(key, 'edge-1', 3, now + MAX_TOKEN_DAYS * day + MAX_CLOCK_SKEW_SECONDS + 1), now), {
      ok: false,
      reason: 'lifetime-exceeded',
      claims: { ...earlier, expires: now + MAX_TOKEN_DAYS * day + MAX_CLOCK_SKEW_SECONDS + 1 },
    });
    for (const body of [
      `gw1.Edge.3.${now + day}`,
      `gw1.-edge.3.${now + day}`,
      `gw1.e${'x'.repeat(63)}.3.${now + day}`,
      `gw1.edge-1.1234567890.${now + day}`,
      `gw1.edge-1.3.1234567890123`,
      `gw1.edge-1.3.${now + day}.${id}`,
      `xgw1.edge-1.3.${now + day}`,
    ]) {
      assert.deepEqual(checkToken(key, signed(body), now), { ok: false, reason: 'malformed' }, body);
    }
    for (const bad of [token.slice(0, -1), `${token}A`, `${token}\n`, ` ${token}`, `${token.slice(0, -1)}=`]) {
      assert.equal(readClaims(bad), null, JSON.stringify(bad));
    }
  });
});
