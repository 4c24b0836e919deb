// Module signatures: the control plane signs each uploaded policy module with its Ed25519 key; gateways check the
// signature with the public key they trust (GATEHOUSE_TRUSTED_KEY) before loading a module, as well as its sha256.
// What is signed is `gatehouse-module-v1:<sha256 hex>`: the module's digest, under a label that keeps the signature
// from meaning anything else. Signing and checking are kept together, in the gateway API's folder, so that the label
// and the encoding the control plane signs with are the ones gateways check.

import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

export const signedText = (sha256: string) => Buffer.from(`gatehouse-module-v1:${sha256}`);

export function newSigningKey(): Buffer {
  return generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer;
}

export class ModuleSigner {
  private readonly key: KeyObject;
  readonly publicKeyPem: string;

  constructor(pkcs8: Buffer) {
    this.key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    this.publicKeyPem = createPublicKey(this.key).export({ format: 'pem', type: 'spki' }) as string;
  }

  /** base64 Ed25519 signature of the module whose sha256 is `sha256`. */
  sign(sha256: string): string {
    return sign(null, signedText(sha256), this.key).toString('base64');
  }
}

/** Whether `signature` (base64) is the trusted key's signature of the module digest `sha256`. */
export function signatureValid(trusted: KeyObject, sha256: string, signature: string): boolean {
  try {
    return verify(null, signedText(sha256), trusted, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

/** A trusted public key from PEM text. Throws with a readable message when it is not an Ed25519 public key. */
export function trustedKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new Error(`not a public key in PEM: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`an Ed25519 public key is needed, not ${key.asymmetricKeyType}`);
  return key;
}
