// `gatehouse`: the operators' command for a control plane.
//
//   gatehouse apply -f gatehouse.yaml   pushes the named values, APIs and gateways the file declares; policies
//                                       given as `source:` (a policy folder) are built with the SDK and uploaded,
//                                       `module:` files uploaded, and both replaced by their `sha256:` names
//   gatehouse get                       what the control plane has: APIs, named values (never their values),
//                                       gateways, and which instance runs which revision (with its lag and last
//                                       heartbeat)
//   gatehouse token issue|list|revoke   a gateway's tokens (runTokenCommand)
//
// The control plane: `controlPlane:` in the file, else GATEHOUSE_CONTROL_PLANE (default http://127.0.0.1:7070).
// The admin token: GATEHOUSE_ADMIN_TOKEN, else GATEHOUSE_ADMIN_TOKEN_FILE (a file holding it).

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { request } from 'undici';
import { parse as parseYaml } from 'yaml';
import { buildPolicy } from '../../sdk/cli/build.ts';
import { policyEntries } from '../config/policy-entries.ts';
import { MODULE_REF } from '../sync/module-refs.ts';

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

const consoleIo: CliIo = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };

const TOKEN_USAGE = `       gatehouse token issue <gateway> [--days 1-30]              prints the new token alone (its id on stderr)
       gatehouse token list <gateway>                             id, state, expiry, last use of each token
       gatehouse token revoke <gateway> <token-id>                one token; the others stay valid
       gatehouse token revoke <gateway> --all                     every token issued to the gateway so far`;

const USAGE = `usage: gatehouse apply -f <gatehouse.yaml>
       gatehouse get
${TOKEN_USAGE}
environment: GATEHOUSE_CONTROL_PLANE (http://127.0.0.1:7070), GATEHOUSE_ADMIN_TOKEN or GATEHOUSE_ADMIN_TOKEN_FILE`;

class CliError extends Error {}

interface Declaration {
  controlPlane?: string;
  /** By name: `value`, or `fromEnv` (the variable of the shell that runs `gatehouse apply`), and `secret`. */
  namedValues?: Record<string, { value?: unknown; fromEnv?: unknown; secret?: unknown }>;
  apis?: Record<string, unknown>[];
  gateways?: { id: string; apis: string[] }[];
}

export async function runCli(argv: string[], io: CliIo = consoleIo): Promise<number> {
  try {
    const [command, ...rest] = argv;
    if (command === 'apply') return await apply(rest, io);
    if (command === 'get') return await get(io);
    if (command === 'token') return await runTokenCommand(rest, io);
    io.err(USAGE);
    return command === undefined || command === '--help' || command === '-h' ? 0 : 2;
  } catch (err) {
    io.err(`gatehouse: ${(err as Error).message}`);
    return 1;
  }
}

async function adminToken(): Promise<string> {
  if (process.env.GATEHOUSE_ADMIN_TOKEN) return process.env.GATEHOUSE_ADMIN_TOKEN;
  const file = process.env.GATEHOUSE_ADMIN_TOKEN_FILE;
  if (file) return (await readFile(file, 'utf8')).trim();
  throw new CliError('set GATEHOUSE_ADMIN_TOKEN (or GATEHOUSE_ADMIN_TOKEN_FILE) to the control plane\'s admin token');
}

class ControlPlaneClient {
  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  async call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Record<string, unknown>> {
    let res;
    try {
      res = await request(new URL(path, this.url), {
        method: method as 'GET',
        headers: { authorization: `Bearer ${this.token}`, 'content-type': contentType },
        body: body === undefined ? undefined : body instanceof Uint8Array ? body : JSON.stringify(body),
      });
    } catch (err) {
      throw new CliError(`cannot reach the control plane at ${this.url}: ${(err as Error).message}`);
    }
    const text = await res.body.text();
    let json: Record<string, unknown> = {};
    try {
      json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      // not JSON: reported below if the status says it failed
    }
    if (res.statusCode >= 300) {
      const problems = Array.isArray(json.problems)
        ? (json.problems as { where?: string; message?: string }[]).map((p) => `\n  ${p.where ?? ''}: ${p.message ?? ''}`).join('')
        : '';
      throw new CliError(`${method} ${path}: ${res.statusCode} ${String(json.detail ?? text.slice(0, 200))}${problems}`);
    }
    return json;
  }
}

