// One request/response exchange as policies see it through ABI v1 fields, with an undo journal so that every policy
// call is atomic (a failed call, or a round that waits for effects, leaves no trace).

import { Field, Status, type Phase } from '../../abi/index.ts';
import type { ExchangeUsage, PolicyBinding, TransactionalView } from './binding.ts';
import type { TraceContext } from '../telemetry/trace-context.ts';
import { checkEgress, type EgressAccess } from './egress.ts';
import type { WriteOp } from './instance.ts';
import { dotSegment } from '../routing/request-path.ts';
import { FRAMING, FRAMING_NAME, HEADER_KEY, SAFE_VALUE, headerKey, isSafeValue, isToken, lookupKey } from './header-text.ts';

export type HeaderMap = Map<string, string[]>;

// The kinds of change the undo journal records (Exchange.rollback).
/** An object's property was set: slot 2 names it, slot 3 holds its previous value. */
const UNDO_PROPERTY = 0;
/** A map's entry was set or deleted: slot 3 holds its previous value, undefined when it had none. */
const UNDO_MAP_ENTRY = 1;
/** A value was appended to a header's values (slot 1). */
const UNDO_APPENDED = 2;
/** Slots of one journal entry: kind, target, key, previous value. */
const UNDO_STRIDE = 4;

export interface RequestState {
  method: string;
  /** Path without the query, as received (percent-encoding kept). */
  path: string;
  /** Raw query without `?`. */
  query: string;
  headers: HeaderMap;
  /** Buffered body; null when the body is not buffered (no policy declared it needs it) or absent. */
  body: Uint8Array | null;
  /** The body as it arrives, when it is streamed to the backend instead of buffered. */
  stream?: BodyStream | null;
  /** The body as the client encoded it, when `body` is it decoded for the policies that read it. */
  encoded?: EncodedBody | null;
  clientAddress: string;
  /** The scheme the client used (for X-Forwarded-Proto). */
  scheme?: 'http' | 'https';
}

/**
 * A body the gateway decoded for the policies that read it (runtime/pipeline/content-coding.ts): while the message's
 * body is still `decoded`, no policy changed it, and `bytes` go on with their Content-Encoding, not encoded again.
 */
export interface EncodedBody {
  /** The body as it came, encoded. */
  readonly bytes: Uint8Array;
  /** Its Content-Encoding values, as they came. */
  readonly coding: string[];
  /** What the policies were given to read. */
  readonly decoded: Uint8Array;
}

/** A body on its way through: Node Readables and web ReadableStreams both fit. */
export type BodyStream = AsyncIterable<Uint8Array> & { destroy?(error?: Error): void };

/**
 * Where a response body is written as it arrives, with backpressure: the client's connection (a node:http
 * ServerResponse is one).
 */
export interface BodySink {
  readonly destroyed: boolean;
  /** False when the sink wants no more until 'drain'. */
  write(chunk: Uint8Array): boolean;
  end(): void;
  destroy(error?: Error): void;
  on(event: 'drain', listener: () => void): unknown;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * A backend's response body not read yet (runtime/proxy/backend-response.ts). Whoever drops it from a response
 * destroys it: until it is sent, read or destroyed it holds its backend connection.
 */
export interface ResponseBody extends AsyncIterable<Uint8Array> {
  /** Writes the body into `destination` as it arrives, and ends it. */
  sendTo(destination: BodySink): void;
  destroy(error?: Error): void;
  /** Body bytes received from the backend so far. */
  readonly bytesReceived: number;
  /** The trailer fields that followed the body (gRPC's status), once it has ended; null before, or when none came. */
  readonly trailers: HeaderMap | null;
}

export interface ResponseState {
  status: number;
  headers: HeaderMap;
  body: Uint8Array | null;
  /** The backend's body, streamed to the client unless a policy needs it buffered or replaces it. */
  stream?: ResponseBody | null;
  /** The body as the backend encoded it, when `body` is it decoded for the policies that read it. */
  encoded?: EncodedBody | null;
}

export interface ExchangeError {
  source: 'policy' | 'backend' | 'gateway';
  reason: string;
  message: string;
  /** The binding that failed, for policy errors. */
  policy: string;
  /** The status the client gets unless an on-error policy changes it. */
  status: number;
}

/** Milliseconds kept to the microsecond: what policy timings and the access log show. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

export interface PolicyTiming {
  binding: string;
  phase: Phase;
  ms: number;
  /** skipped: the entry's `when:` condition was false, so it did not run. */
  outcome: 'continue' | 'respond' | 'failed' | 'failed-open' | 'skipped';
}

