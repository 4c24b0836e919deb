// The policy demo that `npm start` runs until the data plane exists: one route, two WASM policies built from
// policies/ with the SDK, and a built-in echo backend in the same process.
//
//   curl -i localhost:8080/echo/hello                          -> 401 from check-header
//   curl -i -H 'x-api-key: demo-key' localhost:8080/echo/hello -> 200, echo body, x-gatehouse-policy header

import { Hono } from 'hono';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { buildPolicy } from '../sdk/cli/build.ts';
import { repoRoot } from './platform/paths.ts';
import { serve, type RunningServer } from './platform/serve.ts';
import { PolicyHost } from './policy-host/index.ts';
import { GatewayEffects } from './pipeline/effects.ts';
import { runChain, type PolicyChain } from './pipeline/chain.ts';
import { Exchange, type HeaderMap, type ResponseState } from './pipeline/exchange.ts';
import { MemoryCounterStore } from './state/counter-store.ts';
import { Logger } from './telemetry/logger.ts';

export async function buildDemoChain(host: PolicyHost): Promise<PolicyChain> {
  const load = async (name: string) => {
    const { wasm } = await buildPolicy({ source: join(repoRoot(), 'policies', name, 'policy.ts') });
    return host.load(wasm);
  };
  const [checkHeader, setHeader] = await Promise.all([load('check-header'), load('set-header')]);
  const chain: PolicyChain = {
    inbound: [
      host.bind({
        id: 'demo/inbound/0',
        phase: 'inbound',
        module: checkHeader,
        config: { name: 'x-api-key', values: ['demo-key'] },
      }),
    ],
    backend: [],
    outbound: [
      host.bind({
        id: 'demo/outbound/0',
        phase: 'outbound',
        module: setHeader,
        config: { name: 'x-gatehouse-policy', value: 'set-header' },
      }),
    ],
    'on-error': [],
  };
  await Promise.all([...chain.inbound, ...chain.outbound].map((b) => b.warm()));
  return chain;
}

/** The echo backend answers with what it received, as JSON. */
function echo(exchange: Exchange): Promise<ResponseState> {
  const headers: Record<string, string> = {};
  for (const [k, v] of exchange.request.headers) headers[k] = v.join(', ');
  const body = JSON.stringify({
    method: exchange.request.method,
    path: exchange.request.path,
    query: exchange.request.query,
    headers,
  });
  return Promise.resolve({
    status: 200,
    headers: new Map([['content-type', ['application/json']]]),
    body: new TextEncoder().encode(body),
  });
}

function toHeaderMap(headers: Headers): HeaderMap {
  const map: HeaderMap = new Map();
  headers.forEach((value, name) => map.set(name, [value]));
  return map;
}

export async function startDemo(port: number, logger: Logger): Promise<RunningServer> {
  const host = new PolicyHost({ logger, effects: new GatewayEffects({ counters: new MemoryCounterStore() }) });
  const chain = await buildDemoChain(host);
  const app = new Hono<{ Bindings: { remoteAddress: string } }>();
  app.get('/status-0123456789abcdef', (c) => c.text('ok'));
  app.get('/metrics', (c) => c.text(host.metrics.render()));
  app.all('/echo/*', async (c) => {
    const url = new URL(c.req.url);
    const exchange = new Exchange({
      requestId: c.req.header('x-request-id') ?? randomUUID(),
      api: 'echo',
      operation: 'any',
      request: {
        method: c.req.method,
        path: url.pathname,
        query: url.search.slice(1),
        headers: toHeaderMap(c.req.raw.headers),
        body: null,
        clientAddress: c.env.remoteAddress,
      },
    });
    await runChain(chain, exchange, echo);
    const headers = new Headers();
    for (const [name, values] of exchange.response.headers) for (const v of values) headers.append(name, v);
    headers.set('x-request-id', exchange.requestId);
    logger.info('request', {
      method: exchange.request.method,
      path: url.pathname,
      status: exchange.response.status,
      policies: exchange.timings.map((t) => ({ ...t, ms: Number(t.ms.toFixed(3)) })),
    });
    const body = exchange.response.body as Uint8Array<ArrayBuffer> | null;
    return new Response(body, { status: exchange.response.status, headers });
  });
  app.notFound((c) => c.json({ title: 'Not Found', status: 404, detail: `no route for ${c.req.path}` }, 404));
  return serve((req, info) => app.fetch(req, info), port);
}
