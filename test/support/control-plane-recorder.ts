// Stands between gateways and a real control plane on 127.0.0.1: passes every call through unchanged and keeps what
// the gateways sent, so that a test sees a heartbeat whole (the control plane keeps only some of its fields) and when
// it went relative to the configuration polls.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';

/** One call a gateway made, in the order they arrived. */
export interface RecordedCall {
  method: string;
  path: string;
  /** Milliseconds since the epoch when the call arrived. */
  at: number;
  /** The request body parsed as JSON, when it was JSON. */
  json: unknown;
  /** The control plane's status. */
  status: number;
}

export interface ControlPlaneRecorder {
  /** Give this to the gateways as GATEHOUSE_CONFIG_URL. */
  url: string;
  calls: RecordedCall[];
  /** The heartbeats so far, by the instance that sent them. */
  heartbeats(instance: string): Record<string, unknown>[];
  close(): Promise<void>;
}

/** Headers a hop sets for itself; the rest passes through both ways. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'host']);

export async function recordControlPlane(controlPlaneUrl: string): Promise<ControlPlaneRecorder> {
  const agent = new Agent({ connections: 8 });
  const calls: RecordedCall[] = [];
  const server: Server = createServer((req, res) => {
    const at = Date.now();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !HOP_BY_HOP.has(k))) as Record<string, string>;
      try {
        const reply = await request(`${controlPlaneUrl}${req.url}`, {
          method: req.method as 'GET',
          headers,
          body: body.length > 0 ? body : undefined,
          dispatcher: agent,
        });
        const answer = Buffer.from(await reply.body.arrayBuffer());
        let json: unknown = null;
        try {
          json = body.length > 0 ? JSON.parse(body.toString('utf8')) : null;
        } catch {
          // not JSON (a module upload): only the call is kept
        }
        calls.push({ method: req.method!, path: req.url!, at, json, status: reply.statusCode });
        const back = Object.fromEntries(Object.entries(reply.headers).filter(([k]) => !HOP_BY_HOP.has(k)));
        res.writeHead(reply.statusCode, { ...back, 'content-length': String(answer.length) });
        res.end(answer);
      } catch (err) {
        // The control plane is away: the gateway sees what it would see without the recorder, a connection closed.
        res.destroy(err as Error);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    heartbeats: (instance) =>
      calls
        .filter((c) => c.path === '/gateway/v1/heartbeat' && (c.json as { instance?: unknown } | null)?.instance === instance)
        .map((c) => c.json as Record<string, unknown>),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await agent.destroy();
    },
  };
}
