// A configuration ready to serve: the router, each API's backends, and each operation's stacked policy chain.
// Built once per configuration document; the gateway swaps the whole object at once, so a request sees one or the
// other, never a mix.

import type { GatewayDocument, HealthCheckDocument, RetryDocument } from '../config/types.ts';
import type { HealthCheckSettings, HealthEvents } from '../proxy/health-check.ts';
import { DEFAULT_POOL_RETRY, NO_RETRY, type RetryFailure, type RetrySettings } from '../proxy/retry.ts';
import { PHASES } from '../../abi/index.ts';
import { bindingsIn, readsBody, stackScopes, type PolicyChain } from '../pipeline/chain.ts';
import type { ConnectorFactory } from '../network/connector.ts';
import { BackendSet } from '../proxy/backends.ts';
import { Router, normalizePrefix, type RouteApi } from '../routing/router.ts';

export interface OperationRuntime {
  id: string;
  /**
   * The operation's URL template below the API prefix (`/orders/{id}`), `/*` for the operation of APIs that declare
   * none: a request's name in upstream telemetry, where raw paths with ids in them would make too many names.
   */
  pathTemplate: string;
  chain: PolicyChain;
  /** A policy in the chain reads the request body: buffer it before the chain runs. */
  needsRequestBody: boolean;
  /** A policy after the backend reads the response body: buffer it before outbound runs. */
  needsResponseBody: boolean;
  /** WebSocket upgrades allowed here, with their limits; null: refused. */
  webSocket: WebSocketRuntime | null;
}

export interface WebSocketRuntime {
  idleTimeoutMs: number;
  maxMessageBytes: number;
  /** Open at once on the API (0: only the gateway's limit). */
  apiMaxConnections: number;
}

export const WEBSOCKET_DEFAULTS = { idleTimeoutMs: 300_000, maxMessageBytes: 16 * 1024 * 1024, maxConnections: 10_000 } as const;

export interface ApiRuntime {
  id: string;
  prefix: string;
  backends: BackendSet;
  /** The operation of APIs that declare none. */
  defaultOperation: OperationRuntime;
}

export interface GatewaySettingsResolved {
  maxRequestBodyBytes: number;
  backendTimeoutMs: number;
  /** WebSocket connections open at once in the gateway. */
  webSocketMaxConnections: number;
}

export interface LiveConfig {
  readonly source: string;
  readonly settings: GatewaySettingsResolved;
  readonly router: Router<ApiRuntime, OperationRuntime>;
  readonly apis: readonly ApiRuntime[];
  /** The configuration is put in force: its backends' health checks start. */
  activate(): void;
  /** A request takes this configuration: its backends must take the request until it leaves. */
  enter(): void;
  /** The request is answered: it dispatched to the backends already (their pools finish what they run) or never will. */
  leave(): void;
  /**
   * The configuration was replaced: once every request that entered has left, drops what its policies kept for replay
   * (their share of the policy host's budget) and closes the backends' connection pools.
   * A request that took it may still be running its inbound policies (a Redis round trip, a request body the chain
   * reads whole) and dispatch only then.
   */
  retire(): Promise<void>;
  /**
   * Closes the backends' connection pools, letting the requests they run finish (shutdown, after draining); with `cut`,
   * ending them (the shutdown timeout has passed).
   */
  close(cut?: boolean): Promise<void>;
}

export interface BoundChainsLike {
  global: Partial<PolicyChain>;
  apis: Map<string, { api: Partial<PolicyChain>; operations: Map<string, Partial<PolicyChain>> }>;
}

export interface BuildOptions {
  source: string;
  /** What `builtin:echo` stands for. */
  echoUrl: string;
  /** Opens the backends' connections: the runtime adapter's connector. */
  connect?: ConnectorFactory;
  /** Who hears of an API's active health checks; none are run without it. */
  healthEvents?: (api: string) => HealthEvents;
}

/** An API's retries: its `backend.retry`, else once more on another member of a pool after a connection failure. */
function retrySettings(doc: RetryDocument | undefined, members: number): RetrySettings {
  if (!doc) return members > 1 ? DEFAULT_POOL_RETRY : NO_RETRY;
  const on = doc.on ?? ['connect-failure', 'reset'];
  return {
    count: doc.count ?? 1,
    failures: new Set(on.filter((x): x is RetryFailure => typeof x === 'string')),
    statuses: new Set(on.filter((x): x is number => typeof x === 'number')),
    backoffMs: doc.backoffMs ?? 25,
    maxBackoffMs: doc.maxBackoffMs ?? 1000,
    budgetPercent: doc.budgetPercent ?? DEFAULT_POOL_RETRY.budgetPercent,
    minRetriesPerSecond: doc.minRetriesPerSecond ?? DEFAULT_POOL_RETRY.minRetriesPerSecond,
  };
}

