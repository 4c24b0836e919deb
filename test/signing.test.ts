// Module signatures, checked with node:crypto itself: what the control plane signs is exactly
// `gatehouse-module-v1:<sha256 hex>` under its Ed25519 key, and a gateway accepts a signature only from the key it trusts
// and only for the digest it was made for.

import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, test } from 'node:test';
import { ModuleSigner, newSigningKey, signatureValid, signedText, trustedKey } from '../runtime/gateway-api/module-signatures.ts';

const digestA = 'a'.repeat(64);
const digestB = 'b'.repeat(64);

describe('module signing', () => {
  test('a new signing key is an Ed25519 private key in PKCS#8 DER, a different one each time', () => {
    const pkcs8 = newSigningKey();
    const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    assert.equal(key.asymmetricKeyType, 'ed25519');
    assert.notDeepEqual(newSigningKey(), pkcs8);
  });

  test('the signer publishes the public key of its private key, as SPKI PEM', () => {
    const pkcs8 = newSigningKey();
    const signer = new ModuleSigner(pkcs8);
    assert.match(signer.publicKeyPem, /^-----BEGIN PUBLIC KEY-----\n[\s\S]+\n-----END PUBLIC KEY-----\n$/);
    const expected = createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }));
    assert.ok(createPublicKey(signer.publicKeyPem).equals(expected));
  });

  test('what is signed is the labelled digest, nothing else', () => {
    assert.equal(signedText(digestA).toString('utf8'), `gatehouse-module-v1:${digestA}`);
    const signer = new ModuleSigner(newSigningKey());
    const signature = Buffer.from(signer.sign(digestA), 'base64');
    assert.equal(signature.length, 64); // Ed25519
    const publicKey = createPublicKey(signer.publicKeyPem);
    assert.ok(verify(null, Buffer.from(`gatehouse-module-v1:${digestA}`), publicKey, signature));
    assert.ok(!verify(null, Buffer.from(digestA), publicKey, signature), 'a signature of the bare digest would mean more than a module');
  });

  test('a signature checks out with the trusted key, for its own digest only', () => {
    const signer = new ModuleSigner(newSigningKey());
    const trusted = trustedKey(signer.publicKeyPem);
    const signature = signer.sign(digestA);
    assert.equal(signatureValid(trusted, digestA, signature), true);
    assert.equal(signatureValid(trusted, digestB, signature), false);
    assert.equal(signatureValid(trusted, digestA, ''), false);
    assert.equal(signatureValid(trusted, digestA, Buffer.from('short').toString('base64')), false);
    // Another control plane's key, or the same label signed by a key made outside it: not trusted.
    const other = new ModuleSigner(newSigningKey());
    assert.equal(signatureValid(trusted, digestA, other.sign(digestA)), false);
    const { privateKey } = generateKeyPairSync('ed25519');
    assert.equal(signatureValid(trusted, digestA, sign(null, signedText(digestA), privateKey).toString('base64')), false);
  });

  test('a key that cannot verify Ed25519 signatures makes a signature invalid, not an exception', () => {
    // node:crypto throws for a key type without signatures (X25519 is for key agreement).
    const { publicKey } = generateKeyPairSync('x25519');
    const signer = new ModuleSigner(newSigningKey());
    assert.equal(signatureValid(publicKey, digestA, signer.sign(digestA)), false);
  });

  test('the trusted key must be an Ed25519 public key in PEM; anything else is refused, saying why', () => {
    const signer = new ModuleSigner(newSigningKey());
    assert.equal(trustedKey(signer.publicKeyPem).asymmetricKeyType, 'ed25519');
    assert.throws(() => trustedKey('not a key'), /^Error: not a public key in PEM: \S/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'pem', type: 'spki' }) as string;
    assert.throws(() => trustedKey(rsa), /^Error: an Ed25519 public key is needed, not rsa$/);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }) as string;
    assert.throws(() => trustedKey(ec), /^Error: an Ed25519 public key is needed, not ec$/);
  });
});
