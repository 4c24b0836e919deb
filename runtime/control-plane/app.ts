// The control plane's HTTP API (Hono): an admin API behind an admin token, and the configuration endpoint gateways
// poll with their gateway tokens. Errors are RFC 9457 problems naming what is wrong.

import { createHash, timingSafeEqual } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { IncomingMessage } from 'node:http';
import { formatPath, type DocPath } from '../config/document-paths.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { ControlPlaneStore, GatewayRecord, GatewayTokenRecord, StoredFragment, StoredNamedValue } from './store.ts';
import { FRAGMENT_NAME, FRAGMENT_NAME_HINT } from '../config/fragments.ts';
import { NAMED_VALUE_NAME, NAMED_VALUE_NAME_HINT, namedValueReferences } from '../config/named-values.ts';
import {
  NO_SYNC_REPORT,
  REVISION_HEADER,
  SIGNATURE_HEADER,
  tokenOfAuthorization,
  type GatewayRoute,
  type HeartbeatReply,
  type MinuteAggregate,
  type SyncReport,
  type TelemetryReply,
} from '../gateway-api/endpoints.ts';
import { ModuleSigner, newSigningKey } from '../gateway-api/module-signatures.ts';
import { checkToken, issueToken, MAX_TOKEN_DAYS, newTokenId, readClaims, type TokenClaims } from '../gateway-api/tokens.ts';
import { sha256Hex } from '../policy-host/module.ts';
import { PolicyLoadError } from '../policy-host/errors.ts';
import { fragmentUsage, ID, usersOf, nextNamedValue, plan, type Operation, type PlanProblem, type StateNamedValue } from './plan.ts';
import type { DocumentValidator } from './validation.ts';

/** How precisely a token's `lastUsedAt` is kept. */
const TOKEN_USE_RESOLUTION_MS = 10_000;

export interface ControlPlaneOptions {
  store: ControlPlaneStore;
  adminToken: string;
  logger: Logger;
  /** Checks gateway documents as a gateway would, before any change is saved. */
  validator: DocumentValidator;
  /** An instance whose last heartbeat is older is shown `stale` (GATEHOUSE_CP_STALE_AFTER_MS, default 3 minutes). */
  staleAfterMs?: number;
  /** An instance whose last heartbeat is older is forgotten (GATEHOUSE_CP_DROP_AFTER_MS, default an hour). */
  dropAfterMs?: number;
  now?: () => number;
}

/** Three heartbeats missed at the gateways' default interval (a minute). */
export const DEFAULT_STALE_AFTER_MS = 180_000;
export const DEFAULT_DROP_AFTER_MS = 3_600_000;

function problem(c: Context, status: 400 | 401 | 404 | 409 | 500, detail: string, extra: Record<string, unknown> = {}) {
  const title = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 409: 'Conflict', 500: 'Internal Server Error' }[status];
  return c.body(JSON.stringify({ type: 'about:blank', title, status, detail, ...extra }), status, {
    'content-type': 'application/problem+json',
  });
}

