// Signature checks for policies (host function `verify`): public-key algorithms of JWS (RFC 7518) with the platform's
// crypto (node:crypto, which Deno also provides), so that a policy checking RS256 or ES256 tokens does not carry its
// own big-number arithmetic. HMAC needs no host: the SDK computes HMAC-SHA-256 inside the module.

import { Buffer } from 'node:buffer';
import { constants, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { Status } from '../../abi/index.ts';

interface Algorithm {
  hash: string;
  kty: 'RSA' | 'EC';
  /** EC curve the key must be on. */
  crv?: string;
  /** RSASSA-PSS (RFC 7518, 3.5): MGF1 with the same hash, a salt as long as the hash. */
  pss?: true;
}

/** JWS algorithms the host checks; ECDSA signatures are r‖s (IEEE P1363), as JWS encodes them. */
const ALGORITHMS: Record<string, Algorithm> = {
  RS256: { hash: 'sha256', kty: 'RSA' },
  RS384: { hash: 'sha384', kty: 'RSA' },
  RS512: { hash: 'sha512', kty: 'RSA' },
  PS256: { hash: 'sha256', kty: 'RSA', pss: true },
  PS384: { hash: 'sha384', kty: 'RSA', pss: true },
  PS512: { hash: 'sha512', kty: 'RSA', pss: true },
  ES256: { hash: 'sha256', kty: 'EC', crv: 'P-256' },
  ES384: { hash: 'sha384', kty: 'EC', crv: 'P-384' },
};

/** Keys parsed from JWK text, by text (a policy checks many tokens against few keys). */
const keys = new Map<string, KeyObject | null>();
const MAX_KEYS = 256;
/** A public JWK's text is a few hundred bytes (2 KiB for an 8192-bit RSA key); longer text is not parsed or kept. */
const MAX_JWK_CHARS = 16 * 1024;

/**
 * RSA keys the host accepts, as the common WebCrypto and TLS profiles do: moduli of 2048 bits (RFC 7518's minimum
 * for RS256-RS512 and PS256-PS512) to 8192 bits, and public exponents of at most 32 bits, odd and above 1. Verification costs time
 * in proportion to the exponent's length and the square of the modulus's: node:crypto accepts an exponent as long as
 * the modulus, and a verification with one takes about 10 ms, which a policy could repeat in a loop.
 */
const RSA_MIN_MODULUS_BITS = 2048;
const RSA_MAX_MODULUS_BITS = 8192;
const RSA_MAX_EXPONENT_BITS = 32;

/** Bits of a big-endian unsigned integer in base64url, or null when it is not base64url. */
function integerBits(base64url: unknown): number | null {
  if (typeof base64url !== 'string' || !/^[A-Za-z0-9_-]+$/.test(base64url)) return null;
  const bytes = Buffer.from(base64url, 'base64url');
  let i = 0;
  while (i < bytes.length && bytes[i] === 0) i++;
  if (i === bytes.length) return 0;
  return (bytes.length - i - 1) * 8 + (32 - Math.clz32(bytes[i]!));
}

/** Whether an RSA JWK's modulus and exponent are within what the host accepts. */
function rsaKeyAccepted(jwk: { n?: unknown; e?: unknown }): boolean {
  const modulus = integerBits(jwk.n);
  const exponent = integerBits(jwk.e);
  if (modulus === null || exponent === null) return false;
  if (modulus < RSA_MIN_MODULUS_BITS || modulus > RSA_MAX_MODULUS_BITS || exponent < 2 || exponent > RSA_MAX_EXPONENT_BITS) return false;
  const e = Buffer.from(jwk.e as string, 'base64url');
  return (e[e.length - 1]! & 1) === 1;
}

function publicKey(jwkText: string, alg: Algorithm): KeyObject | null {
  if (jwkText.length > MAX_JWK_CHARS) return null;
  let key = keys.get(jwkText);
  if (key === undefined) {
    key = null;
    try {
      const jwk = JSON.parse(jwkText) as { kty?: unknown; crv?: unknown; d?: unknown; n?: unknown; e?: unknown };
      // A private key is refused rather than used: it has no business in a policy's configuration.
      const usable =
        jwk.kty === alg.kty &&
        (alg.crv === undefined || jwk.crv === alg.crv) &&
        jwk.d === undefined &&
        (alg.kty !== 'RSA' || rsaKeyAccepted(jwk));
      if (usable) key = createPublicKey({ key: jwk as never, format: 'jwk' });
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
    const options =
      spec.kty === 'EC'
        ? { key, dsaEncoding: 'ieee-p1363' as const }
        : spec.pss
          ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
          : key;
    const ok = verify(spec.hash, data, options, signature);
    return ok ? 1 : 0;
  } catch {
    return 0; // a signature of the wrong length or shape is simply not valid
  }
}
