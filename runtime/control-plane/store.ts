// The control plane's state, in SQLite (better-sqlite3: synchronous, one file, survives restarts). Every change is a
// new configuration revision; a gateway's configuration is the document made of the APIs assigned to it.

import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { NO_SYNC_REPORT, type HeartbeatPayload, type MinuteAggregate, type SyncReport } from '../gateway-api/endpoints.ts';
import { documentDigest, gatewayDocumentOf, type ConfigState, type DocumentSources, type Operation, type ServedDocumentBody } from './plan.ts';

/** A gateway's document as the control plane serves it. */
export interface ServedDocument {
  revision: number;
  text: string;
  etag: string;
}

export interface RevisionRecord {
  revision: number;
  at: string;
  change: string;
}

/** An instance's last heartbeat as kept: what it sent, and what the control plane knows of it. */
export interface Heartbeat extends HeartbeatPayload {
  gateway: string;
  /** When it was received. */
  at: string;
  /** When the token the instance authenticated with expires (ISO 8601): a gateway refused later is no surprise. */
  tokenExpiresAt: string | null;
}

export interface StoredModule {
  sha256: string;
  bytes: Uint8Array;
  /** base64 Ed25519 signature (gateway-api/module-signatures.ts). */
  signature: string;
  name: string;
  version: string;
}

export interface StoredNamedValue {
  name: string;
  value: string;
  secret: boolean;
  updatedAt: string;
  /** The value this one replaced, still served to gateways until `previous.until` (a rotation's overlap). */
  previous: { value: string; until: string } | null;
}

const NAMED_VALUE_SELECT =
  'SELECT name, value, secret, updated_at AS updatedAt, previous_value AS previousValue, previous_until AS previousUntil FROM named_values';

interface NamedValueRow {
  name: string;
  value: string;
  secret: number;
  updatedAt: string;
  previousValue: string | null;
  previousUntil: string | null;
}

function namedValueOf(row: NamedValueRow): StoredNamedValue {
  const { previousValue, previousUntil, secret, ...rest } = row;
  return {
    ...rest,
    secret: secret === 1,
    previous: previousValue !== null && previousUntil !== null ? { value: previousValue, until: previousUntil } : null,
  };
}

export interface StoredFragment {
  name: string;
  /** Its policy entries, as a gateway's document holds them under `fragments`. */
  entries: unknown[];
  updatedAt: string;
}

const FRAGMENT_SELECT = 'SELECT name, entries, updated_at AS updatedAt FROM fragments';

type FragmentRow = Omit<StoredFragment, 'entries'> & { entries: string };

const fragmentOf = (row: FragmentRow): StoredFragment => ({ ...row, entries: JSON.parse(row.entries) as unknown[] });

export interface GatewayRecord {
  id: string;
  apis: string[];
  /** Raised to revoke every token issued before. */
  tokenGeneration: number;
}

/** An issued gateway token, as the store keeps it (never the token itself: its id names it). */
export interface GatewayTokenRecord {
  id: string;
  gateway: string;
  /** The gateway's token generation when it was issued: revoking every token raises the gateway's. */
  generation: number;
  issuedAt: string;
  expiresAt: string;
  /** When it was revoked, on its own or with every token of its gateway; null while it is not. */
  revokedAt: string | null;
  /** When a gateway last called with it, to within 10 s (null: never): an old token still in use shows here. */
  lastUsedAt: string | null;
}

/** A gateway's use of tokens of the earlier format (`gw1.`): they have no id, so no row in gateway_tokens. */
export interface EarlierFormatTokenUse {
  /** To within 10 s, as a token's lastUsedAt. */
  lastUsedAt: string;
  /** The latest expiry among them. */
  expiresAt: string;
}

