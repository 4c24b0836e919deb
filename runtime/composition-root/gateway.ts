// The gateway's composition root: it chooses the runtime adapter and makes and wires every part of a gateway. The
// configuration comes from a file (or the embedded default), reloaded when the file changes, or from a control plane;
// the gateway serves HTTP(S) plus the admin listener until SIGTERM, then drains.

import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigError } from '../config/config-error.ts';
import { secretValues } from '../config/named-values.ts';
import { prepareDocument } from '../config/prepare-document.ts';
import { ConfigFileWatcher } from '../config/watch.ts';
import { SourceFolderWatcher, sourceFolders } from '../config/source-watch.ts';
import { ConfigBackup } from '../sync/backup.ts';
import { ConfigSync } from '../sync/config-sync.ts';
import { ControlPlaneClient } from '../sync/control-plane-client.ts';
import { InstrumentedModuleCache } from '../sync/instrumented-cache.ts';
import { ModuleCache } from '../sync/modules.ts';
import { RequestAggregates } from '../telemetry/aggregates.ts';
import type { KeyObject } from 'node:crypto';
import type { GatewayAssets } from '../assets/gateway-assets.ts';
import { EgressGuard } from '../network/egress-guard.ts';
import { listen, listenDataPlane, type Listener } from '../server/http-server.ts';
import type { Http2Protocols, HttpLimits } from '../server/http-limits.ts';
import { GatewayEffects } from '../pipeline/effects.ts';
import { PolicyHost } from '../policy-host/index.ts';
import { Forwarder } from '../proxy/forward.ts';
import { MemoryCounterStore, type CounterStore } from '../state/counter-store.ts';
import { DEFAULT_CACHE_LIMITS, MemoryCacheStore, type CacheLimits, type CacheStore } from '../state/cache-store.ts';
import type { Logger } from '../telemetry/logger.ts';
import { MetricsRegistry } from '../telemetry/metrics.ts';
import { registerLogMetrics, registerProcessMetrics } from '../telemetry/process-metrics.ts';
import { startApplicationInsights, type ApplicationInsightsSettings } from '../telemetry/appinsights.ts';
import type { OtlpSettings } from '../telemetry/otlp-settings.ts';
import { TelemetryFanout, type RequestTelemetry } from '../telemetry/request-telemetry.ts';
import { FIXED_PATHS, adminApp, dataPlaneApp } from '../server/app.ts';
import { startEchoBackend, type EchoBackend } from '../server/echo.ts';
import { Gateway } from '../gateway/gateway.ts';
import { buildLiveConfig, type LiveConfig } from '../gateway/live-config.ts';
import { ConfigStore, type PreparedConfig } from '../gateway/config-store.ts';
import { healthEvents, registerBackendGauge } from '../gateway/backend-health.ts';
import { runtimeAdapter } from '../adapters/index.ts';
import { shutdown, TELEMETRY_FLUSH_MIN_MS } from './shutdown.ts';

