// The gateway configuration document (YAML or JSON), as validated against gateway.schema.json.
// See docs/configuration.md. Field names follow the document; comments say what each controls.

import type { BreakerSettings, Grants, Limits } from '../policy-host/index.ts';
import type { NamedValue } from './named-values.ts';

export interface GatewayDocument {
  /** Document format version; only 1 exists. */
  version: 1;
  /** Gateway-wide settings. */
  settings?: GatewaySettings;
  /** Policies of the global scope, applied to every API. */
  policies?: PhaseChains;
  /** Named lists of policy entries, run in place of an `include-fragment: <name>` entry (fragments.ts). */
  fragments?: Record<string, PolicyEntry[]>;
  apis: ApiDocument[];
  /** Values policy configurations refer to as `{{name}}` (see named-values.ts). */
  namedValues?: Record<string, NamedValue>;
}

export interface GatewaySettings {
  /** Largest request body accepted, in bytes (413 above). Default 10 MiB. */
  maxRequestBodyBytes?: number;
  /** Default backend timeout in ms (504 after). Default 30000. */
  backendTimeoutMs?: number;
  /** WebSocket connections of the whole gateway. */
  webSocket?: {
    /** Open at once (handshakes under way included); past it an upgrade gets 503. Default 10000. */
    maxConnections?: number;
  };
}

/** WebSocket on an API: its presence allows upgrades on every operation (an operation may say `webSocket: false`). */
export interface WebSocketDocument {
  /** No byte either way for this long closes the connection (close 1001). Default 300000. */
  idleTimeoutMs?: number;
  /** Open at once on this API; past it an upgrade gets 503. Default: only the gateway's limit. */
  maxConnections?: number;
  /** The largest message either side may send; past it the connection is closed (1009). Default 16 MiB. */
  maxMessageBytes?: number;
}

export interface ApiDocument {
  /** Unique id: `[a-z0-9][a-z0-9-]*`; used in metrics, logs and counters. */
  id: string;
  /** Path prefix the API is served under, starting with `/` (e.g. `/echo`). */
  pathPrefix: string;
  /** Host names the API answers to (exact, or `*.example.com`); absent: any host. */
  hosts?: string[];
  backend: BackendDocument;
  /** Operations; absent or empty: every method and path under the prefix is one operation named `default`. */
  operations?: OperationDocument[];
  policies?: PhaseChains;
  /** WebSocket upgrades allowed, with their limits; absent: refused (400) unless an operation allows them. */
  webSocket?: WebSocketDocument;
}

export interface BackendDocument {
  /** One backend: absolute http(s) URL; the request path after the API prefix is appended to its path. */
  url?: string;
  /** Or a load-balanced pool of backends (round robin, failed backends ejected for a while). */
  pool?: {
    urls: string[];
    /** Consecutive failures (connection errors, timeouts, 5xx) that eject a backend. Default 3. */
    ejectAfterFailures?: number;
    /** How long an ejected backend stays out, in ms. Default 10000. */
    ejectForMs?: number;
    /** Active health checks of the members. */
    healthCheck?: HealthCheckDocument;
  };
  /** Overrides settings.backendTimeoutMs for this API. */
  timeoutMs?: number;
  /** What the backends speak: `http/1.1` (default) or `h2` (HTTP/2, for gRPC). */
  protocol?: 'http/1.1' | 'h2';
  /** When a failed request is tried again (default: a pool tries another member once after a connection failure). */
  retry?: RetryDocument;
}

export interface RetryDocument {
  /** Tries after the first, at most (0: none). Default 1. */
  count?: number;
  /** What is tried again: `connect-failure`, `reset`, `timeout`, and statuses (e.g. 503). Default connect-failure, reset. */
  on?: (string | number)[];
  /** Backoff base in ms: a random wait up to backoffMs * 2^(n-1) before retry n, at most maxBackoffMs. Default 25. */
  backoffMs?: number;
  /** Default 1000; a Retry-After longer than this is not waited for (the response is passed on). */
  maxBackoffMs?: number;
  /** Retries at most this share of requests (plus minRetriesPerSecond). Default 20. */
  budgetPercent?: number;
  /** Retries allowed each second whatever the traffic. Default 5. */
  minRetriesPerSecond?: number;
}

export interface HealthCheckDocument {
  /** Asked of each member, appended to its URL path (e.g. `/healthz`). */
  path: string;
  /** Default 5000. */
  intervalMs?: number;
  /** Default 2000. */
  timeoutMs?: number;
  /** The statuses that pass. Default 200. */
  expectedStatus?: number | number[];
  /** Passed checks in a row that bring a member back. Default 2. */
  healthyThreshold?: number;
  /** Failed checks in a row that take a member out. Default 3. */
  unhealthyThreshold?: number;
}