async function apply(args: string[], io: CliIo): Promise<number> {
  const f = args.indexOf('-f');
  const file = f >= 0 ? args[f + 1] : undefined;
  if (!file) throw new CliError(`apply needs -f <file>\n${USAGE}`);
  const path = resolve(file);
  const declaration = parseYaml(await readFile(path, 'utf8')) as Declaration;
  if (!declaration || typeof declaration !== 'object') throw new CliError(`${file}: not a YAML mapping`);
  const client = new ControlPlaneClient(
    declaration.controlPlane ?? process.env.GATEHOUSE_CONTROL_PLANE ?? 'http://127.0.0.1:7070',
    await adminToken(),
  );
  const baseDir = dirname(path);
  const uploaded = new Map<string, string>(); // file or folder -> sha256:<hex>
  const upload = async (what: string, bytes: Uint8Array) => {
    const result = await client.call('POST', '/admin/modules', bytes, 'application/wasm');
    io.out(`module ${result.name} ${result.version}: ${result.module} (${what})`);
    return String(result.module);
  };
  // Named values first: the APIs that refer to them are checked against them. All are read before any is sent.
  const namedValues = Object.entries(declaration.namedValues ?? {}).map(([name, declared]) => [name, namedValueBody(file, name, declared)] as const);
  for (const [name, body] of namedValues) {
    const saved = await client.call('PUT', `/admin/named-values/${encodeURIComponent(name)}`, body);
    io.out(`named value ${name}: saved${saved.secret ? ' (secret)' : ''} (revision ${saved.revision})`);
  }
  for (const api of declaration.apis ?? []) {
    if (typeof api.id !== 'string') throw new CliError(`${file}: every API needs an id`);
    for (const { entry } of policyEntries({ apis: [api] })) {
      if (typeof entry.source === 'string') {
        const folder = resolve(baseDir, entry.source);
        if (!uploaded.has(folder)) uploaded.set(folder, await upload(entry.source, (await buildPolicy({ source: folder })).wasm));
        entry.module = uploaded.get(folder);
        delete entry.source;
      } else if (typeof entry.module === 'string' && !MODULE_REF.test(entry.module)) {
        const wasm = resolve(baseDir, entry.module);
        if (!uploaded.has(wasm)) uploaded.set(wasm, await upload(entry.module, new Uint8Array(await readFile(wasm))));
        entry.module = uploaded.get(wasm);
      }
    }
    const { id, ...rest } = api;
    const saved = await client.call('PUT', `/admin/apis/${id}`, rest);
    io.out(`api ${id}: saved (revision ${saved.revision})`);
  }
  for (const gateway of declaration.gateways ?? []) {
    const saved = await client.call('PUT', `/admin/gateways/${gateway.id}`, { apis: gateway.apis });
    io.out(`gateway ${gateway.id}: serves ${gateway.apis.join(', ') || 'no API'} (revision ${saved.revision})`);
  }
  return 0;
}

/** The control plane's body for a declared named value; a value from the environment is read here, not written down. */
function namedValueBody(file: string, name: string, declared: unknown): { value: string; secret?: boolean } {
  const where = `${file}: namedValues.${name}`;
  if (!declared || typeof declared !== 'object') throw new CliError(`${where}: must be a mapping with "value" or "fromEnv"`);
  const { value, fromEnv, secret } = declared as { value?: unknown; fromEnv?: unknown; secret?: unknown };
  if ((value === undefined) === (fromEnv === undefined)) throw new CliError(`${where}: give exactly one of "value" or "fromEnv"`);
  if (secret !== undefined && typeof secret !== 'boolean') throw new CliError(`${where}.secret: must be true or false`);
  let text: string;
  if (fromEnv !== undefined) {
    if (typeof fromEnv !== 'string' || process.env[fromEnv] === undefined) {
      throw new CliError(`${where}.fromEnv: the environment variable ${String(fromEnv)} is not set`);
    }
    text = process.env[fromEnv]!;
  } else {
    if (typeof value !== 'string') throw new CliError(`${where}.value: must be a string (quote numbers and booleans)`);
    text = value;
  }
  return secret === undefined ? { value: text } : { value: text, secret };
}

async function get(io: CliIo): Promise<number> {
  const client = new ControlPlaneClient(process.env.GATEHOUSE_CONTROL_PLANE ?? 'http://127.0.0.1:7070', await adminToken());
  const apis = (await client.call('GET', '/admin/apis')) as { revision: number; apis: { id: string; pathPrefix?: string }[] };
  const gateways = (await client.call('GET', '/admin/gateways')) as {
    gateways: {
      id: string;
      apis: string[];
      instances: {
        instance: string;
        host: string;
        revision: number | null;
        revisionsBehind: number | null;
        health: string;
        secondsSinceHeartbeat: number;
        tokenExpiresAt: string | null;
      }[];
    }[];
  };
  io.out(`control plane ${client.url}, revision ${apis.revision}`);
  io.out('');
  io.out('APIs');
  for (const api of apis.apis) io.out(`  ${api.id}  ${api.pathPrefix ?? ''}`);
  const named = (await client.call('GET', '/admin/named-values')) as { namedValues: { name: string; secret: boolean; usedBy: string[] }[] };
  io.out('');
  io.out('named values');
  if (named.namedValues.length === 0) io.out('  none');
  for (const v of named.namedValues) {
    io.out(`  ${v.name}${v.secret ? ' (secret)' : ''}: ${v.usedBy.length > 0 ? `used by ${v.usedBy.join(', ')}` : 'not used'}`);
  }
  io.out('');
  io.out('gateways');
  for (const g of gateways.gateways) {
    io.out(`  ${g.id}: ${g.apis.join(', ') || 'no API'}`);
    if (g.instances.length === 0) io.out('    no heartbeat yet');
    for (const i of g.instances) {
      const behind = i.revisionsBehind === null ? 'no revision yet' : i.revisionsBehind === 0 ? 'up to date' : `${i.revisionsBehind} behind`;
      const days = i.tokenExpiresAt === null ? null : Math.floor((Date.parse(i.tokenExpiresAt) - Date.now()) / 86_400_000);
      const token = days === null ? '' : days < 0 ? ', token expired' : `, token expires in ${days} d`;
      io.out(`    ${i.instance.slice(0, 8)} on ${i.host}: revision ${i.revision ?? '-'} (${behind}), ${i.health}, heartbeat ${i.secondsSinceHeartbeat} s ago${token}`);
    }
  }
  return 0;
}