export interface GatewayOptions {
  logger: Logger;
  /** The configuration file to serve and watch; null: the embedded default. */
  configFile: string | null;
  /** The default document, the built-in policies and the version: from the repository, or inside the single-file bundle. */
  assets: GatewayAssets;
  httpPort: number;
  httpsPort: number | null;
  tls?: { cert: string; key: string };
  adminPort: number;
  /** The address the admin listener binds (GATEHOUSE_ADMIN_HOST); default 127.0.0.1. */
  adminHost?: string;
  /** What the data plane allows clients: timeouts, head size, connections (GATEHOUSE_HEADERS_TIMEOUT_MS...). */
  httpLimits?: HttpLimits;
  /** Where the data plane speaks HTTP/2 (GATEHOUSE_HTTP2, GATEHOUSE_HTTP2_CLEARTEXT); DEFAULT_HTTP2 when absent. */
  http2?: Http2Protocols;
  /**
   * After SIGTERM, how long the gateway answers 503 on its probes while still serving, before it stops accepting
   * (GATEHOUSE_SHUTDOWN_DELAY_MS): the time a load balancer needs to notice and stop sending new requests.
   */
  shutdownDelayMs?: number;
  /** How long in-flight requests get once the gateway stops accepting (GATEHOUSE_SHUTDOWN_TIMEOUT_MS). */
  shutdownTimeoutMs: number;
  /** Poll interval of the configuration file. */
  watchIntervalMs?: number;
  /**
   * HTTP effects in flight at once, every policy of the gateway together (GATEHOUSE_POLICY_HTTP_IN_FLIGHT); past it a
   * policy's effect gets an error result. Default DEFAULT_HTTP_IN_FLIGHT (64).
   */
  policyHttpInFlight?: number;
  /**
   * Whether calls of policies that declare themselves deterministic may be answered with an earlier call's changes
   * (GATEHOUSE_POLICY_REPLAY; policy-host/replay.ts). Default true.
   */
  policyReplay?: boolean;
  /**
   * Where metered policy modules are kept between starts (GATEHOUSE_INSTRUMENTED_CACHE_DIR; sync/instrumented-cache.ts);
   * default: `instrumented/` in the backup directory when there is one, else `gatehouse-instrumented-<uid>` in the
   * system's temporary folder.
   */
  instrumentedCacheDir?: string;
  /** The key that seals the cache's entries (GATEHOUSE_INSTRUMENTED_CACHE_KEY); absent: one kept in the cache folder. */
  instrumentedCacheKey?: Buffer;
  /** The least time between two fetches of one issuer's signing keys (GATEHOUSE_JWKS_MIN_REFRESH_MS; default 30 s). */
  keysMinRefreshMs?: number;
  /** Counters and the cache shared through this Redis (GATEHOUSE_REDIS_URL); absent: in this process's memory. */
  redisUrl?: string;
  /** The cache's bounds (GATEHOUSE_CACHE_MAX_BYTES, GATEHOUSE_CACHE_MAX_ENTRY_BYTES); default DEFAULT_CACHE_LIMITS. */
  cacheLimits?: CacheLimits;
  /** Requests, backend calls, failures and policy metrics sent to Application Insights (GATEHOUSE_APPINSIGHTS_*). */
  appInsights?: ApplicationInsightsSettings;
  /** Request spans and metrics exported to an OpenTelemetry collector (GATEHOUSE_OTLP_*). */
  otlp?: OtlpSettings;
  /**
   * The configuration comes from this control plane (GATEHOUSE_CONFIG_URL, GATEHOUSE_TOKEN) instead of a file: the
   * gateway serves 503 on the probe path until the first document is applied, then polls for changes.
   */
  controlPlane?: {
    url: string;
    /** GATEHOUSE_TOKEN, or GATEHOUSE_TOKEN_FILE read again before each call (a rotated token is used without a restart). */
    token: ConstructorParameters<typeof ControlPlaneClient>[0]['token'];
    /** PEM certificates to trust for an HTTPS control plane, besides the system's (GATEHOUSE_CONFIG_CA_FILE). */
    ca?: string;
    intervalMs?: number;
    backupDir?: string;
    /** Encrypts the secrets in the backup (GATEHOUSE_BACKUP_KEY); absent: a key kept in the backup directory. */
    backupKey?: Buffer;
    heartbeatMs?: number;
    /** Per-minute aggregates: the period (default a minute, shorter for tests) and how often they are sent. */
    telemetryMs?: number;
    /** The control plane's Ed25519 public key: modules it names are loaded only with its signature. */
    trustedKey?: KeyObject;
  };
}

