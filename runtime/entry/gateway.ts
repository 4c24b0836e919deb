// Entry point of `npm start` and `deno task start`: the gateway in standalone mode.
//
//   gatehouse [--config <file>]        GATEHOUSE_CONFIG_FILE also names the file; without one, the embedded default
//
// Ports: GATEHOUSE_HTTP_PORT (8080), GATEHOUSE_HTTPS_PORT (8081, when GATEHOUSE_TLS_CERT_FILE and
// GATEHOUSE_TLS_KEY_FILE are set), GATEHOUSE_ADMIN_PORT (8082, on GATEHOUSE_ADMIN_HOST, 127.0.0.1). See docs/operations.md.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { trustedKey } from '../gateway-api/module-signatures.ts';
import { parseBackupKey } from '../sync/backup.ts';
import { GatewayTokenFile } from '../sync/gateway-token.ts';
import { startGateway } from '../composition-root/gateway.ts';
import {
  BATCH_SIZE_VARIABLE,
  CA_FILE_VARIABLE,
  CONNECTION_STRING_VARIABLE,
  DEFAULT_BATCH_SIZE,
  DEFAULT_QUEUE_LIMIT,
  DEFAULT_SEND_INTERVAL_MS,
  QUEUE_LIMIT_VARIABLE,
  SAMPLING_VARIABLE,
  SEND_INTERVAL_VARIABLE,
  parseConnectionString,
  parsePositiveInteger,
  parseSamplingPercentage,
  type ApplicationInsightsSettings,
} from '../telemetry/appinsights.ts';
import {
  DEFAULT_OTLP_BATCH_SIZE,
  DEFAULT_OTLP_METRICS_INTERVAL_MS,
  DEFAULT_OTLP_QUEUE_LIMIT,
  DEFAULT_OTLP_SEND_INTERVAL_MS,
  OTLP_BATCH_SIZE_VARIABLE,
  OTLP_ENDPOINT_VARIABLE,
  OTLP_METRICS_INTERVAL_VARIABLE,
  OTLP_QUEUE_LIMIT_VARIABLE,
  OTLP_SEND_INTERVAL_VARIABLE,
  parseOtlpEndpoint,
  type OtlpSettings,
} from '../telemetry/otlp-settings.ts';
// The single-file bundle is built from this file with ./assets/embedded.ts in place of ./assets/repository.ts.
import { gatewayAssets } from '../assets/repository.ts';
import { LEVELS, Logger, parseLogLevel, stdoutSink } from '../telemetry/logger.ts';
import { runtimeAdapter } from '../adapters/index.ts';
import { http2FromEnv, httpLimitsFromEnv } from '../server/http-limits.ts';
import { stopWithWrapper } from './wrapper-watch.ts';
import { DEFAULT_HTTP_IN_FLIGHT, HTTP_IN_FLIGHT_VARIABLE } from '../pipeline/effects.ts';
import { DEFAULT_CACHE_LIMITS } from '../state/cache-store.ts';