/** A record the trace entry added: it goes into the request's access log line. */
export interface TraceRecord {
  binding: string;
  source: string;
  severity: 'verbose' | 'information' | 'error';
  message: string;
  metadata: Record<string, string>;
}

export interface ExchangeInit {
  requestId: string;
  api?: string;
  /** The API's path prefix as routed (no trailing slash; empty for `/`). */
  apiPathPrefix?: string;
  operation?: string;
  request: RequestState;
  backendUrl?: string;
  routeParams?: Map<string, string>;
  variables?: Map<string, string>;
  /** The W3C trace the request belongs to; none for exchanges made outside the gateway (tests, tools). */
  trace?: TraceContext | null;
}

/**
 * How the request reaches `Exchange.backendUrl`: `api`, the API's own backend (what the operator configured);
 * `exact`, a URL a policy wrote that its `backend` grant names exactly; `wildcard`, one a wildcard entry admitted, so
 * the forwarder connects only to addresses that pass the checks of abi/policy-abi.md, section 5.
 */
export type BackendAccess = 'api' | EgressAccess;

export function headerMap(init: Record<string, string | string[]> = {}): HeaderMap {
  const map: HeaderMap = new Map();
  for (const [k, v] of Object.entries(init)) map.set(k.toLowerCase(), Array.isArray(v) ? [...v] : [v]);
  return map;
}

/**
 * A HeaderMap as one flat list, name and value in turn, a name once for each of its values: what node:http's
 * writeHead takes under Node and Deno. Building an object keyed by header names instead cost about 1 us for the eleven
 * headers of a response through the five-policy chain (V8 moves such an object through a new shape for each name).
 */
export function headerList(headers: HeaderMap): string[] {
  // Sized first and filled by index, with no [name, values] pair an entry: growing the list by pushes and iterating
  // entries allocated 1.4 KB for those eleven headers, this under 0.4 KB (`npm run bench:alloc`).
  let size = 0;
  for (const values of headers.values()) size += values.length;
  const list = new Array<string>(2 * size);
  let at = 0;
  for (const name of headers.keys()) {
    for (const value of headers.get(name)!) {
      list[at++] = name;
      list[at++] = value;
    }
  }
  return list;
}

/**
 * The longest path, and the longest query, a policy may give a request: what the gateway's own listener accepts in a
 * whole request head by default (16 KiB, GATEHOUSE_MAX_HEADER_BYTES). Each query-parameter write copies the query,
 * so a longer one would also let a loop of writes churn through memory far beyond what it hands the host.
 */
export const MAX_POLICY_URL_PART = 16 * 1024;