export interface RunningGateway {
  httpPort: number;
  httpsPort: number | null;
  adminPort: number;
  inFlight(): number;
  /**
   * Turns not-ready and keeps serving for `delayMs` (default: the shutdown delay), then stops accepting, lets in-flight
   * requests finish (up to the shutdown timeout) and releases everything. A second call joins the first, and ends its
   * delay early when it asks for none.
   */
  stop(delayMs?: number): Promise<void>;
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const { logger } = options;
  const metrics = new MetricsRegistry();
  // First to open anything, so that an exporter thread that cannot start stops the start before anything else is opened.
  const services: RequestTelemetry[] = [];
  if (options.appInsights) {
    services.push(await startApplicationInsights(options.appInsights, logger, { script: options.assets.appInsightsExporter, version: options.assets.version }, metrics));
  }
  // The OpenTelemetry packages are loaded only by a gateway told to export: the others do not pay for them at start.
  if (options.otlp) services.push(await (await import('../telemetry/otlp.ts')).startOtlp(options.otlp, logger, options.assets.version, metrics));
  const telemetry = services.length === 0 ? null : services.length === 1 ? services[0]! : new TelemetryFanout(services);
  registerProcessMetrics(metrics);
  registerLogMetrics(metrics, logger);
  const adapter = runtimeAdapter();
  // The Redis client (ioredis and what it needs) is loaded only by a gateway told to share its counters.
  const counters: CounterStore = options.redisUrl
    ? new (await import('../state/redis-counter-store.ts')).RedisCounterStore({ url: options.redisUrl, logger, metrics })
    : new MemoryCounterStore();
  if (!options.redisUrl) logger.info('counters are kept in this gateway (set GATEHOUSE_REDIS_URL to share them)');
  const cacheLimits = options.cacheLimits ?? DEFAULT_CACHE_LIMITS;
  const cache: CacheStore = options.redisUrl
    ? new (await import('../state/redis-cache-store.ts')).RedisCacheStore({ url: options.redisUrl, logger, metrics, limits: cacheLimits })
    : new MemoryCacheStore(cacheLimits);
  // Where policies may send traffic: one guard for the HTTP effect and the backends policies choose, told of every
  // listener below so that a wildcard grant entry never leads back into the gateway.
  const egress = new EgressGuard({ connect: adapter.connector });
  const effects = new GatewayEffects({ counters, logger, egress, maxHttpInFlight: options.policyHttpInFlight, keysMinRefreshMs: options.keysMinRefreshMs });
  const instrumented = new InstrumentedModuleCache({
    dir: options.instrumentedCacheDir ?? defaultInstrumentedCacheDir(options.controlPlane?.backupDir),
    key: options.instrumentedCacheKey,
    logger,
  });
  const host = new PolicyHost({ logger, metrics, effects, clocks: adapter.clocks, instrumented, replay: options.policyReplay });
  const echo: EchoBackend = await startEchoBackend();
  const forwarder = new Forwarder({ timeoutMs: 30_000, egress, metrics });
  const backendHealth = healthEvents(logger, metrics);
  const configFile = options.configFile ?? options.assets.defaultDocument.source;

  /** The folders of the `source:` policies of each configuration prepared from a file (watched for the dev loop). */
  const sourcesOf = new WeakMap<LiveConfig, string[]>();
  /** Parses, checks and binds a document from `source`, its policy files relative to `baseDir`. */
  const prepare = async (text: string, source: string, baseDir: string): Promise<PreparedConfig> => {
    // The control plane checks what it saves with this same function (control-plane/validation.ts).
    const { doc, chains } = await prepareDocument(text, { host, baseDir, policies: options.assets.policies, sourceName: source, cache: { store: cache, limits: cacheLimits } });
    for (const w of chains.warnings) logger.warn('configuration warning', { where: w.where, warning: w.message });
    const live = buildLiveConfig(doc, chains, { source, echoUrl: echo.url, connect: adapter.connector, healthEvents: backendHealth });
    sourcesOf.set(live, sourceFolders(doc, baseDir));
    return { live, secrets: secretValues(doc) };
  };
  const remote = options.controlPlane ? connectControlPlane(options.controlPlane) : null;
  const configs = new ConfigStore(
    remote
      ? // Uploaded modules (`sha256:<hex>`) are fetched, checked and cached first; built-ins resolve as usual.
        async (text) => {
          const fetched = await remote.modules.prepare(text);
          return prepare(fetched.text, `control plane ${remote.settings.url}`, fetched.dir);
        }
      : (text) => prepare(text, configFile, options.configFile ? dirname(options.configFile) : options.assets.defaultDocument.baseDir),
    logger,
    metrics,
  );
  const gateway = new Gateway(configs, forwarder, logger, metrics);
  registerBackendGauge(configs, metrics);
  gateway.telemetry = telemetry;
  host.customMetrics.upstream = telemetry;