export interface OperationDocument {
  /** Unique within the API: `[A-Za-z0-9][A-Za-z0-9_-]*`. */
  id: string;
  /** HTTP method (upper case), or `*` for any. */
  method: string;
  /** URL template relative to the API prefix: `/orders/{orderId}/lines/{line}`; `{name}` matches one segment. */
  urlTemplate: string;
  policies?: PhaseChains;
  /** Allows (true) or refuses (false) WebSocket upgrades on this operation, whatever the API says. */
  webSocket?: boolean;
}

export interface PhaseChains {
  inbound?: PolicyEntry[];
  backend?: PolicyEntry[];
  outbound?: PolicyEntry[];
  'on-error'?: PolicyEntry[];
}

/** What send-request and send-one-way-request send. */
export interface SendRequestEntry {
  mode?: 'new' | 'copy';
  url: string | { expr: string };
  method?: string | { expr: string };
  headers?: Record<string, string | { expr: string }>;
  body?: string | { expr: string };
  /** Seconds, at most 30. */
  timeout?: number;
}

/**
 * One entry of a chain. Exactly one of `policy` (built-in), `module` (a .wasm file) or `source` (a policy folder), or
 * one of the host's own: `choose`, `set-variable`, `include-fragment`, the cache steps. Any of them may have a `when` condition.
 */
export interface PolicyEntry {
  /** A CEL condition: false skips the entry (docs/expressions.md). */
  when?: string;
  /** Branches: the first whose condition holds runs its policies, else `otherwise`. */
  choose?: { when: string; policies: PolicyEntry[] }[];
  otherwise?: PolicyEntry[];
  /** Stores a value, text or computed (`{expr}`), in the request's variables. */
  'set-variable'?: { name: string; value: string | { expr: string } };
  /** Calls another service and stores its response in a variable (docs/expressions.md, "Outbound calls"). */
  'send-request'?: SendRequestEntry & { responseVariable: string; ignoreError?: boolean; maxResponseBytes?: number };
  /** Calls another service without waiting for its answer. */
  'send-one-way-request'?: SendRequestEntry;
  /** Runs its policies again while its condition holds (APIM's retry). */
  retry?: {
    condition: string;
    count: number;
    /** Seconds. */
    interval?: number;
    maxInterval?: number;
    delta?: number;
    firstFastRetry?: boolean;
    policies: PolicyEntry[];
  };
  /** A record in the request's access log and a log line (APIM's trace). */
  trace?: {
    source: string;
    severity?: 'verbose' | 'information' | 'error';
    message: string | { expr: string };
    metadata?: Record<string, string | { expr: string }>;
  };
  /** Replaces the body of its phase: text, an expression's value, or a Liquid template's output. */
  'set-body'?: { value: string | { expr: string }; template?: 'liquid'; contentType?: string };
  /** Runs its send-requests side by side and waits for all of them, or the first. */
  wait?: { for?: 'all' | 'any'; policies: PolicyEntry[] };
  /** Runs the entries of the document's fragment of this name in its place. */
  'include-fragment'?: string;
  /** Answers GET and HEAD requests from the response cache (inbound); cache-store stores what it misses. */
  'cache-lookup'?: {
    varyByHeaders?: string[];
    /** Absent: every query parameter is part of the key. */
    varyByQueryParameters?: string[];
    allowPrivateResponseCaching?: boolean;
    downstreamCachingType?: 'none' | 'private' | 'public';
    mustRevalidate?: boolean;
  };
  /** Stores the response of a request that went through cache-lookup (outbound). */
  'cache-store'?: { duration: number; statuses?: number[] };
  'cache-lookup-value'?: { key: string | { expr: string }; variableName: string; defaultValue?: string | { expr: string } };
  'cache-store-value'?: { key: string | { expr: string }; value: string | { expr: string }; duration: number };
  'cache-remove-value'?: { key: string | { expr: string } };
  /** A built-in policy: the name of a folder under policies/ (e.g. `check-header`). */
  policy?: string;
  /** A compiled policy module (.wasm), path relative to the configuration file. */
  module?: string;
  /** A policy folder (or its policy.ts) built with the SDK at load, path relative to the configuration file. */
  source?: string;
  /** The policy's configuration, checked against the schema in its descriptor; `{expr}` values are computed per call where the policy takes them. */
  config?: Record<string, unknown>;
  grants?: Grants;
  limits?: Partial<Limits>;
  circuitBreaker?: Partial<BreakerSettings>;
  failOpen?: boolean;
}