export class Exchange implements TransactionalView {
  readonly requestId: string;
  /** The request's trace: the backend and policies' outbound calls get its `traceparent`. */
  readonly trace: TraceContext | null;
  readonly api: string;
  readonly apiPathPrefix: string;
  readonly operation: string;
  request: RequestState;
  response: ResponseState = { status: 200, headers: new Map(), body: null };
  backendUrl: string;
  /** Whose choice `backendUrl` is, and so how it may be reached (changes with it). */
  backendAccess: BackendAccess = 'api';
  /** The API's own backend for this request: writing it back needs no grant. */
  private readonly apiBackendUrl: string;
  readonly routeParams: Map<string, string>;
  readonly variables: Map<string, string>;
  phase: Phase = 'inbound';
  /** A policy answered (respond); the rest of the chain is skipped as documented in the ABI. */
  responded = false;
  error: ExchangeError | null = null;
  readonly timings: PolicyTiming[] = [];
  /** Effects performed with I/O for this exchange, by every policy of its chain (the per-request limit). */
  effectsPerformed = 0;
  /** What trace entries recorded (null until the first). */
  traces: TraceRecord[] | null = null;
  /** The binding whose handler is running (its configuration and body declarations apply); set by begin(). */
  binding: PolicyBinding | null = null;
  /**
   * Configuration values the host computed from expressions for the call about to run (top-level key to the value as
   * the CONFIG field gives it; "" to the whole configuration as JSON): they take the place of the binding's own. Null
   * when the entry has none.
   */
  computedConfig: ReadonlyMap<string, string> | null = null;
  /**
   * What the running call changed, to undo it: `undoLength` slots, entries of UNDO_STRIDE (what kind of change, where,
   * the key, the previous value). Flat, kept for the exchange's life and written by index, so that a write allocates
   * nothing for its undo: emptying an array by setting its length drops its backing store, which the next call's first
   * entry then allocates again (about 250 ns a call, measured). Changes made outside a call (by the gateway) are not
   * journaled (`journaling` false).
   */
  private journaling = false;
  private readonly undoLog: unknown[] = [];
  private undoLength = 0;
  /** What to do when the exchange ends (leases to release, bytes to meter); null until the first. */
  private endActions: ((usage: ExchangeUsage) => void)[] | null = null;

  constructor(init: ExchangeInit) {
    this.requestId = init.requestId;
    this.trace = init.trace ?? null;
    this.api = init.api ?? '';
    this.apiPathPrefix = init.apiPathPrefix ?? '';
    this.operation = init.operation ?? '';
    this.request = init.request;
    this.backendUrl = init.backendUrl ?? '';
    this.apiBackendUrl = this.backendUrl;
    this.routeParams = init.routeParams ?? new Map();
    this.variables = init.variables ?? new Map();
  }

  // --- end of the exchange ------------------------------------------------------------------------------------

  atEnd(action: (usage: ExchangeUsage) => void): void {
    (this.endActions ??= []).push(action);
  }

  /** Whether anything waits for the end of the exchange (the gateway then reports when the response is done). */
  get hasEndActions(): boolean {
    return this.endActions !== null;
  }

  /** Runs the end actions once; each one's failure is its own (they log what they cannot do). */
  end(usage: ExchangeUsage): void {
    const actions = this.endActions;
    this.endActions = null;
    if (actions) for (const action of actions) action(usage);
  }

  // --- transactions -------------------------------------------------------------------------------------------

  begin(binding: PolicyBinding): void {
    this.binding = binding;
    this.clearUndo();
    this.journaling = true;
  }

  commit(): void {
    this.binding = null;
    this.journaling = false;
    this.clearUndo();
  }

  rollback(): void {
    const undo = this.undoLog;
    const wasJournaling = this.journaling;
    this.binding = null;
    this.journaling = false;
    if (!wasJournaling) return;
    for (let i = this.undoLength - UNDO_STRIDE; i >= 0; i -= UNDO_STRIDE) {
      const target = undo[i + 1];
      const key = undo[i + 2];
      const previous = undo[i + 3];
      switch (undo[i]) {
        case UNDO_PROPERTY:
          (target as Record<string, unknown>)[key as string] = previous;
          break;
        case UNDO_MAP_ENTRY:
          if (previous === undefined) (target as Map<string, unknown>).delete(key as string);
          else (target as Map<string, unknown>).set(key as string, previous);
          break;
        case UNDO_APPENDED:
          (target as unknown[]).pop();
          break;
      }
    }
    this.clearUndo();
  }

  /** Empties the journal, letting go of what it held (a replaced body, say) without shrinking its array. */
  private clearUndo(): void {
    const undo = this.undoLog;
    for (let i = 0; i < this.undoLength; i++) undo[i] = undefined;
    this.undoLength = 0;
  }

  private journal(kind: number, target: object, key: string | null, previous: unknown): void {
    if (!this.journaling) return;
    const undo = this.undoLog;
    const at = this.undoLength;
    undo[at] = kind;
    undo[at + 1] = target;
    undo[at + 2] = key;
    undo[at + 3] = previous;
    this.undoLength = at + UNDO_STRIDE;
  }