function sameSecret(given: string, expected: string): boolean {
  // Compared as digests: equal lengths, and no early exit that would time how much of a guess was right.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The longest overlap of a named value's rotation: as long as a gateway token may live. */
const MAX_OVERLAP_SECONDS = 30 * 24 * 3600;
const OVERLAP_HINT = `how long the previous value stays accepted, an integer from 0 to ${MAX_OVERLAP_SECONDS} (30 days)`;
const validOverlap = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_OVERLAP_SECONDS;

export function controlPlaneApp(options: ControlPlaneOptions): Hono {
  const { store, logger, validator } = options;
  const now = options.now ?? Date.now;
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const dropAfterMs = Math.max(options.dropAfterMs ?? DEFAULT_DROP_AFTER_MS, staleAfterMs);
  const tokenKey = store.secret('gateway-token-key');
  const signer = new ModuleSigner(store.secret('module-signing-key', newSigningKey));
  const app = new Hono();

  app.get('/status', (c) => c.json({ status: 'ok', revision: store.revision() }));

  // Every answer is JSON, errors included: a client reads `detail` whatever went wrong.
  app.notFound((c) => problem(c, 404, `no such endpoint: ${c.req.method} ${c.req.path} (the endpoints: docs/control-plane.openapi.yaml)`));
  app.onError((err, c) => {
    logger.error('request failed', { method: c.req.method, path: c.req.path, error: err.message, stack: err.stack });
    return problem(c, 500, `the control plane failed to answer: ${err.message}`);
  });

  // --- admin -------------------------------------------------------------------------------------------------------
  app.use('/admin/*', async (c, next) => {
    const auth = c.req.header('authorization') ?? '';
    const given = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
    if (given === '' || !sameSecret(given, options.adminToken)) {
      // Logged: a wrong token is someone with the wrong file, or someone guessing.
      const reason = given === '' ? 'missing' : 'wrong';
      logger.warn('admin token refused', { reason, method: c.req.method, path: c.req.path, client: clientOf(c) });
      return problem(
        c,
        401,
        reason === 'missing'
          ? 'an admin token is required (Authorization: Bearer <token>)'
          : 'the admin token is wrong: it is not this control plane\'s (that is GATEHOUSE_ADMIN_TOKEN where the control plane runs, or the content of <data dir>/admin-token)',
        { reason },
      );
    }
    await next();
  });

  app.get('/admin/apis', (c) => c.json({ revision: store.revision(), apis: store.apis() }));

  app.get('/admin/apis/:id', (c) => {
    const api = store.api(c.req.param('id'));
    return api ? c.json(api) : problem(c, 404, `no API ${c.req.param('id')}`);
  });

  // Every change goes through a plan (plan.ts): checked whole on the state it leads to, written whole as one revision
  // (none when nothing changes). One at a time: a plan checked against a state another request has since changed
  // would not hold.
  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work, work);
    queue = next.catch(() => undefined);
    return next;
  };
  const liveInstances = (gateway: string) => {
    const since = new Date(now() - staleAfterMs).toISOString();
    return store.instances(gateway).filter((beat) => beat.at >= since).length;
  };

  /**
   * Plans `operations` and, unless `dryRun`, writes them. `label` prefixes each problem's `where` (the request of a
   * single-object endpoint is that object). Answers 400 with every problem, 409 with references it would break, or 200
   * with `answer(revision)` and the changes.
   */
  const change = (
    c: Context,
    operations: Operation[],
    options: { label?: string; force?: boolean; dryRun?: boolean; logAs: string; answer?: (revision: number) => Record<string, unknown> },
  ) =>
    serially(async () => {
      const planned = await plan(store.state(), operations, {
        force: options.force,
        liveInstances,
        check: (doc, sourceName) => validator.check(doc, sourceName),
      });
      const label = (p: PlanProblem) => ({ ...p, where: options.label ? `${options.label}: ${p.where}` : p.where });
      const blocking = planned.conflicts.filter((p) => !p.forceable || !options.force);
      if (planned.problems.length > 0) {
        // With what it would break too: one answer names everything to fix.
        return problem(c, 400, 'the change is not valid: a gateway would refuse it, or it names what does not exist (nothing was changed)', {
          problems: [...planned.problems, ...blocking.map(({ forceable: _, usedBy: __, ...p }) => p)].map(label),
        });
      }
      if (blocking.length > 0) {
        const forceable = blocking.every((p) => p.forceable);
        return problem(c, 409, `the change would break what uses it${forceable ? ' (force it with ?force=true, gatehouse --force)' : ''} (nothing was changed)`, {
          problems: blocking.map(({ forceable: _, usedBy: __, ...p }) => label(p)),
          forceable,
          // The APIs (or gateways) that use what it deletes.
          usedBy: [...new Set(blocking.flatMap((p) => p.usedBy))],
        });
      }
      const summary = { changes: planned.changes, unchanged: planned.unchanged, breaks: planned.breaks };
      if (options.dryRun || planned.changes.length === 0) {
        const revision = store.revision();
        return c.json({ revision, dryRun: options.dryRun === true, ...summary, ...options.answer?.(revision) });
      }
      const revision = store.commit(describe(planned.changes, operations), operations.filter((op) => planned.changes.some((ch) => ch.kind === op.kind && ch.id === op.id)));
      const ids = (kind: string) => planned.changes.filter((ch) => ch.kind === kind).map((ch) => `${ch.id} ${ch.action}d`);
      logger.info(options.logAs, {
        revision,
        apis: ids('api'),
        gateways: ids('gateway'),
        fragments: ids('fragment'),
        namedValues: ids('named value'),
        modules: ids('module'),
        unchanged: planned.unchanged.length,
        ...(planned.breaks.length > 0 ? { forced: planned.breaks } : {}),
      });
      return c.json({ revision, ...summary, ...options.answer?.(revision) });
    });
  const forced = (c: Context) => c.req.query('force') === 'true';

  app.put('/admin/apis/:id', async (c) => {
    const id = c.req.param('id');
    const body = await readJson(c);
    if (body === undefined) return problem(c, 400, 'the body must be a JSON object (the API)');
    if ((body as { id?: unknown }).id !== undefined && (body as { id?: unknown }).id !== id) {
      return problem(c, 400, `the API's id ${JSON.stringify((body as { id?: unknown }).id)} differs from the path's ${id}`);
    }
    // Stored with its id, as an entry of `apis` in a gateway's document.
    const api = { ...(body as Record<string, unknown>), id };
    return change(c, [{ kind: 'api', id, after: api, at: [] }], { label: `api ${id}`, logAs: 'api saved', answer: () => ({ api }) });
  });

  app.delete('/admin/apis/:id', (c) => {
    const id = c.req.param('id');
    if (!store.api(id)) return problem(c, 404, `no API ${id}`);
    return change(c, [{ kind: 'api', id, after: null, at: [] }], { label: `api ${id}`, force: forced(c), logAs: 'api deleted' });
  });

  // Fragments: named lists of policy entries that APIs (and other fragments) include; a gateway receives those its
  // APIs use. The body is {"entries": [...]}, the list a document holds under `fragments: {<name>: [...]}`.
  const fragmentView = (f: StoredFragment, usage = fragmentUsage(store.state())) => ({ name: f.name, entries: f.entries, updatedAt: f.updatedAt, ...usage.get(f.name) });

  app.get('/admin/fragments', (c) => {
    const usage = fragmentUsage(store.state());
    return c.json({ revision: store.revision(), fragments: store.fragments().map((f) => fragmentView(f, usage)) });
  });

  app.get('/admin/fragments/:name', (c) => {
    const found = store.fragment(c.req.param('name'));
    return found ? c.json(fragmentView(found)) : problem(c, 404, `no fragment ${c.req.param('name')}`);
  });

  app.put('/admin/fragments/:name', async (c) => {
    const name = c.req.param('name');
    if (!FRAGMENT_NAME.test(name)) return problem(c, 400, `${FRAGMENT_NAME_HINT} (got ${JSON.stringify(name.slice(0, 140))})`);
    const body = (await readJson(c)) as { entries?: unknown } | undefined;
    const extra = Object.keys(body ?? {}).filter((k) => k !== 'entries');
    if (!Array.isArray(body?.entries) || extra.length > 0) {
      return problem(c, 400, `the body must be {"entries": [<policy entry>, ...]}${extra.length > 0 ? ` (unknown: ${extra.join(', ')})` : ''}`);
    }
    return change(c, [{ kind: 'fragment', id: name, after: body.entries, at: ['entries'] }], {
      label: `fragment ${name}`,
      logAs: 'fragment saved',
      answer: () => fragmentView(store.fragment(name)!),
    });
  });

  app.delete('/admin/fragments/:name', (c) => {
    const found = store.fragment(c.req.param('name'));
    if (!found) return problem(c, 404, `no fragment ${c.req.param('name')}`);
    return change(c, [{ kind: 'fragment', id: found.name, after: null, at: [] }], { label: `fragment ${found.name}`, logAs: 'fragment deleted' });
  });

  // Named values: written, never read back when secret (a secret's value leaves only in a gateway's configuration).
  const namedValueView = (v: StoredNamedValue, state = store.state()) => ({
    name: v.name,
    secret: v.secret,
    ...(v.secret ? {} : { value: v.value }),
    updatedAt: v.updatedAt,
    // When the replaced value stops being accepted (a rotation's overlap); absent when there is none.
    ...(v.previous && Date.parse(v.previous.until) > Date.now() ? { previousAcceptedUntil: v.previous.until } : {}),
    usedBy: usersOf(state, (doc) => namedValueReferences(doc).some((r) => r.name === v.name)).usedByApis,
  });

  app.get('/admin/named-values', (c) => {
    const state = store.state();
    return c.json({ revision: store.revision(), namedValues: store.namedValues().map((v) => namedValueView(v, state)) });
  });

  app.get('/admin/named-values/:name', (c) => {
    const found = store.namedValue(c.req.param('name'));
    return found ? c.json(namedValueView(found)) : problem(c, 404, `no named value ${c.req.param('name')}`);
  });

  app.put('/admin/named-values/:name', async (c) => {
    const name = c.req.param('name');
    if (!NAMED_VALUE_NAME.test(name)) return problem(c, 400, NAMED_VALUE_NAME_HINT);
    const body = (await readJson(c)) as { value?: unknown; secret?: unknown; overlapSeconds?: unknown } | undefined;
    const extra = Object.keys(body ?? {}).filter((k) => k !== 'value' && k !== 'secret' && k !== 'overlapSeconds');
    if (typeof body?.value !== 'string' || (body.secret !== undefined && typeof body.secret !== 'boolean') || extra.length > 0) {
      return problem(c, 400, 'the body must be {"value": "<string>", "secret": true|false, "overlapSeconds": <seconds>}');
    }
    if (body.overlapSeconds !== undefined && !validOverlap(body.overlapSeconds)) return problem(c, 400, `overlapSeconds: ${OVERLAP_HINT}`);
    // A secret stays secret unless told otherwise: rotating a key with {"value": ...} alone must not expose it.
    const secret = body.secret ?? store.namedValue(name)?.secret ?? false;
    const after = nextNamedValue(store.namedValue(name), body.value, secret, body.overlapSeconds as number | undefined);
    return change(c, [{ kind: 'named value', id: name, after, at: [] }], {
      label: `named value ${name}`,
      logAs: 'named value saved',
      answer: () => namedValueView(store.namedValue(name)!),
    });
  });

  app.delete('/admin/named-values/:name', (c) => {
    const found = store.namedValue(c.req.param('name'));
    if (!found) return problem(c, 404, `no named value ${c.req.param('name')}`);
    return change(c, [{ kind: 'named value', id: found.name, after: null, at: [] }], { label: `named value ${found.name}`, logAs: 'named value deleted' });
  });

  // Each gateway with its instances' last heartbeats: applied revision, lag in revisions that changed its document,
  // health (`stale` once it stopped sending them), the APIs it lists that do not exist, and its last refused token.
  app.get('/admin/gateways', (c) => {
    const nowMs = now();
    // An instance silent for dropAfterMs is gone (a restarted pod is a new instance): its row would only mislead.
    store.dropInstances(new Date(nowMs - dropAfterMs).toISOString());
    const apis = new Set((store.apis() as { id: string }[]).map((a) => a.id));
    return c.json({
      revision: store.revision(),
      staleAfterSeconds: Math.round(staleAfterMs / 1000),
      dropAfterSeconds: Math.round(dropAfterMs / 1000),
      gateways: store.gateways().map((g) => ({
        id: g.id,
        apis: g.apis,
        missingApis: g.apis.filter((a) => !apis.has(a)),
        lastTokenRefusal: store.tokenRefusal(g.id),
        instances: store.instances(g.id).map((beat) => {
          const stale = nowMs - Date.parse(beat.at) > staleAfterMs;
          return {
            ...beat,
            health: stale ? 'stale' : beat.health,
            reportedHealth: beat.health,
            stale,
            revisionsBehind: store.revisionsBehind(g.id, beat.revision),
            secondsSinceHeartbeat: Math.round((nowMs - Date.parse(beat.at)) / 1000),
          };
        }),
      })),
    });
  });

  app.put('/admin/gateways/:id', async (c) => {
    const id = c.req.param('id');
    if (!ID.test(id)) return problem(c, 400, 'a gateway id is lowercase letters, digits and dashes (at most 63)');
    const body = (await readJson(c)) as { apis?: unknown } | undefined;
    const apis = body?.apis;
    if (!Array.isArray(apis) || !apis.every((a) => typeof a === 'string' && ID.test(a))) {
      return problem(c, 400, 'the body must be {"apis": ["api-id", ...]}');
    }
    return change(c, [{ kind: 'gateway', id, after: apis as string[], at: [] }], {
      label: `gateway ${id}`,
      logAs: 'gateway saved',
      answer: () => ({ id, apis }),
    });
  });

  app.delete('/admin/gateways/:id', (c) => {
    const id = c.req.param('id');
    if (!store.gateway(id)) return problem(c, 404, `no gateway ${id}`);
    return change(c, [{ kind: 'gateway', id, after: null, at: [] }], { label: `gateway ${id}`, force: forced(c), logAs: 'gateway deleted' });
  });

  // A whole declaration at once (`gatehouse apply`): checked whole, written whole as one revision, or not at all.
  app.post('/admin/apply', async (c) => {
    const body = await readJson(c);
    if (body === undefined) return problem(c, 400, 'the body must be a JSON object: {"namedValues", "fragments", "apis", "gateways", "prune", "dryRun", "force"}');
    const parsed = applyOperations(body as Record<string, unknown>, store);
    if ('problems' in parsed) return problem(c, 400, 'the request is not a declaration (nothing was changed)', { problems: parsed.problems });
    return change(c, parsed.operations, {
      force: parsed.force,
      dryRun: parsed.dryRun,
      logAs: 'configuration applied',
      answer: () => ({ apis: parsed.operations.filter((op) => op.kind === 'api' && op.after !== null).map((op) => op.id) }),
    });
  });

  // Gateway tokens: several valid at once, each revocable on its own (by id), or all of a gateway's at once.
  app.post('/admin/gateways/:id/tokens', async (c) => {
    const gateway = store.gateway(c.req.param('id'));
    if (!gateway) return problem(c, 404, `no gateway ${c.req.param('id')}`);
    const body = ((await readJson(c)) ?? {}) as { expiresInDays?: unknown };
    const days = body.expiresInDays ?? MAX_TOKEN_DAYS;
    if (typeof days !== 'number' || !Number.isInteger(days) || days < 1 || days > MAX_TOKEN_DAYS) {
      return problem(c, 400, `expiresInDays must be a whole number of days from 1 to ${MAX_TOKEN_DAYS}`);
    }
    const issued = now();
    const expires = Math.floor(issued / 1000) + days * 86_400;
    const id = newTokenId();
    const token = issueToken(tokenKey, { gateway: gateway.id, generation: gateway.tokenGeneration, expires, id });
    const record = { id, gateway: gateway.id, generation: gateway.tokenGeneration, issuedAt: new Date(issued).toISOString(), expiresAt: new Date(expires * 1000).toISOString() };
    store.addGatewayToken(record, new Date(issued - MAX_TOKEN_DAYS * 86_400_000).toISOString());
    logger.info('gateway token issued', { gateway: gateway.id, tokenId: id, expiresAt: record.expiresAt });
    return c.json({ id, token, issuedAt: record.issuedAt, expiresAt: record.expiresAt });
  });

  const tokenView = (t: GatewayTokenRecord, nowMs: number) => ({
    id: t.id,
    state: t.revokedAt !== null ? 'revoked' : Date.parse(t.expiresAt) <= nowMs ? 'expired' : 'valid',
    issuedAt: t.issuedAt,
    expiresAt: t.expiresAt,
    revokedAt: t.revokedAt,
    lastUsedAt: t.lastUsedAt,
  });

  app.get('/admin/gateways/:id/tokens', (c) => {
    const gateway = store.gateway(c.req.param('id'));
    if (!gateway) return problem(c, 404, `no gateway ${c.req.param('id')}`);
    const nowMs = now();
    // A token of the earlier format has no row to list: when one was last used, if since the last revoke-tokens.
    const earlier = store.earlierFormatTokenUse(gateway.id);
    return c.json({
      gateway: gateway.id,
      tokens: store.gatewayTokens(gateway.id).map((t) => tokenView(t, nowMs)),
      earlierFormatLastUsedAt: earlier?.lastUsedAt ?? null,
      earlierFormatExpiresAt: earlier?.expiresAt ?? null,
    });
  });

  app.post('/admin/gateways/:id/tokens/:tokenId/revoke', (c) => {
    const gateway = store.gateway(c.req.param('id'));
    if (!gateway) return problem(c, 404, `no gateway ${c.req.param('id')}`);
    const tokenId = c.req.param('tokenId');
    const nowMs = now();
    const revoked = store.revokeGatewayToken(gateway.id, tokenId, new Date(nowMs).toISOString());
    if (!revoked) return problem(c, 404, `gateway ${gateway.id} has no token ${tokenId} (gatehouse token list ${gateway.id} shows its tokens)`);
    const stillValid = store.gatewayTokens(gateway.id).filter((t) => tokenView(t, nowMs).state === 'valid').length;
    logger.warn('gateway token revoked', { gateway: gateway.id, tokenId, lastUsedAt: revoked.lastUsedAt, validTokensLeft: stillValid });
    return c.json({ ...tokenView(revoked, nowMs), validTokensLeft: stillValid });
  });

  app.post('/admin/gateways/:id/revoke-tokens', (c) => {
    if (!store.gateway(c.req.param('id'))) return problem(c, 404, `no gateway ${c.req.param('id')}`);
    const revision = store.revokeTokens(c.req.param('id'));
    logger.warn('gateway tokens revoked', { gateway: c.req.param('id'), revision });
    return c.json({ revision });
  });

  app.get('/admin/revisions', (c) => c.json({ revisions: store.revisions(100) }));
  app.get('/admin/telemetry', (c) => c.json({ aggregates: store.telemetry(c.req.query('gateway') ?? null, 1000) }));

  // Modules: uploaded as compiled .wasm, checked as a gateway would load them, stored by sha256 and signed.
  app.get('/admin/signing-key', (c) => c.text(signer.publicKeyPem));
  app.get('/admin/modules', (c) => c.json({ modules: store.modules() }));
  app.post('/admin/modules', async (c) => {
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    let descriptor: { name: string; version: string };
    try {
      descriptor = (await validator.loadModule(bytes)).descriptor;
    } catch (err) {
      const problems = err instanceof PolicyLoadError ? err.problems : [(err as Error).message];
      return problem(c, 400, 'the body is not a policy module Gatehouse can load', { problems });
    }
    const sha256 = sha256Hex(bytes);
    const stored = store.putModule({ sha256, bytes, signature: signer.sign(sha256), name: descriptor.name, version: descriptor.version });
    if (stored) logger.info('module uploaded', { module: descriptor.name, version: descriptor.version, sha256 });
    return c.json({ module: `sha256:${sha256}`, name: descriptor.name, version: descriptor.version, stored: stored ? 'new' : 'already' });
  });
  app.delete('/admin/modules/:sha256', (c) => {
    const sha = c.req.param('sha256').replace(/^sha256:/, '');
    if (!store.module(sha)) return problem(c, 404, `no module sha256:${sha}`);
    return change(c, [{ kind: 'module', id: sha, after: null, at: [] }], { label: `module sha256:${sha}`, logAs: 'module deleted' });
  });

  // --- gateways ----------------------------------------------------------------------------------------------------
  // When each token was last used, written at most every TOKEN_USE_RESOLUTION_MS per token: a gateway polls every few
  // seconds, and a write per poll would only make "last used" more precise than deciding to revoke it needs.
  // Keyed by token id, or by `gw1 <gateway>` for the earlier format (a space is in neither an id nor a gateway's name).
  const tokenUseWritten = new Map<string, number>();
  const noteTokenUse = (claims: TokenClaims) => {
    const nowMs = now();
    const key = claims.id ?? `gw1 ${claims.gateway}`;
    if (nowMs - (tokenUseWritten.get(key) ?? -Infinity) < TOKEN_USE_RESOLUTION_MS) return;
    tokenUseWritten.set(key, nowMs);
    const at = new Date(nowMs).toISOString();
    if (claims.id !== null) store.gatewayTokenUsed(claims.id, at);
    else store.earlierFormatTokenUsed(claims.gateway, at, new Date(claims.expires * 1000).toISOString());
  };
  // Gateways seen using a token of the earlier format, to log it once each (a poll every few seconds would flood it).
  const earlierFormatLogged = new Set<string>();
  const noteEarlierFormat = (claims: TokenClaims, client: string | null) => {
    if (earlierFormatLogged.has(claims.gateway)) return;
    earlierFormatLogged.add(claims.gateway);
    logger.warn('gateway uses a token of the earlier format (gw1., without an id)', {
      gateway: claims.gateway,
      expiresAt: new Date(claims.expires * 1000).toISOString(),
      client,
      action:
        `issue it a new token (gatehouse token issue ${claims.gateway}) and roll it out, then revoke the old ones with --all ` +
        `(gatehouse token revoke ${claims.gateway} --all, which revokes every token issued so far: issue and roll out one more after it), ` +
        'or let the old one expire by itself',
    });
  };
  // A refused token is remembered for its gateway, when the token is this control plane's (a forged or malformed one
  // names nobody): the instances holding it cannot say so in a heartbeat, and `gatehouse get` shows it instead.
  app.use('/gateway/*', async (c, next) => {
    await next();
    if (c.res.status !== 401) return;
    const reason = String(((await c.res.clone().json().catch(() => ({}))) as { reason?: unknown }).reason ?? '');
    const auth = c.req.header('authorization') ?? '';
    const claimed = readClaims(tokenOfAuthorization(auth));
    if (reason === '' || reason === 'malformed' || reason === 'forged' || !claimed || !store.gateway(claimed.gateway)) return;
    store.noteTokenRefusal(claimed.gateway, reason, new Date(now()).toISOString());
  });

  // Gateway endpoints: the token names the gateway; it must be signed by this control plane, unexpired, unrevoked.
  const gatewayOf = (c: Context) => {
    const auth = c.req.header('authorization') ?? '';
    const token = tokenOfAuthorization(auth);
    const check = checkToken(tokenKey, token, Math.floor(now() / 1000));
    const client = c.req.header('x-forwarded-for') ?? null;
    if (!check.ok && check.reason === 'lifetime-exceeded') {
      // Signed with the token key, yet no admin API call issues such a token: an error for whoever holds the key.
      const { gateway, generation, expires, id } = check.claims;
      const expiresAt = new Date(expires * 1000).toISOString();
      logger.error('gateway token refused', {
        reason: check.reason,
        gateway,
        generation,
        tokenId: id,
        expiresAt,
        maxDays: MAX_TOKEN_DAYS,
        client,
        action:
          `issue the gateway a new token (POST /admin/gateways/${gateway}/tokens); unless a control plane's clock was far ahead ` +
          'when this one was made, it was made with the token key outside this control plane: treat the key as leaked',
      });
      return {
        refused: problem(
          c,
          401,
          `gateway token expires ${expiresAt}, more than ${MAX_TOKEN_DAYS} days from now: no token is issued for that long, so it is ` +
            `refused whatever its signature; ask the control plane's operator for a new one (POST /admin/gateways/${gateway}/tokens)`,
          { reason: check.reason },
        ),
      };
    }
    if (!check.ok) {
      logger.warn('gateway token refused', { reason: check.reason, client });
      return { refused: problem(c, 401, `gateway token ${check.reason === 'malformed' ? 'missing or malformed' : check.reason}`, { reason: check.reason }) };
    }
    const { claims } = check;
    const gateway = store.gateway(claims.gateway);
    const why = claims.id === null ? earlierFormatRefusal(claims, gateway) : tokenRefusal(claims.id, claims, gateway);
    if (why !== null || !gateway) {
      logger.warn('gateway token refused', { reason: 'revoked', gateway: claims.gateway, tokenId: claims.id, client, ...(claims.id === null ? { format: 'gw1' } : {}) });
      return { refused: problem(c, 401, why ?? 'gateway token revoked', { reason: 'revoked' }) };
    }
    if (claims.id === null) noteEarlierFormat(claims, client);
    noteTokenUse(claims);
    return { gateway, claims };
  };
  // Signed, unexpired: valid while its row says so. No row (its gateway was deleted, or the token key was used
  // outside this control plane) counts as revoked.
  const tokenRefusal = (id: string, claims: TokenClaims, gateway: GatewayRecord | null) => {
    const record = store.gatewayToken(id);
    if (!gateway || !record || record.gateway !== claims.gateway) {
      return `gateway token ${id} is not one this control plane holds for gateway ${claims.gateway} (the gateway was deleted, or the token was not issued here)`;
    }
    if (record.revokedAt !== null || gateway.tokenGeneration !== claims.generation) return `gateway token ${id} revoked${record.revokedAt ? ` at ${record.revokedAt}` : ''}`;
    return null;
  };
  // Signed, unexpired, of the earlier format: it has no row, so its generation alone says whether it was revoked.
  const earlierFormatRefusal = (claims: TokenClaims, gateway: GatewayRecord | null) => {
    if (!gateway) return `gateway token of the earlier format (gw1.) for gateway ${claims.gateway}, which does not exist`;
    if (gateway.tokenGeneration !== claims.generation) {
      return `gateway token of the earlier format (gw1.) revoked, with every token of gateway ${gateway.id} issued before it: issue the gateway a new one (gatehouse token issue ${gateway.id})`;
    }
    return null;
  };

  // The routes are written out (docs/control-plane.openapi.yaml is checked against them) and held to the protocol's.
  app.get('/gateway/v1/config' satisfies GatewayRoute, (c) => {
    const { gateway, refused } = gatewayOf(c);
    if (!gateway) return refused;
    const served = store.servedDocument(gateway.id)!;
    const headers = { etag: served.etag, [REVISION_HEADER]: String(served.revision) };
    if (c.req.header('if-none-match') === served.etag) return c.body(null, 304, headers);
    return c.body(served.text, 200, { ...headers, 'content-type': 'application/json' });
  });

  app.get('/gateway/v1/modules/:sha256' satisfies GatewayRoute, (c) => {
    const { gateway, refused } = gatewayOf(c);
    if (!gateway) return refused;
    const module = store.module(c.req.param('sha256'));
    if (!module) return problem(c, 404, `no module sha256:${c.req.param('sha256')}`);
    return c.body(module.bytes as Uint8Array<ArrayBuffer>, 200, { 'content-type': 'application/wasm', [SIGNATURE_HEADER]: module.signature });
  });

  app.post('/gateway/v1/telemetry' satisfies GatewayRoute, async (c) => {
    const { gateway, refused } = gatewayOf(c);
    if (!gateway) return refused;
    const body = (await readJson(c)) as { instance?: unknown; aggregates?: unknown; dropped?: unknown } | undefined;
    const rows = body?.aggregates;
    const valid =
      typeof body?.instance === 'string' &&
      Array.isArray(rows) &&
      rows.length <= 1000 &&
      rows.every(
        (r) =>
          typeof r?.api === 'string' && typeof r?.minute === 'string' && !Number.isNaN(Date.parse(r.minute)) &&
          ['requests', 'errors', 'p50Ms', 'p95Ms', 'p99Ms'].every((k) => typeof r[k] === 'number' && r[k] >= 0),
      );
    if (!valid) return problem(c, 400, 'telemetry is {"instance", "aggregates": [{"api", "minute", "requests", "errors", "p50Ms", "p95Ms", "p99Ms"}], "dropped"} (at most 1000)');
    store.addTelemetry(gateway.id, body!.instance as string, rows as MinuteAggregate[]);
    if (typeof body!.dropped === 'number' && body!.dropped > 0) {
      logger.warn('gateway dropped telemetry while disconnected', { gateway: gateway.id, instance: body!.instance, dropped: body!.dropped });
    }
    return c.json({ accepted: (rows as unknown[]).length } satisfies TelemetryReply);
  });

  app.post('/gateway/v1/heartbeat' satisfies GatewayRoute, async (c) => {
    const { gateway, claims, refused } = gatewayOf(c);
    if (!gateway) return refused;
    const body = (await readJson(c)) as Record<string, unknown> | undefined;
    const text = (v: unknown, max = 200) => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : null);
    const instance = text(body?.instance, 64);
    const uptime = body?.uptimeSeconds;
    const revision = body?.revision;
    if (!instance || typeof uptime !== 'number' || (revision !== null && typeof revision !== 'number')) {
      return problem(c, 400, 'a heartbeat is {"instance", "host", "version", "revision" (number or null), "uptimeSeconds", "health"}');
    }
    const sync = syncReportOf(body!);
    if (typeof sync === 'string') return problem(c, 400, `heartbeat: ${sync}`);
    store.heartbeat({
      ...sync,
      gateway: gateway.id,
      instance,
      host: text(body!.host) ?? '',
      version: text(body!.version, 64) ?? '',
      revision: revision as number | null,
      uptimeSeconds: Math.max(0, Math.floor(uptime)),
      health: text(body!.health, 64) ?? 'unknown',
      at: new Date(now()).toISOString(),
      tokenExpiresAt: new Date(claims.expires * 1000).toISOString(),
    });
    return c.json({ revision: store.revision() } satisfies HeartbeatReply);
  });

  return app;
}