export class ControlPlaneStore {
  /** Documents served, by gateway, with when they stop being current (servedDocument). */
  private readonly served = new Map<string, ServedDocument & { validUntil: number }>();
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    // The database holds the keys that sign tokens and modules: readable by its owner only (its folder is too).
    chmodSync(file, 0o600);
    this.db.pragma('journal_mode = WAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS apis (id TEXT PRIMARY KEY, document TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS gateways (id TEXT PRIMARY KEY, apis TEXT NOT NULL, token_generation INTEGER NOT NULL DEFAULT 1);
      CREATE TABLE IF NOT EXISTS revisions (revision INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, change TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
      CREATE TABLE IF NOT EXISTS named_values (name TEXT PRIMARY KEY, value TEXT NOT NULL, secret INTEGER NOT NULL, updated_at TEXT NOT NULL);
      -- A fragment's entries, as JSON (a list of policy entries).
      CREATE TABLE IF NOT EXISTS fragments (name TEXT PRIMARY KEY, entries TEXT NOT NULL, updated_at TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS modules (
        sha256 TEXT PRIMARY KEY, bytes BLOB NOT NULL, signature TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
        uploaded_at TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS telemetry (
        gateway TEXT NOT NULL, instance TEXT NOT NULL, api TEXT NOT NULL, minute TEXT NOT NULL,
        requests INTEGER NOT NULL, errors INTEGER NOT NULL, p50_ms REAL NOT NULL, p95_ms REAL NOT NULL, p99_ms REAL NOT NULL,
        PRIMARY KEY (gateway, instance, api, minute)
      );
      CREATE TABLE IF NOT EXISTS heartbeats (
        gateway TEXT NOT NULL, instance TEXT NOT NULL, host TEXT NOT NULL, version TEXT NOT NULL,
        revision INTEGER, uptime_seconds INTEGER NOT NULL, health TEXT NOT NULL, at TEXT NOT NULL, token_expires_at TEXT,
        PRIMARY KEY (gateway, instance)
      );
      -- Each revision that changed a gateway's document, with the document's digest: how far behind an instance is
      -- counts these, not revisions that changed nothing it serves.
      CREATE TABLE IF NOT EXISTS gateway_documents (
        gateway TEXT NOT NULL, revision INTEGER NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (gateway, revision)
      );
      CREATE TABLE IF NOT EXISTS token_refusals (gateway TEXT PRIMARY KEY, reason TEXT NOT NULL, at TEXT NOT NULL);
    `);
    // Databases made before heartbeats recorded token expiry get the column.
    const columns = this.db.prepare('PRAGMA table_info(heartbeats)').all() as { name: string }[];
    if (!columns.some((c) => c.name === 'token_expires_at')) this.db.exec('ALTER TABLE heartbeats ADD COLUMN token_expires_at TEXT');
    // ... and before they carried a sync report (JSON, SyncReport).
    if (!columns.some((c) => c.name === 'sync')) this.db.exec('ALTER TABLE heartbeats ADD COLUMN sync TEXT');
    // Databases made before named values could keep a previous value during a rotation get its columns.
    const valueColumns = this.db.prepare('PRAGMA table_info(named_values)').all() as { name: string }[];
    if (!valueColumns.some((c) => c.name === 'previous_value')) {
      this.db.exec('ALTER TABLE named_values ADD COLUMN previous_value TEXT; ALTER TABLE named_values ADD COLUMN previous_until TEXT');
    }
    // Databases made before gateways could use tokens of two formats get the columns that record the earlier one's use.
    const gatewayColumns = this.db.prepare('PRAGMA table_info(gateways)').all() as { name: string }[];
    if (!gatewayColumns.some((c) => c.name === 'earlier_format_used_at')) {
      this.db.exec('ALTER TABLE gateways ADD COLUMN earlier_format_used_at TEXT; ALTER TABLE gateways ADD COLUMN earlier_format_expires_at TEXT');
    }
    this.createTokenTable();
    // Databases made before documents were recorded: each gateway's document as it is, as of revision 0 (what an
    // instance runs was fetched before now, and nothing says the document changed since).
    this.db.transaction(() => {
      const recorded = this.db.prepare('SELECT 1 FROM gateway_documents WHERE gateway = ? LIMIT 1');
      for (const { id } of this.gateways()) {
        if (!recorded.get(id)) this.db.prepare('INSERT INTO gateway_documents (gateway, revision, digest) VALUES (?, 0, ?)').run(id, documentDigest(this.gatewayDocument(id)));
      }
    })();
  }

  /** A secret made on first use (by `make`, default 32 random bytes) and kept: the keys for tokens and modules. */
  secret(name: string, make: () => Buffer = () => randomBytes(32)): Buffer {
    const row = this.db.prepare('SELECT value FROM secrets WHERE name = ?').get(name) as { value: Buffer } | undefined;
    if (row) return row.value;
    const value = make();
    this.db.prepare('INSERT INTO secrets (name, value) VALUES (?, ?)').run(name, value);
    return value;
  }

  revision(): number {
    const row = this.db.prepare('SELECT MAX(revision) AS n FROM revisions').get() as { n: number | null };
    return row.n ?? 0;
  }

  revisions(limit: number): RevisionRecord[] {
    return this.db
      .prepare('SELECT revision, at, change FROM revisions ORDER BY revision DESC LIMIT ?')
      .all(limit) as RevisionRecord[];
  }

  /** Runs `write` and records the change as a new revision, atomically; returns the revision. */
  private change(description: string, write: () => void): number {
    return this.db.transaction(() => {
      write();
      const info = this.db.prepare('INSERT INTO revisions (at, change) VALUES (?, ?)').run(new Date().toISOString(), description);
      const revision = Number(info.lastInsertRowid);
      this.recordDocuments(revision);
      return revision;
    })();
  }

  api(id: string): unknown | null {
    const row = this.db.prepare('SELECT document FROM apis WHERE id = ?').get(id) as { document: string } | undefined;
    return row ? JSON.parse(row.document) : null;
  }

  apis(): unknown[] {
    return (this.db.prepare('SELECT document FROM apis ORDER BY id').all() as { document: string }[]).map((r) => JSON.parse(r.document));
  }

  gateway(id: string): GatewayRecord | null {
    const row = this.db.prepare('SELECT id, apis, token_generation FROM gateways WHERE id = ?').get(id) as
      | { id: string; apis: string; token_generation: number }
      | undefined;
    return row ? { id: row.id, apis: JSON.parse(row.apis) as string[], tokenGeneration: row.token_generation } : null;
  }

  gateways(): GatewayRecord[] {
    return (this.db.prepare('SELECT id FROM gateways ORDER BY id').all() as { id: string }[]).map((r) => this.gateway(r.id)!);
  }

  /** Revokes every token issued to the gateway so far. */
  revokeTokens(id: string): number {
    return this.change(`gateway ${id}: tokens revoked`, () => {
      this.db.prepare('UPDATE gateways SET token_generation = token_generation + 1 WHERE id = ?').run(id);
      this.db.prepare('UPDATE gateway_tokens SET revoked_at = ? WHERE gateway = ? AND revoked_at IS NULL').run(new Date().toISOString(), id);
      // Earlier-format tokens are revoked with the rest (the generation): none of them can be in use any more.
      this.db.prepare('UPDATE gateways SET earlier_format_used_at = NULL, earlier_format_expires_at = NULL WHERE id = ?').run(id);
    });
  }

  /**
   * The configuration document a gateway serves: the APIs assigned to it that exist, and the fragments and named values
   * they use (only those: a gateway holds no secret it does not use, and another API's fragment is not its concern).
   */
  gatewayDocument(id: string): ServedDocumentBody | null {
    const gateway = this.gateway(id);
    if (!gateway) return null;
    return gatewayDocumentOf(gateway.apis, this.sources);
  }

  private readonly sources: DocumentSources = {
    api: (id) => this.api(id),
    fragment: (name) => this.fragment(name)?.entries ?? null,
    namedValue: (name) => this.namedValue(name),
  };

  fragment(name: string): StoredFragment | null {
    const row = this.db.prepare(`${FRAGMENT_SELECT} WHERE name = ?`).get(name) as FragmentRow | undefined;
    return row ? fragmentOf(row) : null;
  }

  fragments(): StoredFragment[] {
    return (this.db.prepare(`${FRAGMENT_SELECT} ORDER BY name`).all() as FragmentRow[]).map(fragmentOf);
  }

  /**
   * The document a gateway is served: its JSON text, its ETag (the text's digest, so that a change to APIs the gateway
   * does not serve changes nothing for it) and the revision it is of. Every instance of every gateway asks for it every
   * few seconds, so it is made again only when the revision changes or an overlap it carries ends (the previous value
   * then drops out of it).
   */
  servedDocument(id: string, now = Date.now()): ServedDocument | null {
    const revision = this.revision();
    const cached = this.served.get(id);
    if (cached && cached.revision === revision && now < cached.validUntil) return cached;
    const doc = this.gatewayDocument(id);
    if (!doc) {
      this.served.delete(id);
      return null;
    }
    const overlapEnds = Object.values(doc.namedValues ?? {}).flatMap((v) => (v.previous ? [Date.parse(v.previous.until)] : []));
    // A NaN (an end that does not parse) makes the comparison above fail: such a document is never reused.
    const entry = { revision, text: JSON.stringify(doc), etag: `"${documentDigest(doc)}"`, validUntil: Math.min(Infinity, ...overlapEnds) };
    this.served.set(id, entry);
    return entry;
  }

  namedValue(name: string): StoredNamedValue | null {
    const row = this.db.prepare(`${NAMED_VALUE_SELECT} WHERE name = ?`).get(name) as NamedValueRow | undefined;
    return row ? namedValueOf(row) : null;
  }

  namedValues(): StoredNamedValue[] {
    return (this.db.prepare(`${NAMED_VALUE_SELECT} ORDER BY name`).all() as NamedValueRow[]).map(namedValueOf);
  }

  /**
   * Stores a module by its sha256; false when it was stored already. Not a revision: a module changes no gateway's
   * document until an API names it (that is the revision), and an upload of the same bytes changes nothing at all.
   */
  putModule(module: StoredModule): boolean {
    const info = this.db
      .prepare(
        `INSERT INTO modules (sha256, bytes, signature, name, version, uploaded_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(sha256) DO NOTHING`,
      )
      .run(module.sha256, Buffer.from(module.bytes), module.signature, module.name, module.version, new Date().toISOString());
    return info.changes > 0;
  }

  module(sha256: string): StoredModule | null {
    const row = this.db.prepare('SELECT sha256, bytes, signature, name, version FROM modules WHERE sha256 = ?').get(sha256) as
      | (Omit<StoredModule, 'bytes'> & { bytes: Buffer })
      | undefined;
    return row ? { ...row, bytes: new Uint8Array(row.bytes) } : null;
  }

  modules(): Omit<StoredModule, 'bytes'>[] {
    return this.db.prepare('SELECT sha256, signature, name, version, uploaded_at AS uploadedAt FROM modules ORDER BY uploaded_at').all() as Omit<StoredModule, 'bytes'>[];
  }

  /** Records a gateway instance's heartbeat (one row per instance: the latest). */
  heartbeat(beat: Heartbeat): void {
    const { configSource, rejectedRevision, rejectedReason, rejectedAt, tokenState, lastSyncAt, syncFailures, ...rest } = beat;
    const sync = JSON.stringify({ configSource, rejectedRevision, rejectedReason, rejectedAt, tokenState, lastSyncAt, syncFailures });
    this.db
      .prepare(
        `INSERT INTO heartbeats (gateway, instance, host, version, revision, uptime_seconds, health, at, token_expires_at, sync)
         VALUES (@gateway, @instance, @host, @version, @revision, @uptimeSeconds, @health, @at, @tokenExpiresAt, @sync)
         ON CONFLICT(gateway, instance) DO UPDATE SET host = excluded.host, version = excluded.version,
           revision = excluded.revision, uptime_seconds = excluded.uptime_seconds, health = excluded.health, at = excluded.at,
           token_expires_at = excluded.token_expires_at, sync = excluded.sync`,
      )
      .run({ ...rest, sync });
  }

  /** The instances of a gateway that sent heartbeats, the latest first. */
  instances(gateway: string): Heartbeat[] {
    const rows = this.db
      .prepare(
        `SELECT gateway, instance, host, version, revision, uptime_seconds AS uptimeSeconds, health, at,
           token_expires_at AS tokenExpiresAt, sync
         FROM heartbeats WHERE gateway = ? ORDER BY at DESC`,
      )
      .all(gateway) as (Omit<Heartbeat, keyof SyncReport> & { sync: string | null })[];
    return rows.map(({ sync, ...beat }) => ({ ...beat, ...NO_SYNC_REPORT, ...(sync ? (JSON.parse(sync) as Partial<SyncReport>) : {}) }));
  }

  /** Stores delivered aggregates; one delivered twice (a retry after a lost answer) replaces itself. */
  addTelemetry(gateway: string, instance: string, rows: readonly MinuteAggregate[]): void {
    const insert = this.db.prepare(
      `INSERT OR REPLACE INTO telemetry (gateway, instance, api, minute, requests, errors, p50_ms, p95_ms, p99_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.db.transaction(() => {
      for (const r of rows) insert.run(gateway, instance, r.api, r.minute, r.requests, r.errors, r.p50Ms, r.p95Ms, r.p99Ms);
    })();
  }

  telemetry(gateway: string | null, limit: number): (MinuteAggregate & { gateway: string; instance: string })[] {
    return this.db
      .prepare(
        `SELECT gateway, instance, api, minute, requests, errors, p50_ms AS p50Ms, p95_ms AS p95Ms, p99_ms AS p99Ms FROM telemetry
         WHERE (? IS NULL OR gateway = ?) ORDER BY minute DESC LIMIT ?`,
      )
      .all(gateway, gateway, limit) as (MinuteAggregate & { gateway: string; instance: string })[];
  }

  /**
   * Issued gateway tokens, one row each. A gateway deleted takes its tokens with it (the trigger), so that a gateway
   * made again under the same id, whose token generation starts over, does not accept the old one's tokens.
   */
  private createTokenTable(): void {
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS gateway_tokens (
        id TEXT PRIMARY KEY, gateway TEXT NOT NULL, generation INTEGER NOT NULL, issued_at TEXT NOT NULL,
        expires_at TEXT NOT NULL, revoked_at TEXT, last_used_at TEXT
      );
      CREATE INDEX IF NOT EXISTS gateway_tokens_by_gateway ON gateway_tokens (gateway);
      CREATE TRIGGER IF NOT EXISTS gateway_tokens_go_with_their_gateway AFTER DELETE ON gateways
      BEGIN
        DELETE FROM gateway_tokens WHERE gateway = OLD.id;
      END;
    `);
  }

  private static readonly TOKEN_COLUMNS =
    'id, gateway, generation, issued_at AS issuedAt, expires_at AS expiresAt, revoked_at AS revokedAt, last_used_at AS lastUsedAt';

  /**
   * Records a token being issued. Rows of tokens expired more than MAX_TOKEN_DAYS ago go at the same time: listed for
   * a while after they expire, not forever.
   */
  addGatewayToken(token: Omit<GatewayTokenRecord, 'revokedAt' | 'lastUsedAt'>, forgetBefore: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM gateway_tokens WHERE expires_at < ?').run(forgetBefore);
      this.db
        .prepare('INSERT INTO gateway_tokens (id, gateway, generation, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)')
        .run(token.id, token.gateway, token.generation, token.issuedAt, token.expiresAt);
    })();
  }

  gatewayToken(id: string): GatewayTokenRecord | null {
    const row = this.db.prepare(`SELECT ${ControlPlaneStore.TOKEN_COLUMNS} FROM gateway_tokens WHERE id = ?`).get(id);
    return (row as GatewayTokenRecord | undefined) ?? null;
  }

  /** A gateway's tokens, the newest first. */
  gatewayTokens(gateway: string): GatewayTokenRecord[] {
    return this.db
      .prepare(`SELECT ${ControlPlaneStore.TOKEN_COLUMNS} FROM gateway_tokens WHERE gateway = ? ORDER BY issued_at DESC, id`)
      .all(gateway) as GatewayTokenRecord[];
  }

  /** Revokes one token (a token revoked already keeps its time); null when the gateway has no such token. */
  revokeGatewayToken(gateway: string, id: string, at: string): GatewayTokenRecord | null {
    this.db.prepare('UPDATE gateway_tokens SET revoked_at = ? WHERE id = ? AND gateway = ? AND revoked_at IS NULL').run(at, id, gateway);
    const token = this.gatewayToken(id);
    return token && token.gateway === gateway ? token : null;
  }

  /** Notes that a gateway called with the token. */
  gatewayTokenUsed(id: string, at: string): void {
    this.db.prepare('UPDATE gateway_tokens SET last_used_at = ? WHERE id = ?').run(at, id);
  }

  /**
   * Notes that a gateway called with a token of the earlier format (`gw1.`, no row of its own): when, and the latest
   * expiry of such a token seen, which is when the last of them stops working by itself.
   */
  earlierFormatTokenUsed(gateway: string, at: string, expiresAt: string): void {
    this.db
      .prepare('UPDATE gateways SET earlier_format_used_at = ?, earlier_format_expires_at = MAX(COALESCE(earlier_format_expires_at, ?), ?) WHERE id = ?')
      .run(at, expiresAt, expiresAt, gateway);
  }

  /** When the gateway last called with a token of the earlier format since its tokens were last all revoked, if it did. */
  earlierFormatTokenUse(gateway: string): EarlierFormatTokenUse | null {
    const row = this.db.prepare('SELECT earlier_format_used_at AS lastUsedAt, earlier_format_expires_at AS expiresAt FROM gateways WHERE id = ?').get(gateway) as
      | { lastUsedAt: string | null; expiresAt: string | null }
      | undefined;
    return row?.lastUsedAt && row.expiresAt ? { lastUsedAt: row.lastUsedAt, expiresAt: row.expiresAt } : null;
  }

  // --- planned changes (plan.ts) ----------------------------------------------------------------------------------

  /** APIs, gateways, fragments, named values and modules as they are: what a plan starts from. */
  state(): ConfigState {
    return {
      apis: new Map((this.apis() as Record<string, unknown>[]).map((api) => [String(api.id), api])),
      gateways: new Map(this.gateways().map((g) => [g.id, g.apis])),
      fragments: new Map(this.fragments().map((f) => [f.name, f.entries])),
      namedValues: new Map(this.namedValues().map((v) => [v.name, { value: v.value, secret: v.secret, previous: v.previous }])),
      modules: new Set((this.db.prepare('SELECT sha256 FROM modules').all() as { sha256: string }[]).map((r) => r.sha256)),
    };
  }

  /** Writes every operation in one transaction, as one revision described by `description`; returns the revision. */
  commit(description: string, operations: Operation[]): number {
    const now = new Date().toISOString();
    return this.change(description, () => {
      for (const op of operations) {
        if (op.kind === 'api') {
          if (op.after === null) this.db.prepare('DELETE FROM apis WHERE id = ?').run(op.id);
          else this.db.prepare('INSERT INTO apis (id, document) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET document = excluded.document').run(op.id, JSON.stringify(op.after));
        } else if (op.kind === 'gateway') {
          if (op.after === null) {
            // Its instances' rows go with it; a gateway made again under the same id starts with none.
            for (const table of ['gateways', 'heartbeats', 'gateway_documents', 'token_refusals']) {
              this.db.prepare(`DELETE FROM ${table} WHERE ${table === 'gateways' ? 'id' : 'gateway'} = ?`).run(op.id);
            }
          } else {
            this.db.prepare('INSERT INTO gateways (id, apis) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET apis = excluded.apis').run(op.id, JSON.stringify(op.after));
          }
        } else if (op.kind === 'fragment') {
          if (op.after === null) this.db.prepare('DELETE FROM fragments WHERE name = ?').run(op.id);
          else {
            this.db
              .prepare('INSERT INTO fragments (name, entries, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET entries = excluded.entries, updated_at = excluded.updated_at')
              .run(op.id, JSON.stringify(op.after), now);
          }
        } else if (op.kind === 'named value') {
          if (op.after === null) this.db.prepare('DELETE FROM named_values WHERE name = ?').run(op.id);
          else {
            this.db
              .prepare(
                `INSERT INTO named_values (name, value, secret, updated_at, previous_value, previous_until) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value, secret = excluded.secret, updated_at = excluded.updated_at,
                   previous_value = excluded.previous_value, previous_until = excluded.previous_until`,
              )
              .run(op.id, op.after.value, op.after.secret ? 1 : 0, now, op.after.previous?.value ?? null, op.after.previous?.until ?? null);
          }
        } else {
          this.db.prepare('DELETE FROM modules WHERE sha256 = ?').run(op.id);
        }
      }
    });
  }

  /** Records, as of `revision`, each gateway whose document differs from the one last recorded for it. */
  private recordDocuments(revision: number): void {
    const last = this.db.prepare('SELECT digest FROM gateway_documents WHERE gateway = ? ORDER BY revision DESC LIMIT 1');
    const insert = this.db.prepare('INSERT OR REPLACE INTO gateway_documents (gateway, revision, digest) VALUES (?, ?, ?)');
    for (const { id } of this.gateways()) {
      const digest = documentDigest(this.gatewayDocument(id));
      if ((last.get(id) as { digest: string } | undefined)?.digest !== digest) insert.run(id, revision, digest);
    }
  }

  /**
   * How many revisions that changed the gateway's document came after `revision` (the one an instance runs): 0 when
   * the document it runs is the current one, even when later revisions changed other gateways' (or changed it and
   * back). Null before the instance's first revision.
   */
  revisionsBehind(gateway: string, revision: number | null): number | null {
    if (revision === null) return null;
    const rows = this.db.prepare('SELECT revision, digest FROM gateway_documents WHERE gateway = ? ORDER BY revision').all(gateway) as
      { revision: number; digest: string }[];
    if (rows.length === 0) return 0;
    const running = rows.filter((r) => r.revision <= revision).at(-1);
    if (running?.digest === rows.at(-1)!.digest) return 0;
    return rows.filter((r) => r.revision > revision).length;
  }

  /** Forgets the instances whose last heartbeat is older than `before` (ISO 8601); returns how many. */
  dropInstances(before: string): number {
    return this.db.prepare('DELETE FROM heartbeats WHERE at < ?').run(before).changes;
  }

  /** Remembers the last refusal of a token of `gateway` (its instances cannot say so: they are the ones refused). */
  noteTokenRefusal(gateway: string, reason: string, at: string): void {
    this.db
      .prepare('INSERT INTO token_refusals (gateway, reason, at) VALUES (?, ?, ?) ON CONFLICT(gateway) DO UPDATE SET reason = excluded.reason, at = excluded.at')
      .run(gateway, reason, at);
  }

  tokenRefusal(gateway: string): { reason: string; at: string } | null {
    return (this.db.prepare('SELECT reason, at FROM token_refusals WHERE gateway = ?').get(gateway) as { reason: string; at: string } | undefined) ?? null;
  }

  close(): void {
    this.db.close();
  }
}
