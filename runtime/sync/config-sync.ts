// Keeps a gateway's configuration in step with its control plane: polls `GET <url>/gateway/v1/config` with its gateway
// token, conditionally (If-None-Match: an unchanged configuration costs one small round trip), and offers each new
// document to the gateway's config store, which puts it in force whole or refuses it.
//
// Fail static: whatever keeps the gateway from using what the control plane serves (no answer, a 5xx, its token
// refused, a document or a module it names that the gateway rejects) is handled alike. The configuration in force
// stays; with none in force yet, the gateway starts from its backup; polling goes on. What was refused and why is in
// the log, in the next heartbeat (sent at once) and in the `gatehouse_sync_*` metrics.

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { CONFIG_PATH, HEARTBEAT_PATH, REVISION_HEADER, TELEMETRY_PATH, type HeartbeatPayload, type TelemetryPayload, type TokenState } from '../gateway-api/endpoints.ts';
import { readClaims } from '../gateway-api/tokens.ts';
import type { ConfigBackup } from './backup.ts';
import { textOf, type ControlPlaneClient } from './control-plane-client.ts';
import { ModuleDownloadError, type ModuleCache } from './modules.ts';
import type { RequestAggregates } from '../telemetry/aggregates.ts';
import { Poller } from '../config/poller.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { MetricsRegistry } from '../telemetry/metrics.ts';

export interface ConfigSyncOptions {
  /** The control plane's gateway API, with this gateway's token. */
  client: ControlPlaneClient;
  /** Poll interval (default 10 s, as Azure API Management's self-hosted gateway). */
  intervalMs?: number;
  /**
   * The owner of the configuration in force (runtime/gateway/config-store.ts): checks and binds a document and puts
   * it in force, or throws why not (a ConfigError with its problems), the configuration in force staying.
   */
  configs: { offer(text: string): Promise<{ apis: readonly { id: string }[] }> };
  /** The policy modules fetched for documents: after each document applied, those nothing names any more are removed. */
  modules?: ModuleCache;
  logger: Logger;
  /** Where applied documents are kept, to start from when the control plane cannot be used at start. */
  backup?: ConfigBackup;
  /** Heartbeat interval (default a minute); each tells the control plane who runs which revision, and how it is. */
  heartbeatMs?: number;
  /** What the heartbeat says the gateway is (`ready` or `not-ready`). */
  health?: () => string;
  /** Per-minute request aggregates to deliver to the control plane. */
  aggregates?: RequestAggregates;
  /** How often pending aggregates are sent (default a minute). */
  telemetryMs?: number;
  /** The gateway's version (package.json's), as its heartbeats report it. */
  version: string;
  /** Where the `gatehouse_sync_*` gauges go. */
  metrics?: MetricsRegistry;
}

/** How the last call to the control plane went: answered, not answered (or 5xx), or the token refused. */
type Reach = 'connected' | 'unreachable' | 'refused';

/** The configuration being served, and where it came from. */
interface InForce {
  revision: number | null;
  etag: string | null;
  source: 'control-plane' | 'backup';
}

/** The last document from the control plane the gateway could not use, until a newer one is applied. */
interface Rejection {
  revision: number | null;
  /** One line: the first problem, and how many more. */
  reason: string;
  at: string;
}

/** The control plane's text fields take at most 200 characters; a longer reason would be dropped whole. */
const REASON_MAX = 200;

const revisionOf = (value: string | null | undefined): number | null => {
  if (value === null || value === undefined || value === '') return null;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : null;
};

export class ConfigSync {
  private readonly client: ControlPlaneClient;
  /** The configuration endpoint's URL, for logs. */
  private readonly endpoint: string;
  /** The ETag of the last document received, applied or rejected: a rejected one is not fetched again every poll. */
  private etag: string | null = null;
  private readonly poller: Poller;
  private readonly heartbeats: Poller;
  private readonly telemetry: Poller;
  /** This process's id in heartbeats, as `GET /admin/gateways` lists it; logged at start. */
  readonly instance = randomUUID();
  private readonly startedAt = Date.now();
  private reach: Reach | null = null;
  private inForce: InForce | null = null;
  private rejection: Rejection | null = null;
  private backupTried = false;
  /** Why the control plane's configuration cannot be used now, while nothing is served: for the probes. */
  private nothingBecause = 'waiting for the first answer of the control plane';
  /** And why no backup was served instead (`; no usable configuration backup in …`), once that was tried. */
  private noBackupBecause = '';
  private tokenState: TokenState = 'unknown';
  private lastSuccessAt: number | null = null;
  /** Polls in a row that did not leave the gateway in step with the control plane. */
  private failures = 0;
  private heartbeatsStarted = false;
  /** Something changed while a heartbeat was on its way: send another after it. */
  private heartbeatAgain = false;
  private stopped = false;