/**
 * The sync report of a heartbeat's body (each field optional: gateways of earlier versions send none), or what is wrong
 * with it. A reason longer than 200 characters is cut, not refused: the heartbeat matters more than its last words.
 */
function syncReportOf(body: Record<string, unknown>): SyncReport | string {
  const report: SyncReport = { ...NO_SYNC_REPORT };
  const time = (v: unknown) => typeof v === 'string' && !Number.isNaN(Date.parse(v));
  const fields: { [K in keyof SyncReport]: [(v: unknown) => boolean, string] } = {
    configSource: [(v) => v === 'control-plane' || v === 'backup' || v === null, '"control-plane", "backup" or null'],
    rejectedRevision: [(v) => v === null || (Number.isInteger(v) && (v as number) >= 0), 'a revision number or null'],
    rejectedReason: [(v) => v === null || typeof v === 'string', 'a string or null'],
    rejectedAt: [(v) => v === null || time(v), 'an ISO 8601 time or null'],
    tokenState: [(v) => v === 'unknown' || v === 'accepted' || v === 'refused', '"unknown", "accepted" or "refused"'],
    lastSyncAt: [(v) => v === null || time(v), 'an ISO 8601 time or null'],
    syncFailures: [(v) => Number.isInteger(v) && (v as number) >= 0, 'a whole number'],
  };
  for (const [key, [valid, expected]] of Object.entries(fields) as [keyof SyncReport, [(v: unknown) => boolean, string]][]) {
    const value = body[key];
    if (value === undefined) continue;
    if (!valid(value)) return `${key} must be ${expected} (got ${JSON.stringify(value)?.slice(0, 40)})`;
    (report as unknown as Record<string, unknown>)[key] = key === 'rejectedReason' && typeof value === 'string' ? value.slice(0, 200) : value;
  }
  return report;
}

