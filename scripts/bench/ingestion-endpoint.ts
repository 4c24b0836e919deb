// The Application Insights ingestion endpoint of `npm run bench:proxy` (target `gatehouse-ai`): HTTPS on 127.0.0.1 with
// a self-signed certificate made by openssl, answering every batch as accepted. It runs in the harness's process and
// does as little as it can (no JSON parsing: it counts envelopes by their type names in the raw bytes, one scan of each
// chunk as it arrives, nothing gathered), so that the CPU it takes from the machine's two cores stays small beside the
// gateway's: an ingestion endpoint in Azure costs the gateway's machine nothing. profile:proxy with PROFILE_APPINSIGHTS=1
// measures what it costs here.

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

/** Every envelope's type name starts so; a Request envelope's is followed by REQUEST. */
const TYPE = Buffer.from('"Microsoft.ApplicationInsights.');
const REQUEST = Buffer.from('Request"');
/** Bytes from a type name's start that decide what it names. */
const DECIDED = TYPE.length + REQUEST.length;

/** Counts envelopes in a body that arrives in chunks, with no chunk kept beyond the bytes a name may straddle. */
export class EnvelopeCounter {
  envelopes = 0;
  requests = 0;
  /** The previous chunk's last bytes, where a type name may begin. */
  private carry: Buffer = Buffer.alloc(0);

  add(chunk: Buffer): void {
    const text = this.carry.length === 0 ? chunk : Buffer.concat([this.carry, chunk]);
    // A name starting at or after `limit` may continue in the next chunk: it is counted with that one.
    const limit = text.length - DECIDED + 1;
    let at = text.indexOf(TYPE);
    for (; at >= 0 && at < limit; at = text.indexOf(TYPE, at + TYPE.length)) this.count(text, at);
    this.carry = Buffer.from(text.subarray(Math.max(0, limit)));
  }

  end(): void {
    for (let at = this.carry.indexOf(TYPE); at >= 0; at = this.carry.indexOf(TYPE, at + TYPE.length)) this.count(this.carry, at);
    this.carry = Buffer.alloc(0);
  }

  private count(text: Buffer, at: number): void {
    this.envelopes++;
    const name = at + TYPE.length;
    if (text.length >= name + REQUEST.length && text.compare(REQUEST, 0, REQUEST.length, name, name + REQUEST.length) === 0) this.requests++;
  }
}

export async function startBenchIngestionEndpoint(dir: string): Promise<BenchIngestionEndpoint> {
  const { certFile, cert, key } = selfSignedCertificate(dir, 'ingestion');
  const counts = { requests: 0, envelopes: 0, posts: 0, bytes: 0 };
  const server = createServer({ cert, key }, (req, res) => {
    // The gateway's exporter (as the SDK did) compresses only for Azure's own hosts: what reaches 127.0.0.1 is plain JSON.
    const counter = new EnvelopeCounter();
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      counter.add(c);
    });
    req.on('end', () => {
      counter.end();
      counts.posts++;
      counts.bytes += bytes;
      counts.envelopes += counter.envelopes;
      counts.requests += counter.requests;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"itemsReceived":${counter.envelopes},"itemsAccepted":${counter.envelopes},"errors":[]}`);
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