  private change<T extends object, K extends keyof T & string>(target: T, key: K, value: T[K]): void {
    const previous = target[key];
    target[key] = value;
    this.journal(UNDO_PROPERTY, target, key, previous);
  }

  /** Sets or (with undefined) deletes an entry; the maps changed hold no undefined values, so undefined means absent. */
  private changeMap<V>(map: Map<string, V>, key: string, value: V | undefined): void {
    const previous = map.get(key);
    if (value === undefined) map.delete(key);
    else map.set(key, value);
    this.journal(UNDO_MAP_ENTRY, map, key, previous);
  }

  // --- reads ----------------------------------------------------------------------------------------------------

  /** `nameClass`: what header-text.ts found of `name`, if it was classified (0: nothing known). */
  read(field: number, name: string, nameClass = 0): string | Uint8Array | null | number {
    switch (field) {
      case Field.REQUEST_METHOD:
        return this.request.method;
      case Field.REQUEST_PATH:
        return this.request.path;
      case Field.REQUEST_QUERY:
        return this.request.query;
      case Field.REQUEST_QUERY_PARAM:
        return new URLSearchParams(this.request.query).get(name);
      case Field.REQUEST_HEADER:
        return joinValues(this.request.headers.get(lookupKey(name, nameClass)));
      case Field.REQUEST_BODY:
        if (!this.binding?.module.descriptor.requestBody) return Status.NOT_DECLARED;
        return this.request.body ?? new Uint8Array(0);
      case Field.CLIENT_ADDRESS:
        return this.request.clientAddress;
      case Field.RESPONSE_STATUS:
        return String(this.response.status);
      case Field.RESPONSE_HEADER:
        return joinValues(this.response.headers.get(lookupKey(name, nameClass)));
      case Field.RESPONSE_BODY:
        if (this.afterBackend() && !this.binding?.module.descriptor.responseBody) return Status.NOT_DECLARED;
        return this.response.body ?? new Uint8Array(0);
      case Field.VARIABLE:
        return this.variables.get(name) ?? null;
      case Field.CONFIG:
        return this.computedConfig?.get(name) ?? this.binding?.configValue(name) ?? null;
      case Field.ROUTE_PARAM:
        return this.routeParams.get(name) ?? null;
      case Field.BACKEND_URL:
        return this.backendUrl;
      case Field.CONTEXT:
        return this.contextValue(name);
      case Field.ERROR:
        return this.errorValue(name);
      default:
        return Status.UNKNOWN_FIELD;
    }
  }

  private afterBackend(): boolean {
    return this.phase === 'outbound' || this.phase === 'on-error';
  }

  private contextValue(name: string): string | number {
    switch (name) {
      case 'api':
        return this.api;
      case 'api-path-prefix':
        return this.apiPathPrefix;
      case 'operation':
        return this.operation;
      case 'request-id':
        return this.requestId;
      case 'phase':
        return this.phase;
      default:
        return Status.UNKNOWN_FIELD;
    }
  }

  private errorValue(name: string): string | null | number {
    if (!this.error) return null;
    switch (name) {
      case 'source':
        return this.error.source;
      case 'reason':
        return this.error.reason;
      case 'message':
        return this.error.message;
      case 'policy':
        return this.error.policy;
      default:
        return Status.UNKNOWN_FIELD;
    }
  }

  list(field: number): string[] | number {
    switch (field) {
      case Field.REQUEST_HEADER:
        return [...this.request.headers.keys()];
      case Field.RESPONSE_HEADER:
        return [...this.response.headers.keys()];
      case Field.VARIABLE:
        return [...this.variables.keys()];
      case Field.ROUTE_PARAM:
        return [...this.routeParams.keys()];
      case Field.REQUEST_QUERY_PARAM:
        return [...new Set(new URLSearchParams(this.request.query).keys())];
      default:
        return Status.UNKNOWN_FIELD;
    }
  }

  // --- writes ---------------------------------------------------------------------------------------------------

