// The control plane's HTTP API (Hono): an admin API behind an admin token, and the configuration endpoint gateways
// poll with their gateway tokens. Errors are RFC 9457 problems naming what is wrong.

import { createHash, timingSafeEqual } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { ConfigError, parseGatewayDocument } from '../config/load.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { ControlPlaneStore, GatewayRecord, GatewayTokenRecord, StoredNamedValue, TelemetryRow } from './store.ts';
import { MAX_NAMED_VALUE_LENGTH, NAMED_VALUE_NAME, NAMED_VALUE_NAME_HINT, namedValueReferences } from '../config/named-values.ts';
import { checkToken, issueToken, MAX_TOKEN_DAYS, newTokenId, type TokenClaims } from './tokens.ts';
import { ModuleSigner, newSigningKey } from './signing.ts';
import { loadPolicyModule, sha256Hex } from '../policy-host/module.ts';
import { PolicyLoadError } from '../policy-host/errors.ts';
import { pathReferences, referencedModules } from '../sync/module-refs.ts';

const ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** How precisely a token's `lastUsedAt` is kept. */
const TOKEN_USE_RESOLUTION_MS = 10_000;

export interface ControlPlaneOptions {
  store: ControlPlaneStore;
  adminToken: string;
  logger: Logger;
  now?: () => number;
}

function problem(c: Context, status: 400 | 401 | 404 | 409, detail: string, extra: Record<string, unknown> = {}) {
  const title = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 409: 'Conflict' }[status];
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

