// The Application Insights ingestion endpoint of `npm run bench:proxy` (target `gatehouse-ai`): HTTPS on 127.0.0.1 with
// a self-signed certificate made by openssl, answering every batch as accepted. It runs in the harness's process and
// does as little as it can (no JSON parsing: it counts envelopes by their type names in the raw bytes), so that the
// CPU it takes from the machine's two cores stays small beside the gateway's.

import { createServer } from 'node:https';
import { selfSignedCertificate } from '../lib/certificate.ts';
import type { AddressInfo } from 'node:net';

export interface BenchIngestionEndpoint {
  port: number;
  /** The certificate the gateway must trust (NODE_EXTRA_CA_CERTS). */
  certFile: string;
  /** A connection string pointing at this endpoint. */
  connectionString: string;
  /** Request envelopes received so far (the gateway sends one per request it answers). */
  requests(): number;
  /** Every envelope and POST received so far. */
  totals(): { envelopes: number; posts: number; bytes: number };
  close(): Promise<void>;
}

const REQUEST = Buffer.from('"Microsoft.ApplicationInsights.Request"');
const ANY = Buffer.from('"Microsoft.ApplicationInsights.');

function occurrences(haystack: Buffer, needle: Buffer): number {
  let n = 0;
  for (let at = haystack.indexOf(needle); at >= 0; at = haystack.indexOf(needle, at + needle.length)) n++;
  return n;
}

export async function startBenchIngestionEndpoint(dir: string): Promise<BenchIngestionEndpoint> {
  const { certFile, cert, key } = selfSignedCertificate(dir, 'ingestion');
  const counts = { requests: 0, envelopes: 0, posts: 0, bytes: 0 };
  const server = createServer({ cert, key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      // The gateway's exporter (as the SDK did) compresses only for Azure's own hosts: what reaches 127.0.0.1 is plain JSON.
      const body = Buffer.concat(chunks);
      const envelopes = occurrences(body, ANY);
      counts.posts++;
      counts.bytes += body.length;
      counts.envelopes += envelopes;
      counts.requests += occurrences(body, REQUEST);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"itemsReceived":${envelopes},"itemsAccepted":${envelopes},"errors":[]}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    certFile,
    connectionString: `InstrumentationKey=00000000-0000-4000-8000-000000000000;IngestionEndpoint=https://127.0.0.1:${port}/;LiveEndpoint=https://127.0.0.1:${port}/`,
    requests: () => counts.requests,
    totals: () => ({ envelopes: counts.envelopes, posts: counts.posts, bytes: counts.bytes }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
