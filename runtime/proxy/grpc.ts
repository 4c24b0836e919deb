// gRPC over the gateway (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): the deadline a call carries
// (`grpc-timeout`), and the gateway's own refusals and failures told in gRPC's terms, since a gRPC client reads the
// status from `grpc-status`, not from the HTTP status.

import type { HeaderMap } from '../policy-host/exchange.ts';

/** A request a gRPC client sent: its content type is application/grpc (or application/grpc+proto, +json...). */
export function isGrpcRequest(headers: HeaderMap): boolean {
  return isGrpcContentType(headers.get('content-type')?.[0]);
}

/** Whether a content type is gRPC's (application/grpc, application/grpc+proto, +json...). */
export function isGrpcContentType(type: string | undefined): boolean {
  return type !== undefined && /^application\/grpc(?:[+;]|$)/i.test(type);
}

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** The deadline `grpc-timeout` gives (up to 8 digits and a unit: `100m`, `5S`), in whole ms, at least 1; null when absent or malformed. */
export function grpcTimeoutMs(value: string | undefined): number | null {
  if (value === undefined) return null;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return null;
  return Math.max(1, Math.ceil(Number(m[1]) * UNIT_MS[m[2]!]!));
}

/** gRPC's status codes the gateway answers with. */
export const GrpcStatus = {
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** The gRPC status for an answer the gateway (or a policy) gave with an HTTP status. */
export function grpcStatusOf(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return GrpcStatus.INVALID_ARGUMENT;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 405:
      return GrpcStatus.UNIMPLEMENTED;
    case 408:
    case 504:
      return GrpcStatus.DEADLINE_EXCEEDED;
    case 413:
    case 429:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case 502:
    case 503:
      return GrpcStatus.UNAVAILABLE;
    case 500:
      return GrpcStatus.INTERNAL;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** `grpc-message`'s encoding: bytes outside printable ASCII, and `%`, percent-encoded. */
export function grpcMessage(text: string): string {
  let out = '';
  for (const byte of new TextEncoder().encode(text)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
