// The data plane's messages: a request as the HTTP server hands it to the gateway, and the response it writes back.

import type { Duplex } from 'node:stream';
import type { BodyStream, HeaderMap, ResponseBody } from '../policy-host/exchange.ts';

/** A request as the HTTP server hands it over (runtime/server/http-server.ts). */
export interface GatewayRequest {
  method: string;
  /** Path as received, without the query. */
  path: string;
  query: string;
  headers: HeaderMap;
  remoteAddress: string;
  scheme: 'http' | 'https';
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
