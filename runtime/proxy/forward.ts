// Forwards an exchange's request to its backend with undici and buffers the answer.
// The data-plane issue replaces buffering with streaming; the error mapping (502/504) stays.

import { Agent, request, errors } from 'undici';
import { BackendError, type Forward } from '../pipeline/chain.ts';
import type { HeaderMap } from '../pipeline/exchange.ts';
import { collectBody } from './body.ts';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
  'content-length',
]);

export interface ForwarderOptions {
  timeoutMs?: number;
  maxResponseBytes?: number;
}

export function createForwarder(options: ForwarderOptions = {}): Forward & { close(): Promise<void> } {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const maxBytes = options.maxResponseBytes ?? 64 * 1024 * 1024;
  const dispatcher = new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connections: 64 });
  const forward = async (exchange: Parameters<Forward>[0]) => {
    const target = new URL(exchange.backendUrl);
    const basePath = target.pathname.endsWith('/') ? target.pathname.slice(0, -1) : target.pathname;
    const url = `${target.origin}${basePath}${exchange.request.path}${exchange.request.query ? `?${exchange.request.query}` : ''}`;
    const headers: Record<string, string[]> = {};
    for (const [name, values] of exchange.request.headers) if (!HOP_BY_HOP.has(name)) headers[name] = values;
    try {
      const res = await request(url, {
        method: exchange.request.method as 'GET',
        headers,
        body: exchange.request.body ?? undefined,
        dispatcher,
      });
      const body = await collectBody(res.body, maxBytes);
      if (body === null) {
        res.body.destroy();
        throw new BackendError('too-large', 502, `backend response larger than ${maxBytes} bytes`);
      }
      const out: HeaderMap = new Map();
      for (const [name, value] of Object.entries(res.headers)) {
        if (value === undefined || HOP_BY_HOP.has(name)) continue;
        out.set(name, Array.isArray(value) ? value : [value]);
      }
      return { status: res.statusCode, headers: out, body };
    } catch (err) {
      throw toBackendError(err);
    }
  };
  return Object.assign(forward, { close: () => dispatcher.close() });
}

function toBackendError(err: unknown): BackendError {
  if (err instanceof BackendError) return err;
  if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError) {
    return new BackendError('timeout', 504, 'backend did not answer in time');
  }
  const code = (err as { code?: string }).code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH') {
    return new BackendError('unreachable', 502, `backend unreachable (${code})`);
  }
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return new BackendError('reset', 502, 'backend reset the connection');
  return new BackendError('bad-response', 502, `backend failed: ${(err as Error).message}`);
}