const DEFAULT_SHUTDOWN_DELAY_MS = 5000;
/** The longest delay setTimeout keeps (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

const HELP = `gatehouse: a self-hosted API gateway with WebAssembly policies

Usage: gatehouse [--config <file.yaml|file.json>]

Environment:
  GATEHOUSE_CONFIG_FILE      configuration document (default: the embedded demo, runtime/config/default.yaml)
  GATEHOUSE_HTTP_PORT        data plane HTTP port (8080)
  GATEHOUSE_HTTPS_PORT       data plane HTTPS port (8081), with GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE
  GATEHOUSE_ADMIN_PORT       admin listener: /metrics, /readyz, /livez (8082)
  GATEHOUSE_ADMIN_HOST       the IP address the admin listener binds (127.0.0.1); /metrics answers anyone who reaches
                             it, so bind beyond loopback only where a network policy restricts who can
  GATEHOUSE_LOG_LEVEL        trace, debug, info, warn, error (info)
  GATEHOUSE_SHUTDOWN_DELAY_MS    after SIGTERM, how long to answer 503 on the probes while still serving, so that load
                             balancers stop sending requests before the gateway stops accepting (5000; SIGINT: none)
  GATEHOUSE_SHUTDOWN_TIMEOUT_MS  then, how long to wait for in-flight requests (30000)
  GATEHOUSE_HEADERS_TIMEOUT_MS, GATEHOUSE_REQUEST_TIMEOUT_MS, GATEHOUSE_KEEP_ALIVE_TIMEOUT_MS, GATEHOUSE_MAX_HEADER_BYTES,
  GATEHOUSE_MAX_CONNECTIONS  what clients are allowed (30000, 300000, 65000, 16384, 0: no limit); docs/operations.md
  GATEHOUSE_HTTP2            HTTPS offers HTTP/2 through ALPN (on); off: HTTP/1.1 only
  GATEHOUSE_HTTP2_CLEARTEXT  the HTTP port also speaks HTTP/2 with prior knowledge, as gRPC clients do (off)
  GATEHOUSE_HTTP2_MAX_CONCURRENT_STREAMS, GATEHOUSE_HTTP2_MAX_RESETS  streams open at once per connection (100);
                             streams a client may reset in 10 s before its connection is closed (200)
  GATEHOUSE_POLICY_REPLAY    calls of policies that declare themselves deterministic may be answered with an earlier
                             call's changes for the same values read (on); off: every call runs its module
  GATEHOUSE_POLICY_HTTP_IN_FLIGHT  HTTP effects of policies in flight at once in this gateway; past it an effect gets
                             an error result instead of waiting (64)
  GATEHOUSE_REDIS_URL        share rate-limit counters and the cache through this Redis (redis://host:6379); default:
                             in this gateway's memory
  GATEHOUSE_JWKS_MIN_REFRESH_MS  the least time between two fetches of an issuer's signing keys (validate-jwt's
                             openidConfig): on an unknown kid, on expiry, after a failure (30000)
  GATEHOUSE_CACHE_MAX_BYTES  what the in-memory cache holds at most, every API together (67108864: 64 MiB)
  GATEHOUSE_CACHE_MAX_ENTRY_BYTES  the largest response or value cached, in memory or Redis (1048576: 1 MiB)
  GATEHOUSE_CONFIG_URL       take the configuration from this control plane (http://host:7070) instead of a file,
                             with GATEHOUSE_TOKEN (a gateway token the control plane issued) or GATEHOUSE_TOKEN_FILE
  GATEHOUSE_TOKEN_FILE       a file holding the gateway token, read again before each call to the control plane: a
                             token written there (a Kubernetes Secret volume) is used without a restart
  GATEHOUSE_CONFIG_CA_FILE   certificates (PEM) to trust for an HTTPS control plane, besides the system's
  GATEHOUSE_SYNC_INTERVAL_MS how often to ask the control plane for changes (10000)
  GATEHOUSE_BACKUP_DIR       keep each applied configuration here, to start from when the control plane is unreachable
  GATEHOUSE_BACKUP_KEY       the key that encrypts secrets in the backup (64 hex digits, or a file holding them);
                             default: a key made once and kept in the backup directory
  GATEHOUSE_INSTRUMENTED_CACHE_DIR  keep policy modules metered for the CPU budget here, so that a start meters only
                             modules not seen before (default: instrumented/ in GATEHOUSE_BACKUP_DIR, else
                             gatehouse-instrumented-<uid> in the temporary folder)
  GATEHOUSE_INSTRUMENTED_CACHE_KEY  the key that seals the cache's entries (64 hex digits, or a file holding them);
                             default: a key made once and kept in the cache folder, which must then be this user's
  GATEHOUSE_HEARTBEAT_INTERVAL_MS  how often to tell the control plane this gateway is alive (60000)
  GATEHOUSE_TRUSTED_KEY      the control plane's module-signing public key (PEM, or a file holding it)
  GATEHOUSE_TELEMETRY_INTERVAL_MS  the period of the request aggregates sent to the control plane (60000)
  GATEHOUSE_APPINSIGHTS_CONNECTION_STRING  send requests, backend calls, failures and policy metrics to Application
                             Insights (the connection string of the resource)
  GATEHOUSE_APPINSIGHTS_SAMPLING_PERCENTAGE  the share of requests sent with their backend calls (100)
  GATEHOUSE_APPINSIGHTS_QUEUE_LIMIT  telemetry held at most while the ingestion endpoint is slow or away; more is
                             dropped and counted in gatehouse_appinsights_dropped_total (8192)
  GATEHOUSE_APPINSIGHTS_BATCH_SIZE  envelopes sent in one request at most (512)
  GATEHOUSE_APPINSIGHTS_SEND_INTERVAL_MS  how long telemetry waits for a batch to fill before it is sent (1000)
  GATEHOUSE_APPINSIGHTS_CA_FILE  certificates (PEM) to trust for the ingestion endpoint, besides the system's
  GATEHOUSE_OTLP_ENDPOINT    export request spans and metrics to this OpenTelemetry collector (OTLP/HTTP base URL,
                             http://collector:4318)
  GATEHOUSE_OTLP_QUEUE_LIMIT  requests whose spans wait at most for the collector; more are dropped and counted (4096)
  GATEHOUSE_OTLP_BATCH_SIZE  requests in one span export at most (512)
  GATEHOUSE_OTLP_SEND_INTERVAL_MS  how long spans wait for a batch to fill before they are exported (1000)
  GATEHOUSE_OTLP_METRICS_INTERVAL_MS  how often metrics are exported (60000)
`;

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  const inline = args.find((a) => a.startsWith(`${name}=`));
  return inline?.slice(name.length + 1);
}

/** Stops the start with exit 2 and `message` (what is wrong with a setting, naming it) on stderr. */
function refuse(message: string): never {
  process.stderr.write(`gatehouse: ${message}\n`);
  process.exit(2);
}