  constructor(private readonly options: ConfigSyncOptions) {
    this.client = options.client;
    this.endpoint = options.client.endpoint(CONFIG_PATH);
    this.poller = new Poller(() => this.pollOnce(), options.intervalMs ?? 10_000);
    this.heartbeats = new Poller(() => this.heartbeat(), options.heartbeatMs ?? 60_000);
    this.telemetry = new Poller(() => this.sendAggregates(), options.telemetryMs ?? 60_000);
    const metrics = options.metrics;
    if (metrics) {
      metrics.gauge('gatehouse_sync_last_success_timestamp_seconds', 'When the gateway was last in step with the control plane (Unix seconds; 0: never).', () =>
        this.lastSuccessAt === null ? 0 : Math.floor(this.lastSuccessAt / 1000),
      );
      metrics.gauge('gatehouse_sync_consecutive_failures', 'Polls in a row that did not leave the gateway in step with the control plane.', () => this.failures);
      metrics.gauge('gatehouse_sync_revision', 'The configuration revision in force (0: none).', () => this.inForce?.revision ?? 0);
      metrics.gauge('gatehouse_sync_rejected_revision', 'The revision from the control plane the gateway rejected, until a newer one applies (0: none; -1: one without a revision number).', () =>
        this.rejection === null ? 0 : (this.rejection.revision ?? -1),
      );
      metrics.gauge('gatehouse_sync_serving_backup', 'Whether the configuration in force came from the backup (1) rather than the control plane (0).', () =>
        this.inForce?.source === 'backup' ? 1 : 0,
      );
      metrics.gauge('gatehouse_sync_token_refused', 'Whether the control plane refused the gateway token at its last answer (1).', () =>
        this.tokenState === 'refused' ? 1 : 0,
      );
      metrics.gauge('gatehouse_sync_token_expiry_timestamp_seconds', 'When the gateway token expires (Unix seconds; 0: not a token the gateway can read).', () =>
        readClaims(this.client.token)?.expires ?? 0,
      );
    }
  }

  /** Starts polling at once; heartbeats start once the first poll has applied, refused or failed. */
  start(): void {
    this.poller.start();
    if (this.options.aggregates) this.telemetry.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([this.poller.stop(), this.heartbeats.stop(), this.telemetry.stop()]);
  }

  /** Why the probes answer 503 while nothing is in force; null once something is. */
  notReadyDetail(): string | null {
    return this.inForce === null ? `${this.nothingBecause}${this.noBackupBecause}` : null;
  }

  /** One poll now; resolves once a new document found is applied or refused. */
  poll(): Promise<void> {
    return this.poller.poll();
  }

  private async pollOnce(): Promise<void> {
    await this.check();
    if (this.stopped) return;
    if (!this.heartbeatsStarted) {
      // The first heartbeat says what the first poll brought, not "no revision yet".
      this.heartbeatsStarted = true;
      this.heartbeats.start();
    }
  }

  /**
   * Delivers the closed per-minute aggregates; what cannot be delivered now (the control plane away) stays queued for
   * the next attempt, within the queue's bound.
   */
  private async sendAggregates(): Promise<void> {
    const aggregates = this.options.aggregates!;
    const batch = aggregates.pending().slice(0, 500);
    if (batch.length === 0) return;
    try {
      const payload: TelemetryPayload = { instance: this.instance, dropped: aggregates.dropped, aggregates: batch };
      const reply = await this.client.call('POST', TELEMETRY_PATH, { json: payload });
      if (reply.status === 200) aggregates.delivered(batch.length);
    } catch {
      // Kept for the next attempt; the config poll reports the control plane being unreachable.
    }
  }

  /** The last expiry warning given (a week before, then a day before), and for which token: a new one starts over. */
  private tokenWarning: { tokenId: string | null; expires: number; due: 'week' | 'day' } | null = null;

