// Requests to a gateway under test, backends that record what reached them, and checks the body-rewriting tests share.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request, type Dispatcher } from 'undici';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Sends a request to `base` + `path` and reads the whole answer as text. */
export async function send(
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; dispatcher?: Dispatcher } = {},
): Promise<Reply> {
  const res = await request(`${base}${path}`, {
    method: (options.method ?? 'GET') as 'GET',
    headers: options.headers ?? {},
    body: options.body,
    dispatcher: options.dispatcher,
  });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body };
}

/** A body a policy made goes out with its own length: never one left over from the backend's body, never chunked. */
export function assertFramed(res: Reply): void {
  assert.equal(res.headers['content-length'], String(Buffer.byteLength(res.body)));
}

/** A request as a recording backend received it. */
export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** The body as it arrived (`body` turns bytes that are not UTF-8 into U+FFFD). */
  bytes: Buffer;
}

export interface RecordingBackend {
  server: Server;
  port: number;
  /** Every request received, in order, with its whole body. */
  seen: Seen[];
}

/** A backend on 127.0.0.1 that records each request (body read whole) and answers what `answer` says. */
export async function startRecordingBackend(
  answer: (seen: Seen) => { status?: number; headers?: OutgoingHttpHeaders; body: string },
): Promise<RecordingBackend> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const bytes = Buffer.concat(chunks);
      const record = { method: req.method!, url: req.url!, headers: req.headers, body: bytes.toString('utf8'), bytes };
      seen.push(record);
      const { status = 200, headers = {}, body } = answer(record);
      res.writeHead(status, headers);
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen };
}
