// Gateway tokens: `gw2.<gateway>.<generation>.<expiry>.<id>.<signature>`, the signature an HMAC-SHA-256 of the rest
// under the control plane's token key.
// - The signature proves the token was made with the token key; nothing else in a token is believed before it checks.
// - The expiry (Unix seconds, at most 30 days after issue, as Azure API Management allows) bounds it.
// - The id (random, so two tokens issued in the same second differ) is the token's row in the control plane's store:
//   a token is accepted only while that row exists and is not revoked, so one token can be revoked while others of
//   the same gateway stay valid (rotation: issue a new one, roll it out, revoke the old one).
// - The generation lets an operator revoke every token of a gateway at once (the gateway's generation is raised;
//   older tokens stop matching).
//
// Tokens of the earlier format, `gw1.<gateway>.<generation>.<expiry>.<signature>` (no id, so no row), are still
// accepted when signed, unexpired and of the gateway's current generation: gateways running when the control plane is
// upgraded keep their configuration. Their expiry bounds them as before, and raising the generation revokes them. New
// tokens are always `gw2`.
//
// The lifetime is checked on use too, not only at issue: a token expiring further ahead than any token is issued for
// was not made by this control plane's admin API (the token key was used elsewhere, or the clock that issued it was
// far ahead), and accepting it would let it outlive every rotation by its own expiry.
//
// The format is the gateway API's, so both sides use this file: the control plane issues and checks tokens (keeping a
// row for each in its store), and a gateway reads the claims of its own (readClaims) to warn before it expires and to
// tell a whole token in its token file from one caught half-written.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const MAX_TOKEN_DAYS = 30;
/**
 * How far past now + MAX_TOKEN_DAYS an expiry may be and still be accepted: the clocks of control plane replicas (one
 * issues, another checks) differ by this much at most when they are kept by NTP, with a wide margin.
 */
export const MAX_CLOCK_SKEW_SECONDS = 300;
const PREFIX = 'gw2';
const ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** A token id: 64 random bits in hex (never starts with a dash, so it cannot be taken for a command-line flag). */
export const TOKEN_ID = /^[0-9a-f]{16}$/;
/** The whole token, signature included (base64url of 32 bytes): a file caught half-written does not match. */
const SHAPE = /^gw2\.[a-z0-9][a-z0-9-]{0,62}\.\d{1,9}\.\d{1,12}\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/;
/** A whole token of the earlier format: no id. */
const EARLIER_SHAPE = /^gw1\.[a-z0-9][a-z0-9-]{0,62}\.\d{1,9}\.\d{1,12}\.[A-Za-z0-9_-]{43}$/;

export interface TokenClaims {
  gateway: string;
  generation: number;
  /** Unix seconds. */
  expires: number;
  /**
   * The token's id: how it is listed, and revoked on its own. Null for a token of the earlier format (`gw1.`), which
   * has none: it is revoked only with every token of its gateway.
   */
  id: string | null;
}

/**
 * Why a token is refused: `lifetime-exceeded` is a correctly signed token whose expiry is more than MAX_TOKEN_DAYS
 * (plus MAX_CLOCK_SKEW_SECONDS) from now. `revoked` is decided by the store, not here.
 */
export type TokenRefusal = 'malformed' | 'forged' | 'expired' | 'lifetime-exceeded';

export type TokenCheck =
  | { ok: true; claims: TokenClaims }
  | { ok: false; reason: 'malformed' | 'forged' | 'expired' }
  /** Signed with the token key, so its claims are known: they name the gateway in the refusal. */
  | { ok: false; reason: 'lifetime-exceeded'; claims: TokenClaims };

function sign(key: Buffer, body: string): string {
  return createHmac('sha256', key).update(body).digest('base64url');
}

/** A new token id (the store's primary key makes a repeat fail loudly rather than share a row). */
export function newTokenId(): string {
  return randomBytes(8).toString('hex');
}

export function issueToken(key: Buffer, claims: TokenClaims & { id: string }): string {
  if (!ID.test(claims.gateway)) throw new Error(`gateway id ${JSON.stringify(claims.gateway)} is not valid`);
  if (!TOKEN_ID.test(claims.id)) throw new Error(`token id ${JSON.stringify(claims.id)} is not 16 hex digits`);
  const body = `${PREFIX}.${claims.gateway}.${claims.generation}.${claims.expires}.${claims.id}`;
  return `${body}.${sign(key, body)}`;
}

function parse(token: string): TokenClaims | null {
  const earlier = EARLIER_SHAPE.test(token);
  if (!earlier && !SHAPE.test(token)) return null;
  const parts = token.split('.');
  return { gateway: parts[1]!, generation: Number(parts[2]), expires: Number(parts[3]), id: earlier ? null : parts[4]! };
}

/**
 * Checks the signature first (so nothing about a forged token is believed), then the expiry against `nowSeconds`:
 * passed, or further ahead than a token is ever issued for. Whether the token was revoked is the store's to say.
 */
export function checkToken(key: Buffer, token: string, nowSeconds: number): TokenCheck {
  const claims = parse(token);
  if (!claims) return { ok: false, reason: 'malformed' };
  const cut = token.lastIndexOf('.');
  const given = Buffer.from(token.slice(cut + 1));
  const expected = Buffer.from(sign(key, token.slice(0, cut)));
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'forged' };
  if (claims.expires <= nowSeconds) return { ok: false, reason: 'expired' };
  if (claims.expires > nowSeconds + MAX_TOKEN_DAYS * 86_400 + MAX_CLOCK_SKEW_SECONDS) return { ok: false, reason: 'lifetime-exceeded', claims };
  return { ok: true, claims };
}

/**
 * What a token says, unverified, or null when it is not shaped as a token: for its holder (a gateway warns before its
 * own token expires, and does not switch to a token file's content that is not a whole token). The control plane
 * believes nothing of a token before `checkToken`.
 */
export function readClaims(token: string): TokenClaims | null {
  return parse(token);
}
