// The responses send-request stored, as expressions read them (`responses.<variable>.status`). A module reads the same
// response as JSON text from the variable of that name (the ABI's VARIABLE field); expressions get it typed, with the
// body parsed as JSON only when an expression asks for `json`.

import type { Exchange } from '../policy-host/exchange.ts';

/** What send-request received, as it stores it in the request's variables (JSON text) and keeps for expressions. */
export interface SentResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A stored response as expressions see it: `status` (int), `headers` (map), `body` (text), `json` (the body parsed). */
export class SentResponseView {
  private parsed: { value: unknown } | null = null;
  readonly status: bigint;
  readonly headers: Map<string, string>;
  readonly body: string;
  constructor(response: SentResponse) {
    this.status = BigInt(response.status);
    this.headers = new Map(Object.entries(response.headers));
    this.body = response.body;
  }
  /** The body as JSON; a body that is not JSON fails the expression that reads it, with the parser's reason. */
  get json(): unknown {
    if (this.parsed === null) {
      try {
        this.parsed = { value: JSON.parse(this.body) };
      } catch (err) {
        throw new Error(`the response body is not JSON: ${(err as Error).message}`);
      }
    }
    return this.parsed.value;
  }
}

/** By exchange: the responses its send-requests stored, by variable name (kept for the exchange's life only). */
const stored = new WeakMap<Exchange, Map<string, SentResponseView>>();

/** Stores `response` under `name`: the variable (JSON text, for modules) and the view (for expressions). */
export function storeSentResponse(exchange: Exchange, name: string, response: SentResponse): void {
  exchange.variables.set(name, JSON.stringify(response));
  let views = stored.get(exchange);
  if (views === undefined) stored.set(exchange, (views = new Map()));
  views.set(name, new SentResponseView(response));
}

/** Forgets what `name` held (an ignored failure leaves no response, as in APIM). */
export function clearSentResponse(exchange: Exchange, name: string): void {
  exchange.variables.delete(name);
  stored.get(exchange)?.delete(name);
}

const NONE: ReadonlyMap<string, SentResponseView> = new Map();

/** The responses stored for this exchange, by variable name. */
export function sentResponses(exchange: Exchange): ReadonlyMap<string, SentResponseView> {
  return stored.get(exchange) ?? NONE;
}