interface TokenView {
  id: string;
  state: string;
  issuedAt: string;
  expiresAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

/**
 * `gatehouse token`: rotation is issue, roll the new token out, check with `list` that the old one is no longer used,
 * revoke it. `issue` writes the token alone on standard output, so that it can go straight into a file or a Secret.
 */
async function runTokenCommand(args: string[], io: CliIo): Promise<number> {
  const [action, gateway, ...rest] = args;
  if (!action || !['issue', 'list', 'revoke'].includes(action) || !gateway || gateway.startsWith('-')) {
    io.err(`gatehouse token: name what to do and the gateway\n${TOKEN_USAGE.replace(/^ {7}/gm, '  ')}`);
    return 2;
  }
  const client = new ControlPlaneClient(process.env.GATEHOUSE_CONTROL_PLANE ?? 'http://127.0.0.1:7070', await adminToken());
  const at = (iso: string | null) => (iso === null ? '-' : iso.replace(/\.\d{3}Z$/, 'Z'));
  const path = `/admin/gateways/${encodeURIComponent(gateway)}`;
  if (action === 'issue') {
    let body = {};
    if (rest.length > 0) {
      const days = rest[0] === '--days' && rest.length === 2 ? Number(rest[1]) : NaN;
      if (!Number.isInteger(days)) throw new CliError(`token issue: unexpected ${rest.join(' ')} (--days <1-30>)`);
      body = { expiresInDays: days };
    }
    const issued = (await client.call('POST', `${path}/tokens`, body)) as unknown as { id: string; token: string; expiresAt: string };
    io.out(issued.token);
    io.err(`gateway ${gateway}: token ${issued.id} issued by ${client.url}, expires ${at(issued.expiresAt)}`);
    return 0;
  }
  if (action === 'list') {
    if (rest.length > 0) throw new CliError(`token list: unexpected ${rest.join(' ')}`);
    const listed = (await client.call('GET', `${path}/tokens`)) as unknown as {
      tokens: TokenView[];
      earlierFormatLastUsedAt: string | null;
      earlierFormatExpiresAt: string | null;
    };
    io.out(`gateway ${gateway} (${client.url})`);
    if (listed.tokens.length === 0) io.out('  no token issued');
    for (const t of listed.tokens) {
      io.out(`  ${t.id}  ${t.state.padEnd(7)}  issued ${at(t.issuedAt)}  expires ${at(t.expiresAt)}  revoked ${at(t.revokedAt)}  last used ${at(t.lastUsedAt)}`);
    }
    if (listed.earlierFormatLastUsedAt !== null) {
      io.out(`  earlierFormatLastUsed ${at(listed.earlierFormatLastUsedAt)}  expires ${at(listed.earlierFormatExpiresAt)}: a token of the earlier format (gw1., no id) is in use;`);
      io.out(`    issue a new one and roll it out, then revoke the old ones with --all (which revokes every token issued so far), or let it expire`);
    }
    return 0;
  }
  if (rest.length !== 1) throw new CliError(`token revoke needs the token's id (gatehouse token list ${gateway}), or --all`);
  if (rest[0] === '--all') {
    const revoked = await client.call('POST', `${path}/revoke-tokens`);
    io.out(`gateway ${gateway}: every token issued so far is revoked (revision ${revoked.revision}); its gateways are refused until they hold a new one`);
    return 0;
  }
  const revoked = (await client.call('POST', `${path}/tokens/${encodeURIComponent(rest[0]!)}/revoke`)) as unknown as TokenView & { validTokensLeft: number };
  io.out(`gateway ${gateway}: token ${revoked.id} revoked ${at(revoked.revokedAt)} (last used ${at(revoked.lastUsedAt)})`);
  if (revoked.validTokensLeft === 0) io.err(`gatehouse: gateway ${gateway} has no valid token left: its gateways are refused until one is issued`);
  return 0;
}
