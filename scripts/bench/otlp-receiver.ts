// The OTLP/HTTP receiver of `npm run bench:proxy` (target `gatehouse-otlp`): plain HTTP on 127.0.0.1, answering every
// export as accepted. It runs in the harness's process and does as little as it can (no JSON parsing: it counts server
// spans by their kind in the raw bytes), so that the CPU it takes from the machine's two cores stays small.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface BenchOtlpReceiver {
  /** The base URL to give the gateway (GATEHOUSE_OTLP_ENDPOINT). */
  url: string;
  /** Server spans received so far (the gateway exports one per request it answers). */
  serverSpans(): number;
  close(): Promise<void>;
}

/** How the OTLP JSON encoding writes a span of kind SERVER. */
const SERVER_SPAN = Buffer.from('"kind":2');

export async function startBenchOtlpReceiver(): Promise<BenchOtlpReceiver> {
  let spans = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const body = Buffer.concat(chunks);
        for (let at = body.indexOf(SERVER_SPAN); at >= 0; at = body.indexOf(SERVER_SPAN, at + SERVER_SPAN.length)) spans++;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    serverSpans: () => spans,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
