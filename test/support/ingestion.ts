// A local Application Insights ingestion endpoint: HTTPS on 127.0.0.1 with a self-signed certificate made by openssl,
// decoding what the real SDK posts to /v2.1/track (a JSON array of envelopes, gzip-encoded or not).

import { createServer } from 'node:https';
import { selfSignedCertificate } from '../../scripts/lib/certificate.ts';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { tempDir } from './gateway-process.ts';

/** An envelope as the SDK sends it (only the fields the tests read). */
export interface Envelope {
  name: string;
  iKey: string;
  time: string;
  sampleRate?: number;
  tags: Record<string, string>;
  data: { baseType: string; baseData: Record<string, unknown> & { properties?: Record<string, string> } };
}

export interface IngestionEndpoint {
  port: number;
  /** The certificate to trust (NODE_EXTRA_CA_CERTS). */
  certFile: string;
  /** Every envelope received, in order. */
  envelopes: Envelope[];
  /** POST requests received, whatever they carried and whatever was answered. */
  posts: number;
  close(): Promise<void>;
}

export const INSTRUMENTATION_KEY = '11111111-2222-4333-8444-555555555555';

/** A connection string that sends everything (live metrics included, were they on) to `endpoint`. */
export function connectionString(port: number): string {
  return `InstrumentationKey=${INSTRUMENTATION_KEY};IngestionEndpoint=https://127.0.0.1:${port}/;LiveEndpoint=https://127.0.0.1:${port}/`;
}

/**
 * `answer: 'accept'` answers 200 with the counts the service gives; `'fail'` answers 500 to everything (envelopes are
 * still decoded and kept, so a test can see the SDK tried); `'partial-first'` answers the first batch 206, the service's
 * partial success, asking for its first envelope again (500) and refusing its second for good (400), then accepts.
 * `delayMs`: each answer waits this long (a slow endpoint).
 */
export async function startIngestionEndpoint(options: { answer?: 'accept' | 'fail' | 'partial-first'; delayMs?: number } = {}): Promise<IngestionEndpoint> {
  const dir = tempDir('gatehouse-ingestion-');
  const { certFile, cert, key } = selfSignedCertificate(dir, 'ingestion');
  const envelopes: Envelope[] = [];
  const endpoint = { posts: 0 };
  const server = createServer({ cert, key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let received = 0;
      if (req.method === 'POST') {
        endpoint.posts++;
        try {
          const raw = Buffer.concat(chunks);
          const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
          const batch = JSON.parse(text) as Envelope[];
          if (req.url?.startsWith('/v2.1/track') || req.url?.startsWith('/v2/track')) envelopes.push(...batch);
          received = batch.length;
        } catch {
          // Not a batch of envelopes (nothing else is expected): counted as a post, nothing kept.
        }
      }
      const answer = () => {
        if (options.answer === 'fail') {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ itemsReceived: received, itemsAccepted: 0, errors: [] }));
          return;
        }
        if (options.answer === 'partial-first' && endpoint.posts === 1 && received >= 2) {
          const errors = [
            { index: 0, statusCode: 500, message: 'try again' },
            { index: 1, statusCode: 400, message: 'refused' },
          ];
          res.writeHead(206, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ itemsReceived: received, itemsAccepted: received - 2, errors }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ itemsReceived: received, itemsAccepted: received, errors: [] }));
      };
      if (options.delayMs) setTimeout(answer, options.delayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    certFile,
    envelopes,
    get posts() {
      return endpoint.posts;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The envelopes of one type (`Request`, `RemoteDependency`, `Exception`, `Metric`). */
export function ofType(envelopes: readonly Envelope[], type: string): Envelope[] {
  return envelopes.filter((e) => e.name === `Microsoft.ApplicationInsights.${type}`);
}

/** An envelope's property, for envelopes that carry custom properties. */
export function property(e: Envelope, name: string): string | undefined {
  return e.data.baseData.properties?.[name];
}
