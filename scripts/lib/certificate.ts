// A throw-away self-signed certificate for 127.0.0.1 (openssl), for the tests and scripts that speak HTTPS on loopback:
// the gateway's HTTPS listener, an HTTPS control plane, a local Application Insights ingestion endpoint.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Certificate {
  certFile: string;
  keyFile: string;
  /** PEM texts of the two files. */
  cert: string;
  key: string;
}

/**
 * Writes `<name>-cert.pem` and `<name>-key.pem` into `dir`, valid one day, for `subject`: IP 127.0.0.1 unless told
 * otherwise (`DNS:orders.test`).
 */
export function selfSignedCertificate(dir: string, name = 'localhost', subject = 'IP:127.0.0.1'): Certificate {
  const certFile = join(dir, `${name}-cert.pem`);
  const keyFile = join(dir, `${name}-key.pem`);
  const commonName = subject.slice(subject.indexOf(':') + 1);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', `/CN=${commonName}`, '-addext', `subjectAltName=${subject}`],
    { stdio: 'ignore' },
  );
  return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}
