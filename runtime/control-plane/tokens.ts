// Gateway tokens: `gw1.<gateway>.<generation>.<expiry>.<signature>`, the signature an HMAC-SHA-256 of the rest under
// the control plane's token key. A token is checked without a lookup of the token itself: the signature proves it was
// made with the token key, the expiry (Unix seconds, at most 30 days after issue, as Azure API Management allows)
// bounds it, and the generation lets an operator revoke every token of a gateway at once (the gateway's generation is
// raised; older tokens stop matching).
//
// The lifetime is checked on use too, not only at issue: a token expiring further ahead than any token is issued for
// was not made by this control plane's admin API (the token key was used elsewhere, or the clock that issued it was
// far ahead), and accepting it would let it outlive every rotation by its own expiry.

import { createHmac, timingSafeEqual } from 'node:crypto';

export const MAX_TOKEN_DAYS = 30;
/**
 * How far past now + MAX_TOKEN_DAYS an expiry may be and still be accepted: the clocks of control plane replicas (one
 * issues, another checks) differ by this much at most when they are kept by NTP, with a wide margin.
 */
export const MAX_CLOCK_SKEW_SECONDS = 300;
const PREFIX = 'gw1';
const ID = /^[a-z0-9][a-z0-9-]{0,62}$/;

export interface TokenClaims {
  gateway: string;
  generation: number;
  /** Unix seconds. */
  expires: number;
}

/**
 * Why a token is refused: `lifetime-exceeded` is a correctly signed token whose expiry is more than MAX_TOKEN_DAYS
 * (plus MAX_CLOCK_SKEW_SECONDS) from now.
 */
export type TokenRefusal = 'malformed' | 'forged' | 'expired' | 'lifetime-exceeded';

export type TokenCheck =
  | { ok: true; claims: TokenClaims }
  | { ok: false; reason: Exclude<TokenRefusal, 'lifetime-exceeded'> }
  /** Signed with the token key, so its claims are known: they name the gateway in the refusal. */
  | { ok: false; reason: 'lifetime-exceeded'; claims: TokenClaims };

function sign(key: Buffer, body: string): string {
  return createHmac('sha256', key).update(body).digest('base64url');
}

export function issueToken(key: Buffer, claims: TokenClaims): string {
  if (!ID.test(claims.gateway)) throw new Error(`gateway id ${JSON.stringify(claims.gateway)} is not valid`);
  const body = `${PREFIX}.${claims.gateway}.${claims.generation}.${claims.expires}`;
  return `${body}.${sign(key, body)}`;
}

/**
 * Checks the signature first (so nothing about a forged token is believed), then the expiry against `nowSeconds`:
 * passed, or further ahead than a token is ever issued for.
 */
export function checkToken(key: Buffer, token: string, nowSeconds: number): TokenCheck {
  const parts = token.split('.');
  if (parts.length !== 5 || parts[0] !== PREFIX || !ID.test(parts[1]!) || !/^\d{1,9}$/.test(parts[2]!) || !/^\d{1,12}$/.test(parts[3]!)) {
    return { ok: false, reason: 'malformed' };
  }
  const body = parts.slice(0, 4).join('.');
  const given = Buffer.from(parts[4]!);
  const expected = Buffer.from(sign(key, body));
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'forged' };
  const claims = { gateway: parts[1]!, generation: Number(parts[2]), expires: Number(parts[3]) };
  if (claims.expires <= nowSeconds) return { ok: false, reason: 'expired' };
  if (claims.expires > nowSeconds + MAX_TOKEN_DAYS * 86_400 + MAX_CLOCK_SKEW_SECONDS) return { ok: false, reason: 'lifetime-exceeded', claims };
  return { ok: true, claims };
}

/**
 * What a token says, unverified: for its holder (a gateway warns before its own token expires). The control plane
 * believes nothing of a token before `checkToken`.
 */
export function readClaims(token: string): TokenClaims | null {
  const parts = token.split('.');
  if (parts.length !== 5 || parts[0] !== PREFIX || !/^\d{1,12}$/.test(parts[3] ?? '')) return null;
  return { gateway: parts[1]!, generation: Number(parts[2]), expires: Number(parts[3]) };
}