  let sync: ConfigSync | null = null;
  let watcher: ConfigFileWatcher | null = null;
  let sourceWatcher: SourceFolderWatcher | null = null;
  if (remote) {
    const { intervalMs, backupDir, backupKey, heartbeatMs, telemetryMs } = remote.settings;
    gateway.aggregates = new RequestAggregates(telemetryMs ?? 60_000);
    metrics.gauge('gatehouse_telemetry_dropped', 'Per-minute aggregates dropped because the control plane was away too long.', () => gateway.aggregates?.dropped ?? 0);
    const backup = backupDir ? new ConfigBackup(backupDir, { key: backupKey, logger }) : undefined;
    sync = new ConfigSync({
      client: remote.client,
      intervalMs,
      logger,
      backup,
      heartbeatMs,
      health: () => (gateway.ready ? 'ready' : 'not-ready'),
      aggregates: gateway.aggregates,
      telemetryMs,
      version: options.assets.version,
      metrics,
      configs,
      modules: remote.modules,
    });
    gateway.notLoadedDetail = () => sync?.notReadyDetail() ?? null;
    sync.start();
  } else {
    let initialText = '';
    let initial: LiveConfig;
    try {
      initialText = options.configFile ? await readFile(options.configFile, 'utf8') : await options.assets.defaultDocument.read();
      initial = await configs.offer(initialText, false);
    } catch (err) {
      await echo.close();
      await forwarder.close();
      await effects.close();
      await counters.close?.();
      await cache.close?.();
      await telemetry?.close(TELEMETRY_FLUSH_MIN_MS);
      throw err instanceof ConfigError ? err : new Error(`${configFile}: ${(err as Error).message}`);
    }
    // How the start's modules were metered: all from the cache means binaryen was not loaded.
    logger.info('configuration applied', { config: configFile, apis: initial.apis.map((a) => a.id), metering: instrumented.counts() });
    if (options.configFile) {
      // The file's text in force, and the one owner's offers made one at a time: the file's watcher offers each new
      // text, the sources' watcher the text in force again when a `source:` policy changed (its rebuilt module makes
      // a new version of the document). A document that fails leaves the configuration in force, old modules included.
      let textInForce = initialText;
      let offering: Promise<unknown> = Promise.resolve();
      const sources = new SourceFolderWatcher({
        intervalMs: options.watchIntervalMs ?? 1000,
        onChange: (folders) => offerInTurn(textInForce, { changed: 'policy source', folders }),
      });
      const offerInTurn = (text: string, why: { changed: string; folders?: string[] }): Promise<void> => {
        const run = offering.then(async () => {
          try {
            const live = await configs.offer(text);
            textInForce = text;
            await sources.watch(sourcesOf.get(live) ?? []);
            logger.info('configuration applied', { config: configFile, ...why, apis: live.apis.map((a) => a.id) });
          } catch (err) {
            logger.error('configuration rejected; the running configuration stays in force', {
              config: configFile,
              ...why,
              problems: err instanceof ConfigError ? err.problems : [{ where: configFile, message: (err as Error).message }],
            });
          }
        });
        offering = run;
        return run;
      };
      await sources.watch(sourcesOf.get(initial) ?? []);
      watcher = new ConfigFileWatcher(options.configFile, {
        intervalMs: options.watchIntervalMs ?? 1000,
        // What was loaded: a change made between that read and the watcher's first poll is still seen.
        initialText,
        onChange: (text) => offerInTurn(text, { changed: 'configuration file' }),
        onError: (err) => logger.warn('cannot read the configuration file', { config: configFile, error: err.message }),
      });
      watcher.start();
      sources.start();
      sourceWatcher = sources;
    }
  }

