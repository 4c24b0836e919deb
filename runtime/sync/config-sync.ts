// Keeps a gateway's configuration in step with its control plane: polls `GET <url>/gateway/v1/config` with its gateway
// token, conditionally (If-None-Match: an unchanged configuration costs one small round trip), and hands each new
// document to `apply`, which applies it atomically or rejects it (the running configuration then stays in force).
// When the control plane cannot be reached the gateway keeps serving what it has ("fail static"); the outage and the
// return are each logged once.

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { readClaims } from '../control-plane/tokens.ts';
import type { ConfigBackup } from './backup.ts';
import { textOf, type ControlPlaneClient } from './control-plane-client.ts';
import type { RequestAggregates } from '../telemetry/aggregates.ts';
import { Poller } from './poller.ts';
import type { Logger } from '../telemetry/logger.ts';

export interface ConfigSyncOptions {
  /** The control plane's gateway API, with this gateway's token. */
  client: ControlPlaneClient;
  /** Poll interval (default 10 s, as Azure API Management's self-hosted gateway). */
  intervalMs?: number;
  /** Applies a new document; throws (a ConfigError with its problems) when it is refused. */
  apply: (text: string) => Promise<void>;
  logger: Logger;
  /** Where applied documents are kept, to start from when the control plane cannot be reached at start. */
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
}

type Health = 'connected' | 'unreachable' | 'refused';

export class ConfigSync {
  private readonly client: ControlPlaneClient;
  /** The configuration endpoint's URL, for logs. */
  private readonly endpoint: string;
  private etag: string | null = null;
  private readonly poller: Poller;
  private readonly heartbeats: Poller;
  private readonly telemetry: Poller;
  private readonly instance = randomUUID();
  private readonly startedAt = Date.now();
  private health: Health | null = null;
  /** A configuration is being served (from the control plane or a backup). */
  private applied = false;
  private backupTried = false;
  /** The revision applied last (the control plane's `x-gatehouse-revision`), for logs and probes. */
  revision: string | null = null;

  constructor(private readonly options: ConfigSyncOptions) {
    this.client = options.client;
    this.endpoint = options.client.endpoint('/gateway/v1/config');
    this.poller = new Poller(() => this.check(), options.intervalMs ?? 10_000);
    this.heartbeats = new Poller(() => this.heartbeat(), options.heartbeatMs ?? 60_000);
    this.telemetry = new Poller(() => this.sendAggregates(), options.telemetryMs ?? 60_000);
  }

  /** Starts polling and heartbeats; the first of each runs at once. */
  start(): void {
    this.poller.start();
    this.heartbeats.start();
    if (this.options.aggregates) this.telemetry.start();
  }

  async stop(): Promise<void> {
    await Promise.all([this.poller.stop(), this.heartbeats.stop(), this.telemetry.stop()]);
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
      const reply = await this.client.call('POST', '/gateway/v1/telemetry', {
        json: { instance: this.instance, dropped: aggregates.dropped, aggregates: batch },
      });
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

  /** Tells the control plane this instance is alive, and which revision it runs. Failures only wait for the next. */
  private async heartbeat(): Promise<void> {
    this.checkTokenExpiry();
    const revision = this.revision === null ? null : Number(this.revision);
    try {
      await this.client.call('POST', '/gateway/v1/heartbeat', {
        json: {
          instance: this.instance,
          host: hostname(),
          version: this.options.version,
          revision: Number.isFinite(revision) ? revision : null,
          uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000),
          health: this.options.health?.() ?? 'unknown',
        },
      });
    } catch {
      // The config poll reports the control plane being unreachable; a heartbeat has nothing to add.
    }
  }

  /** One poll now; resolves once a new document found is applied or refused. */
  poll(): Promise<void> {
    return this.poller.poll();
  }

  private setHealth(health: Health, fields: Record<string, unknown> = {}): void {
    if (health === this.health) return;
    const before = this.health;
    this.health = health;
    const { logger } = this.options;
    if (health === 'unreachable') logger.warn('control plane unreachable: serving the configuration in memory', fields);
    else if (health === 'refused') logger.error('the control plane refused this gateway\'s token', fields);
    else if (before !== null) logger.info('control plane reachable again', fields);
  }

  private async check(): Promise<void> {
    const { logger } = this.options;
    let status: number;
    let text = '';
    let etag: string | null = null;
    let revision: string | null = null;
    try {
      const reply = await this.client.call('GET', '/gateway/v1/config', { headers: this.etag ? { 'if-none-match': this.etag } : {} });
      status = reply.status;
      text = textOf(reply);
      etag = typeof reply.headers.etag === 'string' ? reply.headers.etag : null;
      revision = typeof reply.headers['x-gatehouse-revision'] === 'string' ? reply.headers['x-gatehouse-revision'] : null;
    } catch (err) {
      this.setHealth('unreachable', { url: this.endpoint, error: (err as Error).message });
      await this.startFromBackup();
      return;
    }
    if (status === 401 || status === 403) {
      this.setHealth('refused', { status, detail: detailOf(text) });
      return;
    }
    if (status >= 500) {
      this.setHealth('unreachable', { url: this.endpoint, status, detail: detailOf(text) });
      await this.startFromBackup();
      return;
    }
    this.setHealth('connected', { url: this.endpoint });
    if (status === 304) return;
    if (status !== 200) {
      logger.warn('unexpected answer from the control plane', { status, detail: detailOf(text) });
      return;
    }
    // Remembered whether it applies or not: a refused document is not fetched and refused again every poll.
    this.etag = etag;
    try {
      await this.options.apply(text);
      this.applied = true;
      this.revision = revision;
    } catch (err) {
      const problems = (err as { problems?: unknown }).problems;
      logger.error('configuration from the control plane rejected; the running configuration stays in force', {
        revision,
        problems: problems ?? [{ where: this.endpoint, message: (err as Error).message }],
      });
      return;
    }
    // Backed up before it is reported applied: once the log says so, a restart can start from it.
    await this.options.backup?.save({ text, etag, revision }).catch((err: Error) => {
      logger.error('could not write the configuration backup', { dir: this.options.backup!.dir, error: err.message });
    });
    logger.info('configuration from the control plane applied', { revision, backedUp: this.options.backup !== undefined });
  }

  /**
   * Once, when the control plane cannot be reached and nothing is served yet: the newest backup that checks out and
   * applies, else the previous one. Without one the gateway stays not ready, and polling goes on.
   */
  private async startFromBackup(): Promise<void> {
    const { backup, logger } = this.options;
    if (this.applied || this.backupTried) return;
    this.backupTried = true;
    if (!backup) {
      logger.error('no configuration yet and the control plane is unreachable: not ready until it answers (no GATEHOUSE_BACKUP_DIR)');
      return;
    }
    const { usable, problems } = await backup.entries();
    for (const entry of usable) {
      try {
        await this.options.apply(entry.text);
      } catch (err) {
        problems.push(`${entry.file}: ${(err as Error).message}`);
        continue;
      }
      this.applied = true;
      this.etag = entry.etag;
      this.revision = entry.revision;
      logger.warn('started from the configuration backup: the control plane is unreachable', {
        file: entry.file,
        revision: entry.revision,
        savedAt: entry.savedAt,
        skipped: problems,
      });
      return;
    }
    logger.error('no usable configuration backup: not ready until the control plane answers', { dir: backup.dir, problems });
  }
}

function detailOf(text: string): string {
  try {
    return String((JSON.parse(text) as { detail?: unknown }).detail ?? text.slice(0, 200));
  } catch {
    return text.slice(0, 200);
  }
}