/**
 * A whole number from the variable `name` (`fallback` when unset or empty) within `min`..`max`; anything else stops the
 * gateway with exit 2, naming the variable and what it must be.
 */
function wholeNumber(name: string, fallback: number, min: number, max: number, expected: string): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    refuse(`${name}=${raw} must be ${expected}`);
  }
  return n;
}

/** How long an exit waits for the log's last lines to be written: not forever, on an output nobody reads. */
const LOG_DRAIN_AT_EXIT_MS = 2000;

async function exitAfterLog(code: number): Promise<never> {
  await logger.drain(LOG_DRAIN_AT_EXIT_MS);
  process.exit(code);
}

const port = (name: string, fallback: number) => wholeNumber(name, fallback, 0, 65535, 'a port number (0-65535)');

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(HELP);
  process.exit(0);
}
const levelText = process.env.GATEHOUSE_LOG_LEVEL || 'info';
const level = parseLogLevel(levelText);
if (level === null) {
  refuse(`GATEHOUSE_LOG_LEVEL=${levelText} must be one of ${LEVELS.join(', ')}`);
}
const logger = new Logger(stdoutSink(() => runtimeAdapter().stdout()), level);
const configFile = argValue(args, '--config') ?? process.env.GATEHOUSE_CONFIG_FILE ?? null;
const redisUrl = process.env.GATEHOUSE_REDIS_URL || undefined;
if (redisUrl !== undefined && !/^rediss?:\/\/[^/]/.test(redisUrl)) {
  // Not repeated: the URL may carry Redis's password.
  refuse('GATEHOUSE_REDIS_URL is not a redis:// or rediss:// URL (e.g. redis://:password@127.0.0.1:6379)');
}
const configUrl = process.env.GATEHOUSE_CONFIG_URL || undefined;
const gatewayToken = process.env.GATEHOUSE_TOKEN || undefined;
const tokenFile = process.env.GATEHOUSE_TOKEN_FILE || undefined;
if (configUrl !== undefined) {
  if (!/^https?:\/\/[^/]/.test(configUrl)) {
    refuse(`GATEHOUSE_CONFIG_URL=${configUrl} is not an http(s) URL (e.g. http://127.0.0.1:7070)`);
  }
  if (!gatewayToken && !tokenFile) {
    refuse('GATEHOUSE_CONFIG_URL needs GATEHOUSE_TOKEN_FILE (a file holding a gateway token issued by the control plane) or GATEHOUSE_TOKEN');
  }
  if (gatewayToken && tokenFile) {
    refuse('give either GATEHOUSE_TOKEN or GATEHOUSE_TOKEN_FILE, not both');
  }
  if (configFile !== null) {
    refuse('give either a configuration file or GATEHOUSE_CONFIG_URL, not both');
  }
}
/** The PEM certificates in the file `variable` names, if it names one; a file that cannot be read or holds none stops the start. */
function certificatesFrom(variable: string): string | undefined {
  const file = process.env[variable] || undefined;
  if (file === undefined) return undefined;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    refuse(`${variable}: ${(err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) refuse(`${variable}=${file} holds no PEM certificate`);
  return pem;
}
const controlPlaneCa = certificatesFrom('GATEHOUSE_CONFIG_CA_FILE');
let trusted: KeyObject | undefined;
const trustedKeyValue = process.env.GATEHOUSE_TRUSTED_KEY || undefined;
if (trustedKeyValue !== undefined) {
  try {
    trusted = trustedKey(trustedKeyValue.includes('-----BEGIN') ? trustedKeyValue : readFileSync(trustedKeyValue, 'utf8'));
  } catch (err) {
    refuse(`GATEHOUSE_TRUSTED_KEY: ${(err as Error).message}`);
  }
}
/** A 32-byte key from the variable `name` (the key, or a file holding it); undefined when unset; else exit 2. */
function keyFromEnv(name: string): Buffer | undefined {
  const value = process.env[name] || undefined;
  if (value === undefined) return undefined;
  try {
    return parseBackupKey(value, (file) => readFileSync(file, 'utf8'));
  } catch (err) {
    refuse(`${name}: ${(err as Error).message}`);
  }
}
const backupKey = keyFromEnv('GATEHOUSE_BACKUP_KEY');
if (backupKey !== undefined && !process.env.GATEHOUSE_BACKUP_DIR) {
  refuse('GATEHOUSE_BACKUP_KEY is set but GATEHOUSE_BACKUP_DIR is not: there is no backup to encrypt');
}
const instrumentedCacheKey = keyFromEnv('GATEHOUSE_INSTRUMENTED_CACHE_KEY');
// Every duration below becomes a setTimeout delay, which Node and Deno cut to 1 ms past MAX_TIMER_MS: a larger value
// is refused rather than turned into a poll loop without pause.
const milliseconds = (name: string, fallback: number, min: number) =>
  wholeNumber(name, fallback, min, MAX_TIMER_MS, `a whole number of ms, ${min} to ${MAX_TIMER_MS}`);
// Each interval is a poll loop's pause between calls to the control plane (runtime/config/poller.ts): 0 would call it
// without pause. The tests run them at a few hundred ms.
const syncIntervalMs = milliseconds('GATEHOUSE_SYNC_INTERVAL_MS', 10_000, 100);
const heartbeatMs = milliseconds('GATEHOUSE_HEARTBEAT_INTERVAL_MS', 60_000, 100);
const telemetryMs = milliseconds('GATEHOUSE_TELEMETRY_INTERVAL_MS', 60_000, 100);
// Kubernetes takes a few seconds to stop routing to a pod after it was told to stop (endpoint removal reaches every
// node's proxy and every ingress asynchronously): the gateway serves on, not ready, for that long. docs/operations.md.
const shutdownDelayMs = milliseconds('GATEHOUSE_SHUTDOWN_DELAY_MS', DEFAULT_SHUTDOWN_DELAY_MS, 0);
const shutdownTimeoutMs = milliseconds('GATEHOUSE_SHUTDOWN_TIMEOUT_MS', 30_000, 0);
const policyHttpInFlight = wholeNumber(HTTP_IN_FLIGHT_VARIABLE, DEFAULT_HTTP_IN_FLIGHT, 1, 100_000, 'a whole number, 1 to 100000');
const policyReplayText = process.env.GATEHOUSE_POLICY_REPLAY || 'on';
if (policyReplayText !== 'on' && policyReplayText !== 'off') refuse(`GATEHOUSE_POLICY_REPLAY=${policyReplayText} must be on or off`);
const keysMinRefreshMs = wholeNumber('GATEHOUSE_JWKS_MIN_REFRESH_MS', 30_000, 0, 86_400_000, 'a whole number of ms, 0 to 86400000');
const cacheLimits = {
  ...DEFAULT_CACHE_LIMITS,
  maxTotalBytes: wholeNumber('GATEHOUSE_CACHE_MAX_BYTES', DEFAULT_CACHE_LIMITS.maxTotalBytes, 0, 2 ** 40, 'a whole number of bytes (0: no in-memory cache)'),
  maxEntryBytes: wholeNumber('GATEHOUSE_CACHE_MAX_ENTRY_BYTES', DEFAULT_CACHE_LIMITS.maxEntryBytes, 0, 512 * 1024 * 1024, 'a whole number of bytes, at most 536870912 (Redis keeps values of at most 512 MiB)'),
};
const httpLimits = httpLimitsFromEnv(process.env);
if ('problem' in httpLimits) {
  refuse(httpLimits.problem);
}
const http2 = http2FromEnv(process.env);
if ('problem' in http2) {
  refuse(http2.problem);
}
// Loopback unless told otherwise: the admin listener has no authentication. An address, not a host name: what a name
// resolves to (localhost: 127.0.0.1 or ::1) would decide what is exposed.
const adminHost = process.env.GATEHOUSE_ADMIN_HOST || '127.0.0.1';
if (isIP(adminHost) === 0) {
  refuse(`GATEHOUSE_ADMIN_HOST=${adminHost} must be an IP address (127.0.0.1; 0.0.0.0 for every interface)`);
}
const certFile = process.env.GATEHOUSE_TLS_CERT_FILE;
const keyFile = process.env.GATEHOUSE_TLS_KEY_FILE;
if ((certFile === undefined) !== (keyFile === undefined)) {
  refuse('HTTPS needs both GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE');
}

let appInsights: ApplicationInsightsSettings | undefined;
const appInsightsText = process.env[CONNECTION_STRING_VARIABLE] || undefined;
if (appInsightsText !== undefined) {
  const connection = parseConnectionString(appInsightsText);
  if (!connection.ok) {
    refuse(`${CONNECTION_STRING_VARIABLE} is not a usable Application Insights connection string: ${connection.problem}`);
  }
  const sampling = parseSamplingPercentage(process.env[SAMPLING_VARIABLE]);
  if (!sampling.ok) {
    refuse(`${SAMPLING_VARIABLE}=${process.env[SAMPLING_VARIABLE]}: ${sampling.problem}`);
  }
  const count = (variable: string, fallback: number, max: number): number => {
    const parsed = parsePositiveInteger(process.env[variable], fallback, max);
    if (!parsed.ok) refuse(`${variable}=${process.env[variable]}: ${parsed.problem}`);
    return parsed.value;
  };
  appInsights = {
    ...connection.value,
    samplingPercentage: sampling.value,
    queueLimit: count(QUEUE_LIMIT_VARIABLE, DEFAULT_QUEUE_LIMIT, 1_000_000),
    batchSize: count(BATCH_SIZE_VARIABLE, DEFAULT_BATCH_SIZE, 10_000),
    sendIntervalMs: count(SEND_INTERVAL_VARIABLE, DEFAULT_SEND_INTERVAL_MS, 600_000),
    ca: certificatesFrom(CA_FILE_VARIABLE),
  };
} else {
  for (const variable of [SAMPLING_VARIABLE, QUEUE_LIMIT_VARIABLE, BATCH_SIZE_VARIABLE, SEND_INTERVAL_VARIABLE, CA_FILE_VARIABLE]) {
    if (process.env[variable]) refuse(`${variable} is set but ${CONNECTION_STRING_VARIABLE} is not: nothing would be sent`);
  }
}

let otlp: OtlpSettings | undefined;
const otlpEndpoint = process.env[OTLP_ENDPOINT_VARIABLE] || undefined;
const otlpCounts = [OTLP_QUEUE_LIMIT_VARIABLE, OTLP_BATCH_SIZE_VARIABLE, OTLP_SEND_INTERVAL_VARIABLE, OTLP_METRICS_INTERVAL_VARIABLE];
if (otlpEndpoint !== undefined) {
  const endpoint = parseOtlpEndpoint(otlpEndpoint);
  if (!endpoint.ok) refuse(`${OTLP_ENDPOINT_VARIABLE}=${otlpEndpoint} ${endpoint.problem}`);
  const count = (variable: string, fallback: number, min: number, max: number): number => {
    const parsed = parsePositiveInteger(process.env[variable], fallback, max);
    if (!parsed.ok || parsed.value < min) refuse(`${variable}=${process.env[variable]}: ${parsed.ok ? `is under ${min}` : parsed.problem}`);
    return parsed.value;
  };
  otlp = {
    endpoint: endpoint.value,
    queueLimit: count(OTLP_QUEUE_LIMIT_VARIABLE, DEFAULT_OTLP_QUEUE_LIMIT, 1, 1_000_000),
    batchSize: count(OTLP_BATCH_SIZE_VARIABLE, DEFAULT_OTLP_BATCH_SIZE, 1, 10_000),
    sendIntervalMs: count(OTLP_SEND_INTERVAL_VARIABLE, DEFAULT_OTLP_SEND_INTERVAL_MS, 10, 600_000),
    metricsIntervalMs: count(OTLP_METRICS_INTERVAL_VARIABLE, DEFAULT_OTLP_METRICS_INTERVAL_MS, 100, 3_600_000),
  };
} else {
  for (const variable of otlpCounts) {
    if (process.env[variable]) refuse(`${variable} is set but ${OTLP_ENDPOINT_VARIABLE} is not: nothing would be exported`);
  }
}

// Read once here, so that a wrong path stops the start; then before every call to the control plane.
let tokenFromFile: GatewayTokenFile | undefined;
if (configUrl !== undefined && tokenFile !== undefined) {
  try {
    tokenFromFile = await GatewayTokenFile.open(resolve(tokenFile), logger);
  } catch (err) {
    refuse((err as Error).message);
  }
}

try {
  const gateway = await startGateway({
    logger,
    configFile: configFile ? resolve(configFile) : null,
    assets: gatewayAssets(),
    httpPort: port('GATEHOUSE_HTTP_PORT', 8080),
    httpsPort: certFile ? port('GATEHOUSE_HTTPS_PORT', 8081) : null,
    tls: certFile && keyFile ? { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') } : undefined,
    adminPort: port('GATEHOUSE_ADMIN_PORT', 8082),
    adminHost,
    shutdownDelayMs,
    httpLimits: httpLimits.limits,
    http2: http2.http2,
    shutdownTimeoutMs,
    policyHttpInFlight,
    policyReplay: policyReplayText === 'on',
    cacheLimits,
    keysMinRefreshMs,
    redisUrl,
    appInsights,
    otlp,
    instrumentedCacheDir: process.env.GATEHOUSE_INSTRUMENTED_CACHE_DIR ? resolve(process.env.GATEHOUSE_INSTRUMENTED_CACHE_DIR) : undefined,
    instrumentedCacheKey,
    controlPlane: configUrl
      ? {
          url: configUrl,
          token: tokenFromFile ?? gatewayToken!,
          ca: controlPlaneCa,
          intervalMs: syncIntervalMs,
          backupDir: process.env.GATEHOUSE_BACKUP_DIR || undefined,
          backupKey,
          heartbeatMs,
          trustedKey: trusted,
          telemetryMs,
        }
      : undefined,
  });
  // SIGTERM is how orchestrators stop a gateway that traffic is routed to: it waits the shutdown delay. SIGINT is
  // Ctrl-C in a terminal, where nothing routes by the probes: it starts draining at once (also during a SIGTERM's delay).
  const stop = (signal: 'SIGTERM' | 'SIGINT') => {
    const delayMs = signal === 'SIGTERM' ? shutdownDelayMs : 0;
    logger.info('shutting down', { signal, delayMs, inFlight: gateway.inFlight() });
    void gateway.stop(delayMs).then(
      () => exitAfterLog(0),
      () => exitAfterLog(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // `npx deno task start`: the signal npx forwards ends the shell between it and the task (wrapper-watch.ts).
  stopWithWrapper((pid) => {
    logger.info('the wrapper that started the gateway is gone: stopping as on SIGTERM', { pid });
    stop('SIGTERM');
  });
} catch (err) {
  logger.error('gatehouse could not start', { error: (err as Error).message, config: configFile ?? 'embedded default' });
  process.stderr.write(`gatehouse: ${(err as Error).message}\n`);
  await exitAfterLog(1);
}