  const listeners: Listener[] = [];
  const dataPlane = {
    fixedPaths: FIXED_PATHS,
    app: dataPlaneApp(gateway),
    handle: gateway.handle.bind(gateway),
    upgrade: gateway.handleUpgrade.bind(gateway),
    limits: options.httpLimits,
    http2: options.http2,
    onHttp2Cut: (reason: string, client: string) => logger.warn('HTTP/2 connection closed (GOAWAY ENHANCE_YOUR_CALM)', { reason, client }),
  };
  // No traffic before shared counters are: a gateway that served while its connection to Redis was being made would
  // count those requests by itself, and a fleet's limit would let them through on every gateway that just started.
  await counters.firstConnection?.();
  const http = await listenDataPlane({ ...dataPlane, port: options.httpPort, hostname: '0.0.0.0' });
  listeners.push(http);
  egress.addOwnListener(http.port);
  let https: Listener | null = null;
  if (options.httpsPort !== null && options.tls) {
    https = await listenDataPlane({ ...dataPlane, port: options.httpsPort, hostname: '0.0.0.0', tls: options.tls });
    listeners.push(https);
    egress.addOwnListener(https.port);
  }
  const adminHost = options.adminHost ?? '127.0.0.1';
  const admin = await listen(adminApp(gateway, metrics), { port: options.adminPort, hostname: adminHost });
  egress.addOwnListener(admin.port);
  logger.info('gatehouse listening', {
    pid: process.pid,
    http: http.port,
    https: https?.port ?? null,
    // An IPv6 address in brackets, so that the port stays apart from it.
    admin: adminHost.includes(':') ? `[${adminHost}]:${admin.port}` : `${adminHost}:${admin.port}`,
    config: options.controlPlane ? `control plane ${options.controlPlane.url}` : (options.configFile ?? 'embedded default'),
    // The id this process's heartbeats carry, as the control plane lists it (GET /admin/gateways, gatehouse get).
    ...(sync ? { instance: sync.instance } : {}),
  });

  return {
    httpPort: http.port,
    httpsPort: https?.port ?? null,
    adminPort: admin.port,
    inFlight: () => gateway.inFlightCount(),
    stop: shutdown(
      { gateway, logger, listeners, admin, watcher: watchers(watcher, sourceWatcher), sync, controlPlane: remote?.client ?? null, telemetry, forwarder, effects, echo, counters, cache },
      options,
    ),
  };
}

/** The instrumented-module cache's folder when none is given: on the backup volume if there is one, else per user in tmp. */
function defaultInstrumentedCacheDir(backupDir: string | undefined): string {
  return backupDir ? join(backupDir, 'instrumented') : join(tmpdir(), `gatehouse-instrumented-${process.getuid?.() ?? 'user'}`);
}

/** The control plane's client, and the cache of the policy modules its documents name (fetched, checked, kept). */
function connectControlPlane(settings: NonNullable<GatewayOptions['controlPlane']>) {
  const client = new ControlPlaneClient({ url: settings.url, token: settings.token, ca: settings.ca });
  const modules = new ModuleCache({
    client,
    trustedKey: settings.trustedKey,
    dir: settings.backupDir ? join(settings.backupDir, 'modules') : undefined,
  });
  return { settings, client, modules };
}

/** The watchers of a gateway serving from a file, stopped as one. */
function watchers(...list: ({ stop(): Promise<void> } | null)[]): { stop(): Promise<void> } | null {
  const running = list.filter((w) => w !== null);
  return running.length === 0 ? null : { stop: () => Promise.all(running.map((w) => w.stop())).then(() => undefined) };
}
