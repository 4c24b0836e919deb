// Requests to a gateway under test, and checks every body-rewriting test shares.

import assert from 'node:assert/strict';
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
