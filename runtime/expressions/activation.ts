// What an expression sees of a request: the variables it may name, their CEL types (checked when the configuration
// loads), and the views that read them from the exchange. A view reads a field only when the expression asks for it,
// so that a condition on the method does not pay for the headers, and keeps what it built for the rest of the
// evaluation (one evaluation, one exchange that does not change meanwhile): an expression that names the headers a
// hundred times builds their map once.

import type { Exchange, ExchangeError, HeaderMap, RequestState } from '../policy-host/exchange.ts';
import { SentResponseView, sentResponses } from './sent-responses.ts';

/**
 * A request's query as the map expressions read, by request, while its query stays the same: a client's query of
 * thousands of parameters (16 KiB of them) takes milliseconds to parse, once a request rather than once a condition.
 */
const parsedQueries = new WeakMap<RequestState, { raw: string; query: Map<string, string> }>();

/** The same for the JWT claims validate-jwt left (as JSON, up to the size of an Authorization header), by request. */
const parsedClaims = new WeakMap<ReadonlyMap<string, string>, { raw: string; claims: Record<string, unknown> }>();

/** The request as expressions see it: `request.method`, `request.headers['x-api-key']` (names in lower case). */
export class RequestView {
  private queryMap: Map<string, string> | null = null;
  private headerMap: Map<string, string> | null = null;
  constructor(private readonly exchange: Exchange) {}
  get method(): string {
    return this.exchange.request.method;
  }
  /** The path as received, percent-encoding kept, without the query. */
  get path(): string {
    return this.exchange.request.path;
  }
  /** Query parameters by name; a name given more than once has its values joined with ",". */
  get query(): Map<string, string> {
    if (this.queryMap !== null) return this.queryMap;
    const request = this.exchange.request;
    const parsed = parsedQueries.get(request);
    if (parsed !== undefined && parsed.raw === request.query) return (this.queryMap = parsed.query);
    const query = new Map<string, string>();
    for (const [name, value] of new URLSearchParams(request.query)) {
      const before = query.get(name);
      query.set(name, before === undefined ? value : `${before},${value}`);
    }
    parsedQueries.set(request, { raw: request.query, query });
    return (this.queryMap = query);
  }
  get headers(): Map<string, string> {
    return (this.headerMap ??= joined(this.exchange.request.headers));
  }
  get clientAddress(): string {
    return this.exchange.request.clientAddress;
  }
}

/** The response so far, in outbound and on-error: the backend's, or the gateway's error answer. */
export class ResponseView {
  private headerMap: Map<string, string> | null = null;
  constructor(private readonly exchange: Exchange) {}
  get status(): bigint {
    return BigInt(this.exchange.response.status);
  }
  get headers(): Map<string, string> {
    return (this.headerMap ??= joined(this.exchange.response.headers));
  }
}

/** A header's values joined with ", ", as the policy ABI reads them (RFC 9110's list syntax). */
function joined(headers: HeaderMap): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, values] of headers) out.set(name, values.length === 1 ? values[0]! : values.join(', '));
  return out;
}

/** What failed, in on-error (APIM's context.LastError): `lastError.reason`, `lastError.policy`. */
export class LastErrorView {
  constructor(private readonly exchange: Exchange) {}
  private get error(): ExchangeError {
    // Compiled for on-error only (cel.ts), where the chain has always set it.
    return this.exchange.error ?? { source: 'gateway', reason: '', message: '', policy: '', status: 500 };
  }
  get source(): string {
    return this.error.source;
  }
  get reason(): string {
    return this.error.reason;
  }
  get message(): string {
    return this.error.message;
  }
  /** The binding id of the entry that failed; empty when the backend or the gateway failed. */
  get policy(): string {
    return this.error.policy;
  }
  get status(): bigint {
    return BigInt(this.error.status);
  }
}

/** The variable validate-jwt leaves the verified token's claims in, as JSON. */
const CLAIMS_VARIABLE = 'jwt-claims';

/** The context of one evaluation: each top-level name an expression may use is a getter. */
export class Activation {
  private requestView: RequestView | null = null;
  private responseView: ResponseView | null = null;
  private claims: Record<string, unknown> | null = null;
  constructor(
    private readonly exchange: Exchange,
    readonly namedValues: ReadonlyMap<string, string>,
  ) {}
  get request(): RequestView {
    return (this.requestView ??= new RequestView(this.exchange));
  }
  get response(): ResponseView {
    return (this.responseView ??= new ResponseView(this.exchange));
  }
  get api(): string {
    return this.exchange.api;
  }
  get operation(): string {
    return this.exchange.operation;
  }
  get requestId(): string {
    return this.exchange.requestId;
  }
  /** The W3C trace id of the request (its caller's, or the one the gateway started); empty outside the gateway. */
  get traceId(): string {
    return this.exchange.trace?.traceId ?? '';
  }
  /** The operation's URL template parameters (`/orders/{id}` gives `route.id`). */
  get route(): ReadonlyMap<string, string> {
    return this.exchange.routeParams;
  }
  /** The request's variables, as policies and set-variable left them. */
  get variables(): ReadonlyMap<string, string> {
    return this.exchange.variables;
  }
  /** What send-request stored, by its response variable. */
  get responses(): ReadonlyMap<string, SentResponseView> {
    return sentResponses(this.exchange);
  }
  /** What failed (on-error only). */
  get lastError(): LastErrorView {
    return new LastErrorView(this.exchange);
  }
  /** The claims of the token validate-jwt verified (empty when none was). */
  get jwt(): Record<string, unknown> {
    if (this.claims !== null) return this.claims;
    const variables = this.exchange.variables;
    const json = variables.get(CLAIMS_VARIABLE);
    if (json === undefined) return (this.claims = {});
    const parsed = parsedClaims.get(variables);
    if (parsed !== undefined && parsed.raw === json) return (this.claims = parsed.claims);
    const value: unknown = JSON.parse(json);
    const claims = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
    parsedClaims.set(variables, { raw: json, claims });
    return (this.claims = claims);
  }
}

/** The message types expressions see, for the type checker. */
export const EXPRESSION_TYPES: readonly [string, { ctor: new (exchange: Exchange) => unknown; fields: Record<string, string> }][] = [
  [
    'gatehouse.Request',
    {
      ctor: RequestView,
      fields: { method: 'string', path: 'string', query: 'map<string, string>', headers: 'map<string, string>', clientAddress: 'string' },
    },
  ],
  ['gatehouse.Response', { ctor: ResponseView, fields: { status: 'int', headers: 'map<string, string>' } }],
  [
    'gatehouse.SentResponse',
    { ctor: SentResponseView as never, fields: { status: 'int', headers: 'map<string, string>', body: 'string', json: 'dyn' } },
  ],
  [
    'gatehouse.LastError',
    { ctor: LastErrorView, fields: { source: 'string', reason: 'string', message: 'string', policy: 'string', status: 'int' } },
  ],
];

/** The top-level names an expression may use, with their CEL types. */
export const EXPRESSION_VARIABLES: readonly [string, string][] = [
  ['request', 'gatehouse.Request'],
  ['response', 'gatehouse.Response'],
  ['api', 'string'],
  ['operation', 'string'],
  ['requestId', 'string'],
  ['traceId', 'string'],
  ['route', 'map<string, string>'],
  ['variables', 'map<string, string>'],
  ['namedValues', 'map<string, string>'],
  ['jwt', 'map<string, dyn>'],
  ['responses', 'map<string, gatehouse.SentResponse>'],
  ['lastError', 'gatehouse.LastError'],
];
