// The data plane's messages: a request as the HTTP server hands it to the gateway, and the response it writes back.

import type { Duplex } from 'node:stream';
import type { BodyStream, HeaderMap, ResponseBody } from '../policy-host/exchange.ts';
import { grpcMessage, grpcStatusOf } from '../proxy/grpc.ts';

/** A request as the HTTP server hands it over (runtime/server/http-server.ts). */
export interface GatewayRequest {
  method: string;
  /** Path as received, without the query. */
  path: string;
  query: string;
  headers: HeaderMap;
  remoteAddress: string;
  scheme: 'http' | 'https';
  /** The protocol the client spoke, as the access log names it. */
  protocol: 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2';
  body: BodyStream | null;
}

/** What the server writes back: a buffered body, or the backend's body still to be read (`stream`). */
export interface GatewayResponse {
  status: number;
  headers: HeaderMap;
  body: Uint8Array | null;
  stream: ResponseBody | null;
  /**
   * Set when policies wait for the end of the exchange (a lease, a meter): the server calls it once the response is
   * sent or abandoned, with the body bytes sent.
   */
  finished?: (responseBytes: number) => void;
}

/** An upgrade's socket, taken from the HTTP server's parser, and the bytes that followed the request head. */
export interface UpgradeSocket {
  socket: Duplex;
  head: Buffer;
}

/** Handles a data-plane request: every failure becomes a response (runtime/gateway/gateway.ts). */
export type GatewayHandler = (req: GatewayRequest) => Promise<GatewayResponse>;

/** An RFC 9457 problem answered by the gateway itself, with the request id. */
export function problem(status: number, title: string, detail: string, requestId: string): GatewayResponse {
  return {
    status,
    headers: new Map([
      ['content-type', ['application/problem+json']],
      ['x-request-id', [requestId]],
    ]),
    body: new TextEncoder().encode(JSON.stringify({ type: 'about:blank', title, status, detail, requestId })),
    stream: null,
  };
}

/**
 * The answer a gRPC client reads for a response the gateway or a policy gave with an HTTP status other than 200 (a
 * refusal, a backend down, a timeout): "trailers-only", status 200 and the gRPC status in the head, no body. The
 * message is the problem's detail, or the body's text; the request id and the finishing callback are kept.
 */
export function grpcTrailersOnly(res: GatewayResponse): GatewayResponse {
  let message = '';
  if (res.body && res.body.byteLength > 0) {
    const text = new TextDecoder().decode(res.body.subarray(0, 4096));
    try {
      const detail = (JSON.parse(text) as { detail?: unknown }).detail;
      message = typeof detail === 'string' ? detail : text;
    } catch {
      message = text;
    }
  }
  const headers: HeaderMap = new Map([
    ['content-type', ['application/grpc']],
    ['grpc-status', [String(grpcStatusOf(res.status))]],
    ['grpc-message', [grpcMessage(message || `HTTP status ${res.status}`)]],
  ]);
  const requestId = res.headers.get('x-request-id');
  if (requestId) headers.set('x-request-id', requestId);
  return { status: 200, headers, body: null, stream: null, finished: res.finished };
}