  /** `nameClass`, `valueClass`: what header-text.ts found of `name` and `value`, if they were classified (0: nothing known). */
  write(op: WriteOp, field: number, name: string, value: string | Uint8Array | null, nameClass = 0, valueClass = 0): number {
    const requestSide = field <= Field.CLIENT_ADDRESS || field === Field.BACKEND_URL;
    if (requestSide && this.afterBackend()) return Status.READ_ONLY;
    switch (field) {
      case Field.REQUEST_HEADER:
        return this.writeHeader(this.request.headers, op, name, value as string | null, nameClass, valueClass);
      case Field.RESPONSE_HEADER:
        return this.writeHeader(this.response.headers, op, name, value as string | null, nameClass, valueClass);
      case Field.VARIABLE:
        if (op === 'add') return Status.INVALID_VALUE;
        this.changeMap(this.variables, name, op === 'remove' ? undefined : (value as string));
        return Status.OK;
      case Field.REQUEST_QUERY_PARAM: {
        const query = editQuery(this.request.query, op, name, value as string | null);
        if (query.length > MAX_POLICY_URL_PART) return Status.INVALID_VALUE;
        if (query !== this.request.query) this.change(this.request, 'query', query);
        return Status.OK;
      }
    }
    if (op !== 'set') return Status.INVALID_VALUE;
    switch (field) {
      case Field.REQUEST_METHOD:
        if (!isToken(value as string)) return Status.INVALID_VALUE;
        this.change(this.request, 'method', (value as string).toUpperCase());
        return Status.OK;
      case Field.REQUEST_PATH: {
        const path = value as string;
        // Visible ASCII only (a request target carries nothing else; undici would refuse it at the backend call), and no
        // dot segments: a policy may not send a request where the gateway refuses to (routing/request-path.ts).
        if (path.length > MAX_POLICY_URL_PART) return Status.INVALID_VALUE;
        if (!path.startsWith('/') || /[^\x21-\x7e]|[?#]/.test(path) || dotSegment(path) !== null) return Status.INVALID_VALUE;
        this.change(this.request, 'path', path);
        return Status.OK;
      }
      case Field.REQUEST_QUERY: {
        const query = value as string;
        if (query.length > MAX_POLICY_URL_PART || /[^\x21-\x7e]|#/.test(query)) return Status.INVALID_VALUE;
        this.change(this.request, 'query', query.startsWith('?') ? query.slice(1) : query);
        return Status.OK;
      }
      case Field.REQUEST_BODY:
        if (!this.binding?.module.descriptor.requestBody) return Status.NOT_DECLARED;
        this.replaceBody(this.request, value as Uint8Array);
        return Status.OK;
      case Field.RESPONSE_STATUS: {
        const status = Number(value);
        if (!isFinalStatus(status)) return Status.INVALID_VALUE;
        this.change(this.response, 'status', status);
        return Status.OK;
      }
      case Field.RESPONSE_BODY:
        // Replacing a body needs no buffering (reading one after the backend does, see read()).
        this.replaceBody(this.response, value as Uint8Array);
        return Status.OK;
      case Field.BACKEND_URL: {
        const url = value as string;
        const parsed = httpUrl(url);
        if (parsed === null) return Status.INVALID_VALUE;
        if (url === this.backendUrl) return Status.OK;
        // Anywhere else than the API's own backend needs the `backend` grant: throws CallAbort('capability') otherwise.
        const access: BackendAccess =
          url === this.apiBackendUrl ? 'api' : checkEgress(parsed, 'backend', this.grantedBackends(), this.binding?.name ?? 'unknown');
        this.change(this as Exchange, 'backendUrl', url);
        if (access !== this.backendAccess) this.change(this as Exchange, 'backendAccess', access);
        return Status.OK;
      }
      case Field.CLIENT_ADDRESS:
      case Field.CONFIG:
      case Field.ROUTE_PARAM:
      case Field.CONTEXT:
      case Field.ERROR:
        return Status.READ_ONLY;
      default:
        return Status.UNKNOWN_FIELD;
    }
  }

  /**
   * Gives a request or response a new body. What a policy writes is plain: the Content-Encoding of the body it replaces
   * goes with it (a policy that writes an encoded body sets the header after the body). Outside a call (a host step),
   * not journaled.
   */
  replaceBody(message: RequestState | ResponseState, body: Uint8Array): void {
    this.change(message as ResponseState, 'body', body);
    if (message.headers.has('content-encoding')) this.changeMap(message.headers, 'content-encoding', undefined);
  }

  /** The running binding's `backend` grant: the hosts it may send the request to (undefined: not granted). */
  private grantedBackends(): readonly string[] | undefined {
    return this.binding?.grants.backend?.allowedHosts;
  }

  private writeHeader(headers: HeaderMap, op: WriteOp, rawName: string, value: string | null, nameClass: number, valueClass: number): number {
    const known = (nameClass & HEADER_KEY) !== 0;
    const name = known ? rawName : headerKey(rawName);
    if (name === null) return Status.INVALID_VALUE;
    if (known ? (nameClass & FRAMING_NAME) !== 0 : FRAMING.has(name)) return Status.READ_ONLY;
    if (op === 'remove') {
      const previous = headers.get(name);
      if (previous !== undefined) {
        headers.delete(name);
        this.journal(UNDO_MAP_ENTRY, headers, name, previous);
      }
      return Status.OK;
    }
    if (value === null || ((valueClass & SAFE_VALUE) === 0 && !isSafeValue(value))) return Status.INVALID_VALUE;
    const values = op === 'add' ? headers.get(name) : undefined;
    if (values) {
      // Appended in place, undone by removing it again: copying the values on every add made a loop of adds to one
      // header quadratic, far more work than the host charges for an add.
      values.push(value);
      this.journal(UNDO_APPENDED, values, null, null);
      return Status.OK;
    }
    this.changeMap(headers, name, [value]);
    return Status.OK;
  }

  respond(status: number): number {
    if (!isFinalStatus(status)) return Status.INVALID_VALUE;
    this.change(this.response, 'status', status);
    this.change(this as Exchange, 'responded', true);
    return Status.OK;
  }
}

/** A header's values as one field value; most headers have one, which is returned as it is. */
function joinValues(values: string[] | undefined): string | null {
  if (values === undefined) return null;
  return values.length === 1 ? values[0]! : values.join(', ');
}

/** 200–599: a 1xx status is not a final answer (a client would wait for the real one, or fail). */
function isFinalStatus(status: number): boolean {
  return Number.isInteger(status) && status >= 200 && status <= 599;
}

/** A query pair's name, decoded as URLSearchParams decodes it (`+` is a space). */
function pairName(pair: string): string {
  const eq = pair.indexOf('=');
  const raw = (eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, ' ');
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * The query with parameter `name` set (first pair replaced, later ones of that name dropped), added or removed. Pairs
 * of other names stay exactly as the client wrote them (no re-encoding: a signed URL stays signed); the new pair is
 * encoded with encodeURIComponent.
 */
function editQuery(query: string, op: WriteOp, name: string, value: string | null): string {
  const pairs = query === '' ? [] : query.split('&');
  const fresh = value === null ? '' : `${encodeURIComponent(name)}=${encodeURIComponent(value)}`;
  if (op === 'add') return [...pairs, fresh].join('&');
  const out: string[] = [];
  let placed = op === 'remove';
  for (const pair of pairs) {
    if (pair === '' || pairName(pair) !== name) out.push(pair);
    else if (!placed) {
      out.push(fresh);
      placed = true;
    }
  }
  if (!placed) out.push(fresh);
  return out.join('&');
}

/**
 * A backend URL the forwarder uses whole, parsed: http(s), a host, and nothing it would drop (credentials, a query or
 * a fragment: the request's own query is what is sent). Null for anything else.
 */
function httpUrl(s: string): URL | null {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return null;
  }
  const usable =
    (u.protocol === 'http:' || u.protocol === 'https:') &&
    u.hostname !== '' &&
    u.username === '' &&
    u.password === '' &&
    u.search === '' &&
    u.hash === '' &&
    !s.includes('?') &&
    !s.includes('#');
  return usable ? u : null;
}