  /** Warns, once a week before and once a day before, that the gateway token is about to expire. */
  private checkTokenExpiry(): void {
    const claims = readClaims(this.client.token);
    if (!claims) return;
    const left = claims.expires * 1000 - Date.now();
    const due = left < 86_400_000 ? 'day' : left < 7 * 86_400_000 ? 'week' : null;
    // Tokens of the earlier format have no id (null): their expiry tells one from another.
    const warned = this.tokenWarning;
    if (due === null || (warned?.tokenId === claims.id && warned.expires === claims.expires && warned.due === due)) return;
    this.tokenWarning = { tokenId: claims.id, expires: claims.expires, due };
    this.options.logger.warn('the gateway token expires soon: issue a new one (gatehouse token issue) and write it to GATEHOUSE_TOKEN_FILE', {
      gateway: claims.gateway,
      tokenId: claims.id,
      expiresAt: new Date(claims.expires * 1000).toISOString(),
      hoursLeft: Math.max(0, Math.floor(left / 3_600_000)),
    });
  }

  /** What the next heartbeat says. */
  heartbeatPayload(): HeartbeatPayload {
    return {
      instance: this.instance,
      host: hostname(),
      version: this.options.version,
      revision: this.inForce?.revision ?? null,
      uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000),
      health: this.options.health?.() ?? 'unknown',
      configSource: this.inForce?.source ?? null,
      rejectedRevision: this.rejection?.revision ?? null,
      rejectedReason: this.rejection?.reason ?? null,
      rejectedAt: this.rejection?.at ?? null,
      tokenState: this.tokenState,
      lastSyncAt: this.lastSuccessAt === null ? null : new Date(this.lastSuccessAt).toISOString(),
      syncFailures: this.failures,
    };
  }

  /**
   * Tells the control plane this instance is alive, which revision it runs and what it refused; again at once when
   * something changed on the way. Failures only wait for the next.
   */
  private async heartbeat(): Promise<void> {
    this.checkTokenExpiry();
    do {
      this.heartbeatAgain = false;
      try {
        await this.client.call('POST', HEARTBEAT_PATH, { json: this.heartbeatPayload() });
      } catch {
        // The config poll reports the control plane being unreachable; a heartbeat has nothing to add.
      }
    } while (this.heartbeatAgain && !this.stopped);
  }

  /** A configuration was applied or refused: the fleet view learns it now, not at the next interval. */
  private reportNow(): void {
    if (!this.heartbeatsStarted || this.stopped) return; // the first heartbeat, after this poll, carries it
    this.heartbeatAgain = true;
    void this.heartbeats.poll();
  }

  private setReach(reach: Reach, fields: Record<string, unknown>): void {
    if (reach === this.reach) return;
    const before = this.reach;
    this.reach = reach;
    const { logger } = this.options;
    const action = `check that the control plane is running and that this gateway reaches ${this.client.url} (GATEHOUSE_CONFIG_URL); it is asked again every ${this.options.intervalMs ?? 10_000} ms`;
    if (reach === 'unreachable') {
      if (this.inForce) {
        logger.warn('control plane unreachable: serving the configuration in memory', { ...fields, serving: this.serving(), action });
      } else {
        logger.warn(`control plane unreachable and no configuration loaded yet: ${this.withNothingInForce()}`, { ...fields, action });
      }
    } else if (reach === 'refused') {
      logger.error('the control plane refused this gateway\'s token', {
        ...fields,
        serving: this.inForce ? this.serving() : 'nothing: not ready',
        action: 'issue the gateway a new token (gatehouse token issue <gateway>) and give it to this gateway (write it to GATEHOUSE_TOKEN_FILE, or restart it with GATEHOUSE_TOKEN)',
      });
    } else if (before !== null) {
      const serving = this.inForce ? this.serving() : 'nothing yet';
      if (before === 'refused') logger.info('the control plane accepts this gateway\'s token again', { ...fields, serving });
      else logger.info('control plane reachable again', { ...fields, serving });
    }
    this.reportNow();
  }

  /** The configuration in force, in words: `revision 37 from the backup`. */
  private serving(): string {
    const f = this.inForce!;
    return `revision ${f.revision ?? '(unknown)'} from ${f.source === 'backup' ? 'the backup' : 'the control plane'}`;
  }

  /** The control plane could not be used this poll: counted, said once, and with nothing in force, the backup. */
  private async cannotUse(reach: Reach, because: string, fields: Record<string, unknown>): Promise<void> {
    this.failures++;
    this.nothingBecause = because;
    this.setReach(reach, fields);
    await this.startFromBackup(because);
  }

  private inStep(): void {
    this.failures = 0;
    this.lastSuccessAt = Date.now();
  }

  private async check(): Promise<void> {
    const { logger } = this.options;
    let status: number;
    let text = '';
    let etag: string | null = null;
    let revision: number | null = null;
    try {
      const reply = await this.client.call('GET', CONFIG_PATH, { headers: this.etag ? { 'if-none-match': this.etag } : {} });
      status = reply.status;
      text = textOf(reply);
      etag = typeof reply.headers.etag === 'string' ? reply.headers.etag : null;
      const revisionHeader = reply.headers[REVISION_HEADER];
      revision = revisionOf(typeof revisionHeader === 'string' ? revisionHeader : null);
    } catch (err) {
      const error = (err as Error).message;
      await this.cannotUse('unreachable', `the control plane is unreachable (${error})`, { url: this.endpoint, error });
      return;
    }
    if (status === 401 || status === 403) {
      const detail = detailOf(text);
      this.tokenState = 'refused';
      await this.cannotUse('refused', `the control plane refused this gateway's token (${detail})`, { status, detail });
      return;
    }
    if (status >= 500) {
      const detail = detailOf(text);
      await this.cannotUse('unreachable', `the control plane answered ${status} (${detail})`, { url: this.endpoint, status, detail });
      return;
    }
    if (this.tokenState !== 'accepted') {
      this.tokenState = 'accepted';
      this.reportNow();
    }
    this.setReach('connected', { url: this.endpoint });
    if (status === 304) {
      // In step when the unchanged document is the one in force (the backup's, say); not when it is one rejected.
      if (this.inForce && this.etag === this.inForce.etag) {
        this.inStep();
        if (this.inForce.source === 'backup') {
          this.inForce = { ...this.inForce, source: 'control-plane' };
          this.reportNow();
        }
      } else {
        this.failures++;
      }
      return;
    }
    if (status !== 200) {
      const detail = detailOf(text);
      logger.warn('unexpected answer from the control plane', { status, detail });
      this.failures++;
      this.nothingBecause = `the control plane answered ${status} (${detail})`;
      await this.startFromBackup(this.nothingBecause);
      return;
    }
    let applied: { apis: string[] };
    try {
      applied = await this.put(text);
    } catch (err) {
      await this.rejected(err as Error, revision, etag);
      return;
    }
    // What sync says is in force (metrics, heartbeats) changes in the same turn as the configuration itself.
    this.etag = etag;
    this.inForce = { revision, etag, source: 'control-plane' };
    this.rejection = null;
    this.inStep();
    await this.pruneModules(text);
    // Backed up before it is reported applied: once the log says so, a restart can start from it.
    await this.options.backup?.save({ text, etag, revision: revision === null ? null : String(revision) }).catch((err: Error) => {
      logger.error('could not write the configuration backup', { dir: this.options.backup!.dir, error: err.message });
    });
    logger.info('configuration from the control plane applied', { revision, apis: applied.apis, backedUp: this.options.backup !== undefined });
    this.reportNow();
  }

  /** A document from the control plane (or a module it names) that this gateway cannot use. */
  private async rejected(err: Error, revision: number | null, etag: string | null): Promise<void> {
    const { logger } = this.options;
    const problems = (err as { problems?: { where: string; message: string }[] }).problems ?? [{ where: this.endpoint, message: err.message }];
    if (err instanceof ModuleDownloadError) {
      // Not the document's fault: it is fetched again next poll, as after any failed call.
      const error = problems.map((p) => `${p.where}: ${p.message}`).join('; ');
      await this.cannotUse('unreachable', `a policy module could not be downloaded (${error})`, { url: this.endpoint, revision, error });
      return;
    }
    // Remembered: a refused document is not fetched and refused again every poll.
    this.etag = etag;
    this.failures++;
    const first = problems[0] ? `${problems[0].where}: ${problems[0].message}` : err.message;
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    const reason = first.length + more.length > REASON_MAX ? `${first.slice(0, REASON_MAX - more.length - 1)}…${more}` : `${first}${more}`;
    this.rejection = { revision, reason, at: new Date().toISOString() };
    const action = 'correct it in the control plane (GET /admin/revisions shows what changed); a newer revision this gateway can use is applied at the next poll';
    if (this.inForce) {
      logger.error(`configuration from the control plane rejected: revision ${this.inForce.revision ?? '(unknown)'} stays in force`, {
        revision,
        inForce: this.inForce.revision,
        inForceFrom: this.inForce.source,
        problems,
        action,
      });
    } else {
      logger.error(`configuration from the control plane rejected, and no configuration is in force yet: ${this.withNothingInForce()}`, {
        revision,
        problems,
        action,
      });
    }
    this.nothingBecause = `revision ${revision ?? '(unknown)'} from the control plane was rejected (${reason})`;
    this.reportNow();
    await this.startFromBackup(this.nothingBecause);
  }

  /** What the gateway does next while nothing is in force, for the log. */
  private withNothingInForce(): string {
    return this.options.backup && !this.backupTried ? 'starting from the backup' : 'not ready until the control plane serves a configuration it can use';
  }

  /**
   * Once, when the control plane cannot be used and nothing is served yet: the newest backup that checks out and
   * applies, else the previous one. Without one the gateway stays not ready, and polling goes on.
   */
  /** Puts `text` in force through the config store; says which APIs it serves. */
  private async put(text: string): Promise<{ apis: string[] }> {
    const live = await this.options.configs.offer(text);
    return { apis: live.apis.map((a) => a.id) };
  }

  /** Removes the fetched modules that neither `text` (just applied) nor the backup names any more. */
  private async pruneModules(text: string): Promise<void> {
    const { modules, backup, logger } = this.options;
    // Modules neither this document nor the backup (a restart's start, and its fallback) names are not needed; while
    // a backup file cannot be read, what it names is not known, and nothing is removed.
    const backedUp = backup ? await backup.entries() : { usable: [], problems: [] };
    if (modules && backedUp.problems.length === 0) {
      const pruned = await modules.prune([text, ...backedUp.usable.map((entry) => entry.text)]).catch((err: Error) => {
        logger.warn('could not remove unused policy modules', { error: err.message });
        return [];
      });
      if (pruned.length > 0) logger.info('unused policy modules removed', { modules: pruned.map((sha) => `sha256:${sha}`) });
    }
  }

  private async startFromBackup(because: string): Promise<void> {
    const { backup, logger } = this.options;
    if (this.inForce || this.backupTried) return;
    this.backupTried = true;
    if (!backup) {
      this.noBackupBecause = '; no GATEHOUSE_BACKUP_DIR to start from';
      logger.error('no configuration to serve: not ready until the control plane serves one this gateway can use', {
        because,
        action: 'set GATEHOUSE_BACKUP_DIR (a volume) so that a gateway restarted while the control plane cannot be used serves the configuration it last applied',
      });
      return;
    }
    const { usable, problems } = await backup.entries();
    for (const entry of usable) {
      try {
        await this.put(entry.text);
      } catch (err) {
        problems.push(`${entry.file}: ${(err as Error).message}`);
        continue;
      }
      const revision = revisionOf(entry.revision);
      this.inForce = { revision, etag: entry.etag, source: 'backup' };
      // A document seen already (the rejected one) is not asked for again; else the backup's may be current.
      this.etag ??= entry.etag;
      await this.pruneModules(entry.text);
      logger.warn(`started from the configuration backup: ${because}`, {
        file: entry.file,
        revision,
        savedAt: entry.savedAt,
        skipped: problems,
        ...(this.rejection ? { rejectedRevision: this.rejection.revision } : {}),
        action: 'the gateway serves this revision and keeps asking the control plane; it takes the next configuration it can use',
      });
      this.reportNow();
      return;
    }
    if (problems.length === 0) {
      problems.push(`${backup.dir} holds no backup yet (one is written after each configuration applied from the control plane)`);
    }
    this.noBackupBecause = `; no usable configuration backup in ${backup.dir}`;
    logger.error('no usable configuration backup: not ready until the control plane serves a configuration this gateway can use', {
      dir: backup.dir,
      because,
      problems,
    });
    this.reportNow();
  }
}

function detailOf(text: string): string {
  try {
    return String((JSON.parse(text) as { detail?: unknown }).detail ?? text.slice(0, 200));
  } catch {
    return text.slice(0, 200);
  }
}