async function readJson(c: Context): Promise<unknown | undefined> {
  try {
    const body = await c.req.json();
    return body !== null && typeof body === 'object' && !Array.isArray(body) ? body : undefined;
  } catch {
    return undefined;
  }
}

function clientOf(c: Context): string | null {
  return c.req.header('x-forwarded-for') ?? (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket.remoteAddress ?? null;
}

const APPLY_KEYS = ['namedValues', 'fragments', 'apis', 'gateways', 'prune', 'dryRun', 'force'];

/**
 * The operations of a bulk apply's body (`{"namedValues": {name: {"value", "secret"}}, "fragments": {name: [entry,
 * ...]}, "apis": [{"id", ...}], "gateways": [{"id", "apis"}], "prune", "dryRun", "force"}`), each at its place in the
 * body; with `prune`, a deletion of each API, gateway, fragment and named value the body does not declare.
 */
function applyOperations(
  body: Record<string, unknown>,
  store: ControlPlaneStore,
): { operations: Operation[]; force: boolean; dryRun: boolean } | { problems: PlanProblem[] } {
  const problems: PlanProblem[] = [];
  const at = (path: DocPath, message: string) => problems.push({ path, where: formatPath(path), message });
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  for (const key of Object.keys(body)) if (!APPLY_KEYS.includes(key)) at([key], `unknown key (allowed: ${APPLY_KEYS.join(', ')})`);
  for (const flag of ['prune', 'dryRun', 'force']) {
    if (body[flag] !== undefined && typeof body[flag] !== 'boolean') at([flag], 'must be true or false');
  }
  const operations: Operation[] = [];
  const { namedValues, fragments, apis, gateways } = body;
  if (namedValues !== undefined && !isObject(namedValues)) at(['namedValues'], 'must be a map of names to {"value", "secret"}');
  for (const [name, declared] of Object.entries(isObject(namedValues) ? namedValues : {})) {
    const where: DocPath = ['namedValues', name];
    if (!isObject(declared)) {
      at(where, 'must be a map with "value" (and "secret")');
      continue;
    }
    for (const key of Object.keys(declared)) {
      if (key !== 'value' && key !== 'secret' && key !== 'overlapSeconds') at([...where, key], 'unknown key (allowed: value, secret, overlapSeconds)');
    }
    if (typeof declared.value !== 'string') at([...where, 'value'], 'must be a string');
    if (declared.secret !== undefined && typeof declared.secret !== 'boolean') at([...where, 'secret'], 'must be true or false');
    const overlap = declared.overlapSeconds;
    if (overlap !== undefined && !validOverlap(overlap)) at([...where, 'overlapSeconds'], OVERLAP_HINT);
    if (typeof declared.value !== 'string') continue;
    // As with PUT: a secret stays secret unless the declaration says otherwise.
    const stored = store.namedValue(name);
    const secret = typeof declared.secret === 'boolean' ? declared.secret : (stored?.secret ?? false);
    const after = nextNamedValue(stored, declared.value, secret, validOverlap(overlap) ? overlap : undefined);
    operations.push({ kind: 'named value', id: name, after, at: where });
  }
  if (fragments !== undefined && !isObject(fragments)) at(['fragments'], 'must be a map of names to lists of policy entries');
  for (const [name, entries] of Object.entries(isObject(fragments) ? fragments : {})) {
    if (!Array.isArray(entries)) at(['fragments', name], 'must be a list of policy entries');
    else operations.push({ kind: 'fragment', id: name, after: entries, at: ['fragments', name] });
  }
  if (apis !== undefined && !Array.isArray(apis)) at(['apis'], 'must be a list of APIs');
  (Array.isArray(apis) ? apis : []).forEach((api: unknown, i) => {
    if (!isObject(api)) return at(['apis', i], 'must be a map (an API, with its id)');
    if (typeof api.id !== 'string') return at(['apis', i, 'id'], api.id === undefined ? 'is required' : 'must be a string');
    operations.push({ kind: 'api', id: api.id, after: api, at: ['apis', i] });
  });
  if (gateways !== undefined && !Array.isArray(gateways)) at(['gateways'], 'must be a list of gateways');
  (Array.isArray(gateways) ? gateways : []).forEach((gateway: unknown, i) => {
    if (!isObject(gateway)) return at(['gateways', i], 'must be a map with "id" and "apis"');
    for (const key of Object.keys(gateway)) if (key !== 'id' && key !== 'apis') at(['gateways', i, key], 'unknown key (allowed: id, apis)');
    if (typeof gateway.id !== 'string') at(['gateways', i, 'id'], gateway.id === undefined ? 'is required' : 'must be a string');
    if (!Array.isArray(gateway.apis)) return at(['gateways', i, 'apis'], gateway.apis === undefined ? 'is required (a list of API ids; [] for none)' : 'must be a list of API ids');
    (gateway.apis as unknown[]).forEach((a, j) => {
      if (typeof a !== 'string') at(['gateways', i, 'apis', j], 'must be an API id (a string)');
    });
    if (typeof gateway.id === 'string' && (gateway.apis as unknown[]).every((a) => typeof a === 'string')) {
      operations.push({ kind: 'gateway', id: gateway.id, after: gateway.apis as string[], at: ['gateways', i] });
    }
  });
  if (problems.length > 0) return { problems };
  // Pruned: of each kind the body declares (its key is there, a list or map, maybe empty), what it does not declare.
  // A kind left out is left alone: a file of APIs alone does not delete every gateway.
  if (body.prune === true) {
    const declared = (kind: Operation['kind'], id: string) => operations.some((op) => op.kind === kind && op.id === id);
    const prune = (kind: Operation['kind'], ids: string[]) => {
      for (const id of ids) if (!declared(kind, id)) operations.push({ kind, id, after: null, at: null } as Operation);
    };
    if (gateways !== undefined) prune('gateway', store.gateways().map((g) => g.id));
    if (apis !== undefined) prune('api', (store.apis() as { id: string }[]).map((a) => a.id));
    if (fragments !== undefined) prune('fragment', store.fragments().map((f) => f.name));
    if (namedValues !== undefined) prune('named value', store.namedValues().map((v) => v.name));
  }
  return { operations, force: body.force === true, dryRun: body.dryRun === true };
}

/**
 * A revision's description: each change, e.g. `api orders updated; gateway edge created`. It says which named value
 * changed and whether it is secret, never what it is.
 */
function describe(changes: { kind: string; id: string; action: string }[], operations: Operation[]): string {
  const namedValue = (id: string) => {
    const after = operations.find((op) => op.kind === 'named value' && op.id === id)?.after as StateNamedValue | null | undefined;
    if (!after) return '';
    return `${after.secret ? ' (secret)' : ''}${after.previous && Date.parse(after.previous.until) > Date.now() ? `, the previous value accepted until ${after.previous.until}` : ''}`;
  };
  const shown = changes
    .slice(0, 20)
    .map((c) => `${c.kind} ${c.kind === 'module' ? `sha256:${c.id.slice(0, 12)}` : c.id} ${c.action}d${c.kind === 'named value' ? namedValue(c.id) : ''}`);
  return changes.length > 20 ? `${shown.join('; ')}; and ${changes.length - 20} more` : shown.join('; ');
}
