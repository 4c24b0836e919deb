// send-request and send-one-way-request: a call to another service from the middle of a chain (APIM's policies of the
// same names). The gateway makes the call itself, through the policies' HTTP effect (effects.ts): the same grant check
// (`grants.http.allowedHosts`, with the egress rules of abi/policy-abi.md section 5), the same caps (1 MiB response,
// 30 s timeout, the gateway's HTTP effects in flight) and the same per-request effect count. It is a host step and not
// a WebAssembly module because its URL, headers and body are expressions evaluated for each request, and because its
// response is kept typed for expressions (`responses.<variable>.status`, `.json`) as well as stored as JSON text in the
// variable that modules read.

import { EffectKind, MAX_EFFECTS_PER_REQUEST, type Phase } from '../../abi/index.ts';
import { ExpressionError, type Expression } from '../expressions/cel.ts';
import { clearSentResponse, storeSentResponse } from '../expressions/sent-responses.ts';
import type { EffectRunner } from '../policy-host/binding.ts';
import { CallAbort, PolicyFailure } from '../policy-host/errors.ts';
import type { Exchange } from '../policy-host/exchange.ts';
import type { Grants } from '../policy-host/index.ts';
import type { ChainStep } from './chain.ts';

/** A value written as it is, or an expression computed for each request. */
export type TextValue = string | Expression;

/** The longest wait for an answer: the HTTP effect's own bound. */
export const MAX_SEND_TIMEOUT_SECONDS = 30;
/** The largest response body stored, unless `maxResponseBytes` says otherwise; at most the HTTP effect's 1 MiB. */
export const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024;
export const MAX_RESPONSE_BYTES = 1024 * 1024;

/** Request headers `mode: copy` leaves out: the connection's own, and what the new request's URL decides. */
const NOT_COPIED = new Set(['host', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length', 'proxy-connection']);

export interface SendRequestSettings {
  /** `new`: only what is configured; `copy`: the current request's method, headers and held body, then the settings. */
  mode: 'new' | 'copy';
  url: TextValue;
  /** Null: GET for `new`, the request's method for `copy`. */
  method: TextValue | null;
  headers: readonly [string, TextValue][];
  body: TextValue | null;
  timeoutSeconds: number;
  /** Where the response goes (send-request); null for send-one-way-request. */
  responseVariable: string | null;
  /** A failed call (network, timeout, size) leaves the variable absent instead of failing the entry. */
  ignoreError: boolean;
  maxResponseBytes: number;
  /** The entry's grants: `http.allowedHosts` says where it may call. */
  grants: Grants;
}

/** The host's HTTP effect, as a step of the chain. */
export class SendRequest implements ChainStep {
  readonly nested: readonly ChainStep[] = [];

  constructor(
    readonly id: string,
    private readonly settings: SendRequestSettings,
    private readonly effects: EffectRunner,
    readonly wallMs: () => number,
    readonly failOpen = false,
    /** Logs what a one-way request could not do (nobody waits for it). */
    private readonly onOneWayFailure: (id: string, message: string) => void = () => undefined,
  ) {}

  runNow(_phase: Phase, exchange: Exchange): Promise<void> | undefined {
    const request = this.request(exchange);
    if (exchange.effectsPerformed >= MAX_EFFECTS_PER_REQUEST) {
      throw new PolicyFailure(this.id, 'effects', `the request's policies asked for more than ${MAX_EFFECTS_PER_REQUEST} effects`);
    }
    exchange.effectsPerformed++;
    const context = { binding: this.id, policy: this.id, grants: this.settings.grants };
    const sent = this.effects.perform(EffectKind.HTTP, JSON.stringify(request), context);
    const variable = this.settings.responseVariable;
    if (variable === null) {
      // One way: the chain goes on at once; what goes wrong is logged, as nobody waits for the answer.
      sent.then(
        (result) => {
          const error = (JSON.parse(result) as { error?: string }).error;
          if (error !== undefined) this.onOneWayFailure(this.id, error);
        },
        (err: unknown) => this.onOneWayFailure(this.id, (err as Error)?.message ?? String(err)),
      );
      return undefined;
    }
    return sent.then(
      (result) => this.store(exchange, variable, JSON.parse(result) as Record<string, unknown>),
      (err: unknown) => {
        // A host outside the grant (or its name resolving where the grant does not reach) is the configuration's
        // mistake, never ignored.
        if (err instanceof CallAbort) throw new PolicyFailure(this.id, err.reason, err.message);
        throw err;
      },
    );
  }

  /** The effect's request: the settings computed for this exchange. */
  private request(exchange: Exchange): Record<string, unknown> {
    const s = this.settings;
    const text = (value: TextValue, what: string): string => {
      if (typeof value === 'string') return value;
      try {
        return value.text(exchange);
      } catch (err) {
        if (err instanceof ExpressionError) throw new PolicyFailure(this.id, 'expression', `${what}: ${err.message}`);
        throw err;
      }
    };
    const url = text(s.url, 'url');
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new PolicyFailure(this.id, 'expression', `url ${JSON.stringify(url.slice(0, 200))} is not an absolute URL`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new PolicyFailure(this.id, 'expression', `url ${JSON.stringify(url.slice(0, 200))} is not http or https`);
    }
    const headers: Record<string, string> = {};
    let method = 'GET';
    let body: string | undefined;
    if (s.mode === 'copy') {
      method = exchange.request.method;
      for (const [name, values] of exchange.request.headers) if (!NOT_COPIED.has(name)) headers[name] = values.join(', ');
      // A body the chain holds (a policy declared it reads it) is copied; a streamed one belongs to the backend.
      if (exchange.request.body !== null) body = new TextDecoder().decode(exchange.request.body);
    }
    if (s.method !== null) method = text(s.method, 'method').toUpperCase();
    for (const [name, value] of s.headers) headers[name] = text(value, `headers.${name}`);
    if (s.body !== null) body = text(s.body, 'body');
    return { method, url, headers, ...(body === undefined ? {} : { body }), timeoutMs: s.timeoutSeconds * 1000 };
  }

  /** Stores the answer, or fails the entry (or, with ignoreError, leaves the variable absent). */
  private store(exchange: Exchange, variable: string, result: Record<string, unknown>): void {
    const s = this.settings;
    let problem = typeof result.error === 'string' ? result.error : null;
    const body = typeof result.body === 'string' ? result.body : '';
    const bytes = problem === null ? new TextEncoder().encode(body).length : 0;
    if (bytes > s.maxResponseBytes) problem = `the response body is ${bytes} bytes; maxResponseBytes is ${s.maxResponseBytes}`;
    if (problem !== null) {
      if (s.ignoreError) {
        clearSentResponse(exchange, variable);
        return;
      }
      throw new PolicyFailure(this.id, 'outbound', problem);
    }
    storeSentResponse(exchange, variable, {
      status: Number(result.status),
      headers: (result.headers ?? {}) as Record<string, string>,
      body,
    });
  }
}
