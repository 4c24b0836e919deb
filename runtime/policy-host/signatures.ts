// Signature checks for policies (host function `verify`): public-key algorithms of JWS (RFC 7518) with the platform's
// crypto (node:crypto, which Deno also provides), so that a policy checking RS256 or ES256 tokens does not carry its
// own big-number arithmetic. HMAC needs no host: the SDK computes HMAC-SHA-256 inside the module.

import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { Status } from './abi.ts';

interface Algorithm {
  hash: string;
  kty: 'RSA' | 'EC';
  /** EC curve the key must be on. */
  crv?: string;
}

/** JWS algorithms the host checks; ECDSA signatures are r‖s (IEEE P1363), as JWS encodes them. */
const ALGORITHMS: Record<string, Algorithm> = {
  RS256: { hash: 'sha256', kty: 'RSA' },
  RS384: { hash: 'sha384', kty: 'RSA' },
  RS512: { hash: 'sha512', kty: 'RSA' },
  ES256: { hash: 'sha256', kty: 'EC', crv: 'P-256' },
  ES384: { hash: 'sha384', kty: 'EC', crv: 'P-384' },
};

/** Keys parsed from JWK text, by text (a policy checks many tokens against few keys). */
const keys = new Map<string, KeyObject | null>();
const MAX_KEYS = 256;

function publicKey(jwkText: string, alg: Algorithm): KeyObject | null {
  let key = keys.get(jwkText);
  if (key === undefined) {
    key = null;
    try {
      const jwk = JSON.parse(jwkText) as { kty?: unknown; crv?: unknown; d?: unknown };
      // A private key is refused rather than used: it has no business in a policy's configuration.
      if (jwk.kty === alg.kty && (alg.crv === undefined || jwk.crv === alg.crv) && jwk.d === undefined) {
        key = createPublicKey({ key: jwk as never, format: 'jwk' });
      }
    } catch {
      key = null;
    }
    if (keys.size >= MAX_KEYS) keys.clear();
    keys.set(jwkText, key);
  }
  return key;
}

/**
 * 1 when `signature` over `data` checks out with the public key `jwkText` (a JWK) under `alg`, 0 when it does not,
 * INVALID_VALUE when the algorithm is not one of ALGORITHMS or the key is not a public JWK of its type.
 */
export function verifySignature(alg: string, jwkText: string, data: Uint8Array, signature: Uint8Array): number {
  const spec = ALGORITHMS[alg];
  if (!spec) return Status.INVALID_VALUE;
  const key = publicKey(jwkText, spec);
  if (!key) return Status.INVALID_VALUE;
  try {
    const ok = verify(spec.hash, data, spec.kty === 'EC' ? { key, dsaEncoding: 'ieee-p1363' } : key, signature);
    return ok ? 1 : 0;
  } catch {
    return 0; // a signature of the wrong length or shape is simply not valid
  }
}
