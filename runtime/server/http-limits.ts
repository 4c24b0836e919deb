// What the HTTP listeners allow a client: how long it may take to send a request, how long an idle connection is kept,
// how large a request head may be, how many connections may be open. A client that goes past one gets the answer of
// docs/operations.md ("Hostile input"); each limit is set by an environment variable.

export interface HttpLimits {
  /** Time to receive the request line and headers: slower clients get 408 and are disconnected (slow-loris). */
  headersTimeoutMs: number;
  /** Time to receive the whole request, body included; 408 and disconnected past it. At least headersTimeoutMs. */
  requestTimeoutMs: number;
  /** How long a keep-alive connection may sit idle between requests before it is closed. */
  keepAliveTimeoutMs: number;
  /** The request line and header fields together, in bytes; larger heads get 431. */
  maxHeaderBytes: number;
  /** Connections open at once per listener; those past it are closed on arrival. 0: no limit. */
  maxConnections: number;
  /** HTTP/2: streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  http2MaxConcurrentStreams: number;
  /** HTTP/2: streams a client may reset in 10 s on one connection before it is closed (GOAWAY ENHANCE_YOUR_CALM). */
  http2MaxResets: number;
}

export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = {
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 300_000,
  // Longer than the 60 s idle timeout of common load balancers, so that they close idle connections first and never
  // send a request on one the gateway is closing.
  keepAliveTimeoutMs: 65_000,
  maxHeaderBytes: 16 * 1024,
  maxConnections: 0,
  http2MaxConcurrentStreams: 100,
  // A browser cancels a few streams when a page is left; rapid-reset floods reset thousands a second.
  http2MaxResets: 200,
};

/** Each limit's variable, and the smallest value it accepts. */
const VARIABLES: Record<keyof HttpLimits, { name: string; min: number }> = {
  headersTimeoutMs: { name: 'GATEHOUSE_HEADERS_TIMEOUT_MS', min: 100 },
  requestTimeoutMs: { name: 'GATEHOUSE_REQUEST_TIMEOUT_MS', min: 100 },
  keepAliveTimeoutMs: { name: 'GATEHOUSE_KEEP_ALIVE_TIMEOUT_MS', min: 100 },
  maxHeaderBytes: { name: 'GATEHOUSE_MAX_HEADER_BYTES', min: 1024 },
  maxConnections: { name: 'GATEHOUSE_MAX_CONNECTIONS', min: 0 },
  http2MaxConcurrentStreams: { name: 'GATEHOUSE_HTTP2_MAX_CONCURRENT_STREAMS', min: 1 },
  http2MaxResets: { name: 'GATEHOUSE_HTTP2_MAX_RESETS', min: 1 },
};

/** Where a listener speaks HTTP/2 besides HTTP/1.1. */
export interface Http2Protocols {
  /** HTTPS offers `h2` through ALPN (GATEHOUSE_HTTP2, on unless `off`). */
  tls: boolean;
  /** Cleartext HTTP/2 with prior knowledge on the HTTP listener (GATEHOUSE_HTTP2_CLEARTEXT, off unless `on`). */
  cleartext: boolean;
}

export const DEFAULT_HTTP2: Readonly<Http2Protocols> = { tls: true, cleartext: false };

/** Where the environment turns HTTP/2 on, or what is wrong with a variable. */
export function http2FromEnv(env: Record<string, string | undefined>): { http2: Http2Protocols } | { problem: string } {
  const http2: Http2Protocols = { ...DEFAULT_HTTP2 };
  for (const [key, name] of [['tls', 'GATEHOUSE_HTTP2'], ['cleartext', 'GATEHOUSE_HTTP2_CLEARTEXT']] as const) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    if (raw !== 'on' && raw !== 'off') return { problem: `${name}=${raw} must be on or off` };
    http2[key] = raw === 'on';
  }
  return { http2 };
}

/** The limits the environment sets (defaults for the variables not set), or what is wrong with one of them. */
export function httpLimitsFromEnv(env: Record<string, string | undefined>): { limits: HttpLimits } | { problem: string } {
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS };
  for (const key of Object.keys(VARIABLES) as (keyof HttpLimits)[]) {
    const { name, min } = VARIABLES[key];
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value < min) return { problem: `${name}=${raw} must be a whole number, ${min} at least` };
    limits[key] = value;
  }
  if (limits.requestTimeoutMs < limits.headersTimeoutMs) {
    return {
      problem: `GATEHOUSE_REQUEST_TIMEOUT_MS (${limits.requestTimeoutMs}) must be at least GATEHOUSE_HEADERS_TIMEOUT_MS (${limits.headersTimeoutMs}): the headers are part of the request`,
    };
  }
  return { limits };
}
