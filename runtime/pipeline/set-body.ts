// set-body: replaces the request body (inbound, backend) or the response body (outbound, on-error) with text, a CEL
// expression's value, or a Liquid template's output (APIM's set-body, with `template="liquid"`). A host step rather
// than a module: a Liquid engine in WebAssembly would be one of our own, and liquidjs is a maintained implementation
// of the language APIM documents. What a template may cost is bounded: its size when it loads, its parse and render
// time, the memory its loops and strings take (liquidjs's own limits) and its output; it reads no file (no include,
// render or layout).

import { Liquid, type Template } from 'liquidjs';

import type { Phase } from '../../abi/index.ts';
import { ExpressionError, type Expression } from '../expressions/cel.ts';
import { PolicyFailure } from '../policy-host/errors.ts';
import type { Exchange, HeaderMap } from '../policy-host/exchange.ts';
import type { ChainStep } from './chain.ts';

/** The longest template accepted. */
export const MAX_TEMPLATE_LENGTH = 64 * 1024;
/** The largest body set-body writes (a template's output, an expression's value). */
export const MAX_SET_BODY_BYTES = 1024 * 1024;
/**
 * Milliseconds a template may take to render: liquidjs measures time on the clock, so on a machine shared with other
 * work this must leave room for being descheduled (a first render under a load average of 20 took over 50 ms).
 */
const RENDER_LIMIT_MS = 100;
/**
 * What a render may allocate, as liquidjs counts it (characters of strings built, elements of ranges). Small because
 * liquidjs checks its time limit between iterations of a loop, after building the loop's range: a range of a million
 * elements ran 0.4 s past the time limit here, one of 256 Ki about 15 ms.
 */
const MEMORY_LIMIT = 256 * 1024;

/** Tags that read other templates from files: nothing to read, so refused when the template loads. */
const FILE_TAGS = ['include', 'render', 'layout'];

const engine = (() => {
  const liquid = new Liquid({
    parseLimit: MAX_TEMPLATE_LENGTH,
    renderLimit: RENDER_LIMIT_MS,
    memoryLimit: MEMORY_LIMIT,
    ownPropertyOnly: true,
    strictFilters: true,
    relativeReference: false,
    // No file is ever read: the tags that would are refused below, and this answers any other way there.
    fs: {
      exists: async () => false,
      existsSync: () => false,
      readFile: async () => '',
      readFileSync: () => '',
      resolve: (_dir: string, file: string) => file,
    },
  });
  for (const tag of FILE_TAGS) {
    liquid.registerTag(tag, {
      parse() {
        throw new Error(`the ${tag} tag reads another template from a file; a set-body template stands alone`);
      },
      render() {
        return '';
      },
    });
  }
  // The first render of a process compiles liquidjs's paths (tags, filters, the loop): done here, once, rather than
  // in the first request's time limit. Without a time limit of its own: this fixed template is bounded, and the
  // process is starting, when the engine compiles everything at once (on a loaded machine this render took past
  // RENDER_LIMIT_MS, and the gateway died at start-up with liquidjs's "template render limit exceeded").
  liquid.renderSync(liquid.parse('{% for i in (1..2) %}{{ i | plus: 1 | append: "x" | upcase }}{% endfor %}{{ a.b | default: "c" }}'), {}, { renderLimit: Infinity });
  return liquid;
})();

/** A Liquid template, parsed; the problems that refuse it otherwise (each a sentence). */
export function parseLiquid(text: string): { template: Template[]; readsBody: boolean } | string[] {
  if (text.length > MAX_TEMPLATE_LENGTH) return [`the template is ${text.length} characters long; at most ${MAX_TEMPLATE_LENGTH}`];
  try {
    return { template: engine.parse(text), readsBody: /\bbody\b/.test(text) };
  } catch (err) {
    return [`Liquid: ${((err as Error).message ?? String(err)).split('\n')[0]}`];
  }
}

export type BodyValue = { kind: 'text'; text: string } | { kind: 'expression'; expression: Expression } | { kind: 'liquid'; template: Template[] };

export class SetBody implements ChainStep {
  readonly nested: readonly ChainStep[] = [];

  constructor(
    readonly id: string,
    private readonly value: BodyValue,
    /** Content-Type to set with the body; null leaves the header as it is. */
    private readonly contentType: string | null,
    /** Whether it reads the body of its phase: always in inbound and backend (replacing a streamed body needs it held). */
    readonly readsBody: boolean,
    readonly wallMs: () => number,
    readonly failOpen = false,
  ) {}

  runNow(phase: Phase, exchange: Exchange): undefined {
    const onRequest = phase === 'inbound' || phase === 'backend';
    const text = this.render(exchange, onRequest);
    const bytes = new TextEncoder().encode(text);
    if (bytes.length > MAX_SET_BODY_BYTES) {
      throw new PolicyFailure(this.id, 'expression', `the body is ${bytes.length} bytes; set-body writes at most ${MAX_SET_BODY_BYTES}`);
    }
    const target = onRequest ? exchange.request : exchange.response;
    exchange.replaceBody(target, bytes);
    if (this.contentType !== null) target.headers.set('content-type', [this.contentType]);
    return undefined;
  }

  private render(exchange: Exchange, onRequest: boolean): string {
    const value = this.value;
    if (value.kind === 'text') return value.text;
    try {
      if (value.kind === 'expression') return value.expression.text(exchange);
      return engine.renderSync(value.template, liquidScope(exchange, onRequest)) as string;
    } catch (err) {
      const message = err instanceof ExpressionError ? err.message : `Liquid: ${((err as Error).message ?? String(err)).split('\n')[0]}`;
      throw new PolicyFailure(this.id, 'expression', message);
    }
  }
}

/** What a template sees, in APIM's names: `body` (JSON parsed when it is JSON) and `context`. */
function liquidScope(exchange: Exchange, onRequest: boolean): Record<string, unknown> {
  const request = exchange.request;
  const held = onRequest ? request.body : exchange.response.body;
  const headers = onRequest ? request.headers : exchange.response.headers;
  const afterBackend = exchange.phase === 'outbound' || exchange.phase === 'on-error';
  return {
    body: bodyValue(held, joined(headers)['content-type'] ?? ''),
    context: {
      Request: {
        Method: request.method,
        Url: { Path: request.path, QueryString: request.query, Query: Object.fromEntries(new URLSearchParams(request.query)) },
        Headers: joined(request.headers),
        IpAddress: request.clientAddress,
        MatchedParameters: Object.fromEntries(exchange.routeParams),
      },
      ...(afterBackend ? { Response: { StatusCode: exchange.response.status, Headers: joined(exchange.response.headers) } } : {}),
      Variables: Object.fromEntries(exchange.variables),
      Api: { Id: exchange.api },
      Operation: { Id: exchange.operation },
      RequestId: exchange.requestId,
      ...(exchange.error ? { LastError: { Source: exchange.error.source, Reason: exchange.error.reason, Message: exchange.error.message, PolicyId: exchange.error.policy } } : {}),
    },
  };
}

/** The body as a template reads it: parsed when it is JSON (by its content type), else text. */
function bodyValue(body: Uint8Array | null, contentType: string): unknown {
  if (body === null || body.length === 0) return '';
  const text = new TextDecoder().decode(body);
  if (!/\bjson\b|\+json\b/i.test(contentType)) return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function joined(headers: HeaderMap): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, values] of headers) out[name] = values.join(', ');
  return out;
}
