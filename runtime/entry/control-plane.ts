// Entry point of `npm run control-plane`: the reference control plane on 127.0.0.1:7070, its state in SQLite.
//
//   GATEHOUSE_CP_PORT        port (7070)
//   GATEHOUSE_CP_HOST        address to listen on (127.0.0.1)
//   GATEHOUSE_LOG_LEVEL      trace, debug, info, warn, error (info)
//   GATEHOUSE_CP_DATA_DIR    where the database lives (.data/control-plane, relative to the working directory)
//   GATEHOUSE_ADMIN_TOKEN    the admin API's token; without it one is made on first start and kept in
//                            <data dir>/admin-token (readable by the owner only), whose path is logged, not its content
//   GATEHOUSE_CP_TLS_CERT_FILE, GATEHOUSE_CP_TLS_KEY_FILE
//                            serve HTTPS with this certificate chain and key (PEM): gateway tokens and secret named
//                            values cross this connection
//   GATEHOUSE_CP_STALE_AFTER_MS   an instance silent this long is shown stale (180000: three missed heartbeats)
//   GATEHOUSE_CP_DROP_AFTER_MS    an instance silent this long is forgotten (3600000)
//   GATEHOUSE_CP_POLICY_CACHE_DIR where the built-in policies it checks configurations against are built to
//                                 (<repository>/.cache/policy-builds, as the gateway's)

import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { listen } from '../server/http-server.ts';
import { LEVELS, Logger, parseLogLevel, stdoutSink } from '../telemetry/logger.ts';
import { runtimeAdapter } from '../adapters/index.ts';
import { stopWithWrapper } from './wrapper-watch.ts';
import { RepositoryPolicySources } from '../config/repository-policies.ts';
import { repoRoot } from '../assets/repo-root.ts';
import { controlPlaneApp, DEFAULT_DROP_AFTER_MS, DEFAULT_STALE_AFTER_MS } from '../control-plane/app.ts';
import { ControlPlaneStore } from '../control-plane/store.ts';
import { DocumentValidator } from '../control-plane/validation.ts';

const levelText = process.env.GATEHOUSE_LOG_LEVEL || 'info';
const level = parseLogLevel(levelText);
if (level === null) {
  process.stderr.write(`gatehouse control plane: GATEHOUSE_LOG_LEVEL=${levelText} must be one of ${LEVELS.join(', ')}\n`);
  process.exit(2);
}
const logger = new Logger(stdoutSink(() => runtimeAdapter().stdout()), level).child({ component: 'control-plane' });
const dataDir = resolve(process.env.GATEHOUSE_CP_DATA_DIR ?? join('.data', 'control-plane'));
const port = Number(process.env.GATEHOUSE_CP_PORT ?? 7070);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`gatehouse control plane: GATEHOUSE_CP_PORT=${process.env.GATEHOUSE_CP_PORT} is not a port number\n`);
  process.exit(2);
}
mkdirSync(dataDir, { recursive: true, mode: 0o700 });
const certFile = process.env.GATEHOUSE_CP_TLS_CERT_FILE || undefined;
const keyFile = process.env.GATEHOUSE_CP_TLS_KEY_FILE || undefined;
if ((certFile === undefined) !== (keyFile === undefined)) {
  process.stderr.write('gatehouse control plane: HTTPS needs both GATEHOUSE_CP_TLS_CERT_FILE and GATEHOUSE_CP_TLS_KEY_FILE\n');
  process.exit(2);
}
let tls: { cert: string; key: string } | undefined;
try {
  tls = certFile && keyFile ? { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') } : undefined;
} catch (err) {
  process.stderr.write(`gatehouse control plane: cannot read the TLS certificate or key: ${(err as Error).message}\n`);
  process.exit(2);
}

function adminToken(): { token: string; file: string | null } {
  const given = process.env.GATEHOUSE_ADMIN_TOKEN;
  if (given) return { token: given, file: null };
  const file = join(dataDir, 'admin-token');
  if (!existsSync(file)) {
    writeFileSync(file, randomBytes(24).toString('base64url') + '\n', { mode: 0o600 });
    chmodSync(file, 0o600);
  }
  return { token: readFileSync(file, 'utf8').trim(), file };
}

function milliseconds(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    process.stderr.write(`gatehouse control plane: ${name}=${text} is not a whole number of milliseconds above 0\n`);
    process.exit(2);
  }
  return value;
}
const staleAfterMs = milliseconds('GATEHOUSE_CP_STALE_AFTER_MS', DEFAULT_STALE_AFTER_MS);
const dropAfterMs = milliseconds('GATEHOUSE_CP_DROP_AFTER_MS', DEFAULT_DROP_AFTER_MS);

const store = new ControlPlaneStore(join(dataDir, 'control-plane.db'));
const admin = adminToken();
// The built-in policies a gateway of this version has, built from the same sources: what it checks configurations
// against before saving them.
const validator = new DocumentValidator({
  policies: new RepositoryPolicySources(join(repoRoot(), 'policies'), process.env.GATEHOUSE_CP_POLICY_CACHE_DIR || undefined),
  logger: logger.child({ check: 'configuration' }),
  moduleBytes: (sha) => store.module(sha)?.bytes ?? null,
  clocks: runtimeAdapter().clocks,
});
const app = controlPlaneApp({ store, adminToken: admin.token, logger, validator, staleAfterMs, dropAfterMs });
const listener = await listen(app, {
  port,
  hostname: process.env.GATEHOUSE_CP_HOST ?? '127.0.0.1',
  tls,
});
logger.info('control plane listening', {
  pid: process.pid,
  port: listener.port,
  scheme: tls ? 'https' : 'http',
  data: dataDir,
  revision: store.revision(),
  adminToken: admin.file ?? 'from GATEHOUSE_ADMIN_TOKEN',
});

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await listener.close();
  await validator.close();
  store.close();
  logger.info('stopped');
  // Its last lines written first, but an output nobody reads does not hold the exit for more than 2 s.
  await logger.drain(2000);
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
stopWithWrapper((pid) => {
  logger.info('the wrapper that started the control plane is gone: stopping as on SIGTERM', { pid });
  void stop();
});