function healthCheckSettings(doc: HealthCheckDocument): HealthCheckSettings {
  const expected = doc.expectedStatus ?? 200;
  return {
    path: doc.path,
    intervalMs: doc.intervalMs ?? 5000,
    timeoutMs: doc.timeoutMs ?? 2000,
    expectedStatuses: new Set(Array.isArray(expected) ? expected : [expected]),
    healthyThreshold: doc.healthyThreshold ?? 2,
    unhealthyThreshold: doc.unhealthyThreshold ?? 3,
  };
}

export function buildLiveConfig(doc: GatewayDocument, chains: BoundChainsLike, options: BuildOptions): LiveConfig {
  const settings: GatewaySettingsResolved = {
    maxRequestBodyBytes: doc.settings?.maxRequestBodyBytes ?? 10 * 1024 * 1024,
    backendTimeoutMs: doc.settings?.backendTimeoutMs ?? 30_000,
    webSocketMaxConnections: doc.settings?.webSocket?.maxConnections ?? WEBSOCKET_DEFAULTS.maxConnections,
  };
  const apis: ApiRuntime[] = [];
  const routes: RouteApi<ApiRuntime, OperationRuntime>[] = [];
  for (const api of doc.apis) {
    const bound = chains.apis.get(api.id) ?? { api: {}, operations: new Map() };
    const resolve = (url: string) => (url === 'builtin:echo' ? options.echoUrl : url);
    const urls = api.backend.url ? [resolve(api.backend.url)] : api.backend.pool!.urls.map(resolve);
    const check = api.backend.pool?.healthCheck;
    const backends = new BackendSet(urls, {
      api: api.id,
      timeoutMs: api.backend.timeoutMs ?? settings.backendTimeoutMs,
      ejectAfterFailures: api.backend.pool?.ejectAfterFailures ?? 3,
      ejectForMs: api.backend.pool?.ejectForMs ?? 10_000,
      connections: 64,
      protocol: api.backend.protocol ?? 'http/1.1',
      connect: options.connect,
      retry: retrySettings(api.backend.retry, urls.length),
      healthCheck: check && options.healthEvents ? { settings: healthCheckSettings(check), events: options.healthEvents(api.id) } : undefined,
    });
    const ws = api.webSocket;
    const webSocket: WebSocketRuntime = {
      idleTimeoutMs: ws?.idleTimeoutMs ?? WEBSOCKET_DEFAULTS.idleTimeoutMs,
      maxMessageBytes: ws?.maxMessageBytes ?? WEBSOCKET_DEFAULTS.maxMessageBytes,
      apiMaxConnections: ws?.maxConnections ?? 0,
    };
    const operation = (id: string, pathTemplate: string, scoped: Partial<PolicyChain>, allowsWebSocket = ws !== undefined): OperationRuntime =>
      analyse(id, pathTemplate, stackScopes(chains.global, bound.api, scoped), allowsWebSocket ? webSocket : null);
    const runtime: ApiRuntime = {
      id: api.id,
      prefix: normalizePrefix(api.pathPrefix),
      backends,
      defaultOperation: operation('default', '/*', {}),
    };
    apis.push(runtime);
    routes.push({
      id: api.id,
      pathPrefix: api.pathPrefix,
      hosts: api.hosts ?? null,
      operations:
        api.operations && api.operations.length > 0
          ? api.operations.map((op) => ({
              id: op.id,
              method: op.method.toUpperCase(),
              template: op.urlTemplate,
              value: operation(op.id, op.urlTemplate, bound.operations.get(op.id) ?? {}, op.webSocket ?? ws !== undefined),
            }))
          : null,
      value: runtime,
    });
  }
  let users = 0;
  let lastLeft: (() => void) | null = null;
  const close = async (cut = false) => {
    await Promise.all(apis.map((a) => a.backends.close(cut)));
  };
  return {
    source: options.source,
    settings,
    router: new Router(routes),
    apis,
    activate: () => {
      for (const a of apis) a.backends.startHealthChecks();
    },
    enter: () => {
      users++;
    },
    leave: () => {
      if (--users === 0) lastLeft?.();
    },
    retire: async () => {
      if (users > 0) await new Promise<void>((resolve) => (lastLeft = resolve));
      for (const binding of bindingsOf(chains)) binding.dropReplays();
      await close();
    },
    close,
  };
}

/** Every policy binding of a document's chains, each once (the global scope's stand in every operation's chain). */
function bindingsOf(chains: BoundChainsLike) {
  const scopes = [chains.global, ...[...chains.apis.values()].flatMap((bound) => [bound.api, ...bound.operations.values()])];
  return new Set(scopes.flatMap((scope) => PHASES.flatMap((phase) => bindingsIn(scope[phase] ?? []))));
}

function analyse(id: string, pathTemplate: string, chain: PolicyChain, webSocket: WebSocketRuntime | null): OperationRuntime {
  return {
    id,
    pathTemplate,
    chain,
    needsRequestBody: readsBody([...chain.inbound, ...chain.backend], 'requestBody'),
    needsResponseBody: readsBody([...chain.outbound, ...chain['on-error']], 'responseBody'),
    webSocket,
  };
}