export function controlPlaneApp(options: ControlPlaneOptions): Hono {
  const { store, logger } = options;
  const now = options.now ?? Date.now;
  const tokenKey = store.secret('gateway-token-key');
  const signer = new ModuleSigner(store.secret('module-signing-key', newSigningKey));
  const app = new Hono();

  app.get('/status', (c) => c.json({ status: 'ok', revision: store.revision() }));

  // --- admin -------------------------------------------------------------------------------------------------------
  app.use('/admin/*', async (c, next) => {
    const auth = c.req.header('authorization') ?? '';
    if (!auth.startsWith('Bearer ') || !sameSecret(auth.slice(7), options.adminToken)) {
      return problem(c, 401, 'an admin token is required (Authorization: Bearer <token>)');
    }
    await next();
  });

  app.get('/admin/apis', (c) => c.json({ revision: store.revision(), apis: store.apis() }));

  app.get('/admin/apis/:id', (c) => {
    const api = store.api(c.req.param('id'));
    return api ? c.json(api) : problem(c, 404, `no API ${c.req.param('id')}`);
  });

  app.put('/admin/apis/:id', async (c) => {
    const id = c.req.param('id');
    const body = await readJson(c);
    if (body === undefined) return problem(c, 400, 'the body must be a JSON object (the API)');
    const api = { ...(body as Record<string, unknown>), id };
    if ((body as { id?: unknown }).id !== undefined && (body as { id?: unknown }).id !== id) {
      return problem(c, 400, `the API's id ${JSON.stringify((body as { id?: unknown }).id)} differs from the path's ${id}`);
    }
    // Checked as a gateway would check it: the same schema, every problem named with its place.
    try {
      // With the named values it refers to: a reference to one that does not exist is a problem at its place.
      const namedValues = store.namedValuesFor({ apis: [api] });
      parseGatewayDocument(JSON.stringify({ version: 1, apis: [api], namedValues }), `api ${id}`);
    } catch (err) {
      if (err instanceof ConfigError) return problem(c, 400, 'the API is not valid', { problems: err.problems });
      throw err;
    }
    const paths = pathReferences({ apis: [api] });
    if (paths.length > 0) {
      return problem(c, 400, `policies from the control plane are built-ins or uploaded modules (module: "sha256:<hex>"), not paths: ${paths.join(', ')}`);
    }
    const missing = referencedModules({ apis: [api] }).filter((sha) => !store.module(sha));
    if (missing.length > 0) return problem(c, 400, `no uploaded module ${missing.map((s) => `sha256:${s}`).join(', ')}`);
    const revision = store.putApi(id, api);
    logger.info('api saved', { api: id, revision });
    return c.json({ revision, api });
  });

  app.delete('/admin/apis/:id', (c) => {
    const revision = store.deleteApi(c.req.param('id'));
    if (revision === null) return problem(c, 404, `no API ${c.req.param('id')}`);
    logger.info('api deleted', { api: c.req.param('id'), revision });
    return c.json({ revision });
  });

  // Named values: written, never read back when secret (a secret's value leaves only in a gateway's configuration).
  const namedValueView = (v: StoredNamedValue) => ({
    name: v.name,
    secret: v.secret,
    ...(v.secret ? {} : { value: v.value }),
    updatedAt: v.updatedAt,
    // When the replaced value stops being accepted (a rotation's overlap); absent when there is none.
    ...(v.previous && Date.parse(v.previous.until) > Date.now() ? { previousAcceptedUntil: v.previous.until } : {}),
    usedBy: store
      .apis()
      .filter((api) => namedValueReferences({ apis: [api] }).some((r) => r.name === v.name))
      .map((api) => (api as { id: string }).id),
  });

  app.get('/admin/named-values', (c) => c.json({ revision: store.revision(), namedValues: store.namedValues().map(namedValueView) }));

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
    const overlapSeconds = body.overlapSeconds ?? 0;
    if (typeof overlapSeconds !== 'number' || !Number.isInteger(overlapSeconds) || overlapSeconds < 0 || overlapSeconds > MAX_OVERLAP_SECONDS) {
      return problem(c, 400, `overlapSeconds: how long the previous value stays accepted, an integer from 0 to ${MAX_OVERLAP_SECONDS} (30 days)`);
    }
    if (body.value.length > MAX_NAMED_VALUE_LENGTH) {
      return problem(c, 400, `a named value is at most ${MAX_NAMED_VALUE_LENGTH} characters (got ${body.value.length})`);
    }
    // A secret stays secret unless told otherwise: rotating a key with {"value": ...} alone must not expose it.
    const secret = body.secret ?? store.namedValue(name)?.secret ?? false;
    const revision = store.putNamedValue(name, { value: body.value, secret }, overlapSeconds);
    const saved = store.namedValue(name)!;
    logger.info('named value saved', { namedValue: name, secret, revision, previousAcceptedUntil: saved.previous?.until });
    return c.json({ revision, ...namedValueView(saved) });
  });

  app.delete('/admin/named-values/:name', (c) => {
    const found = store.namedValue(c.req.param('name'));
    if (!found) return problem(c, 404, `no named value ${c.req.param('name')}`);
    const { usedBy } = namedValueView(found);
    if (usedBy.length > 0) {
      return problem(c, 409, `named value ${found.name} is used by ${usedBy.map((a) => `api ${a}`).join(', ')}: change those first`, { usedBy });
    }
    const revision = store.deleteNamedValue(found.name);
    logger.info('named value deleted', { namedValue: found.name, revision });
    return c.json({ revision });
  });

  // Each gateway with its instances' last heartbeats: applied revision, lag behind the current one, health.
  app.get('/admin/gateways', (c) => {
    const current = store.revision();
    const nowMs = now();
    return c.json({
      revision: current,
      gateways: store.gateways().map((g) => ({
        id: g.id,
        apis: g.apis,
        instances: store.instances(g.id).map((beat) => ({
          ...beat,
          revisionsBehind: beat.revision === null ? null : Math.max(0, current - beat.revision),
          secondsSinceHeartbeat: Math.round((nowMs - Date.parse(beat.at)) / 1000),
        })),
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
    const revision = store.putGateway(id, apis as string[]);
    logger.info('gateway saved', { gateway: id, apis, revision });
    return c.json({ revision, id, apis });
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
      descriptor = (await loadPolicyModule(bytes, logger)).descriptor;
    } catch (err) {
      const problems = err instanceof PolicyLoadError ? err.problems : [(err as Error).message];
      return problem(c, 400, 'the body is not a policy module Gatehouse can load', { problems });
    }
    const sha256 = sha256Hex(bytes);
    const revision = store.putModule({ sha256, bytes, signature: signer.sign(sha256), name: descriptor.name, version: descriptor.version });
    logger.info('module uploaded', { module: descriptor.name, version: descriptor.version, sha256, revision });
    return c.json({ module: `sha256:${sha256}`, name: descriptor.name, version: descriptor.version, revision });
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

  // Gateway endpoints: the token names the gateway; it must be signed by this control plane, unexpired, unrevoked.
  const gatewayOf = (c: Context) => {
    const auth = c.req.header('authorization') ?? '';
    const token = auth.startsWith('GatewayKey ') ? auth.slice(11) : '';
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

  app.get('/gateway/v1/config', (c) => {
    const { gateway, refused } = gatewayOf(c);
    if (!gateway) return refused;
    const text = JSON.stringify(store.gatewayDocument(gateway.id));
    // The ETag is the document's digest: a change to APIs this gateway does not serve costs it nothing.
    const etag = `"${createHash('sha256').update(text).digest('base64url')}"`;
    const headers = { etag, 'x-gatehouse-revision': String(store.revision()) };
    if (c.req.header('if-none-match') === etag) return c.body(null, 304, headers);
    return c.body(text, 200, { ...headers, 'content-type': 'application/json' });
  });

  app.get('/gateway/v1/modules/:sha256', (c) => {
    const { gateway, refused } = gatewayOf(c);
    if (!gateway) return refused;
    const module = store.module(c.req.param('sha256'));
    if (!module) return problem(c, 404, `no module sha256:${c.req.param('sha256')}`);
    return c.body(module.bytes as Uint8Array<ArrayBuffer>, 200, { 'content-type': 'application/wasm', 'x-gatehouse-signature': module.signature });
  });

  app.post('/gateway/v1/telemetry', async (c) => {
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
    store.addTelemetry(gateway.id, body!.instance as string, rows as TelemetryRow[]);
    if (typeof body!.dropped === 'number' && body!.dropped > 0) {
      logger.warn('gateway dropped telemetry while disconnected', { gateway: gateway.id, instance: body!.instance, dropped: body!.dropped });
    }
    return c.json({ accepted: (rows as unknown[]).length });
  });

  app.post('/gateway/v1/heartbeat', async (c) => {
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
    store.heartbeat({
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
    return c.json({ revision: store.revision() });
  });

  return app;
}

async function readJson(c: Context): Promise<unknown | undefined> {
  try {
    const body = await c.req.json();
    return body !== null && typeof body === 'object' && !Array.isArray(body) ? body : undefined;
  } catch {
    return undefined;
  }
}
