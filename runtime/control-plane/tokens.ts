// Gateway tokens: `gw1.<gateway>.<generation>.<expiry>.<signature>`, the signature an HMAC-SHA-256 of the rest under
// the control plane's token key. A token is checked without a lookup of the token itself: the signature proves the
// control plane issued it, the expiry (Unix seconds, at most 30 days after issue, as Azure API Management allows)
// bounds it, and the generation lets an operator revoke every token of a gateway at once (the gateway's generation is
// raised; older tokens stop matching).

import { createHmac, timingSafeEqual } from 'node:crypto';

export const MAX_TOKEN_DAYS = 30;
const PREFIX = 'gw1';
const ID = /^[a-z0-9][a-z0-9-]{0,62}$/;

export interface TokenClaims {
  gateway: string;
  generation: number;
  /** Unix seconds. */
  expires: number;
}

export type TokenCheck = { ok: true; claims: TokenClaims } | { ok: false; reason: 'malformed' | 'forged' | 'expired' };

function sign(key: Buffer, body: string): string {
  return createHmac('sha256', key).update(body).digest('base64url');
}

export function issueToken(key: Buffer, claims: TokenClaims): string {
  if (!ID.test(claims.gateway)) throw new Error(`gateway id ${JSON.stringify(claims.gateway)} is not valid`);
  const body = `${PREFIX}.${claims.gateway}.${claims.generation}.${claims.expires}`;
  return `${body}.${sign(key, body)}`;
}

/** Checks the signature first (so nothing about a forged token is believed), then the expiry against `nowSeconds`. */
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
