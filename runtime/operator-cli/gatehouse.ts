// `gatehouse`: the operators' command for a control plane.
//
//   gatehouse apply -f gatehouse.yaml [--dry-run] [--prune] [--force]
//                                       declares the named values, fragments, APIs and gateways of the file, all at once (one
//                                       revision, or none when nothing changes); policies given as `source:` (a policy
//                                       folder) are built with the SDK and uploaded, `module:` files uploaded, and both
//                                       replaced by their `sha256:` names. --dry-run prints what would change and
//                                       changes nothing; --prune deletes, of each kind the file declares, what it does
//                                       not declare; --force deletes what is in use, saying what it breaks
//   gatehouse delete api|gateway|fragment|named-value|module <id> [--force]
//   gatehouse get                       what the control plane has: APIs, fragments, named values (never their values),
//                                       gateways, and which instance runs which revision (with its lag, last heartbeat,
//                                       and what is wrong: stale instances, missing APIs, token problems)
//   gatehouse token issue|list|revoke   a gateway's tokens (runTokenCommand)
//   gatehouse import-apim [<policy.xml>] [--fragment <id>=<fragment.xml>]... [--fragments <folder>]
//                         [--api <id> --path <prefix> --backend <url>] [--apply] [--partial]
//                                       an Azure API Management policy document, and the policy fragments it includes
//                                       (apim/fragments.ts), as Gatehouse configuration on standard output
//                                       (apim/translate.ts): the chains alone; with --api a whole gateway document, or
//                                       with --apply a gatehouse apply file, carrying the fragments; fragments alone
//                                       as `fragments:`. What it cannot translate is listed on standard error with its
//                                       file and line (exit status 1 unless --partial)
//
// The control plane: GATEHOUSE_CONTROL_PLANE, else `controlPlane:` in the file, else http://127.0.0.1:7070.
// The admin token: GATEHOUSE_ADMIN_TOKEN, else GATEHOUSE_ADMIN_TOKEN_FILE (a file holding it).

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { request } from 'undici';
import { LineCounter, parseDocument } from 'yaml';
import { formatPath, yamlLocator, type DocPath } from '../config/document-paths.ts';
import { policyEntries } from '../config/policy-entries.ts';
import { MODULE_REF } from '../gateway-api/module-refs.ts';
import { FRAGMENT_NAME, FRAGMENT_NAME_HINT } from '../config/fragments.ts';
import { fragmentsIn, importApimDocuments, type ApimImport, type SourceProblem } from './apim/fragments.ts';
import { chainsYaml, documentYaml } from './apim/translate.ts';
import { XmlSyntaxError } from './apim/xml.ts';

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

const consoleIo: CliIo = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };

const TOKEN_USAGE = `       gatehouse token issue <gateway> [--days 1-30]              prints the new token alone (its id on stderr)
       gatehouse token list <gateway>                             id, state, expiry, last use of each token
       gatehouse token revoke <gateway> <token-id>                one token; the others stay valid
       gatehouse token revoke <gateway> --all                     every token issued to the gateway so far`;

const USAGE = `usage: gatehouse apply -f <gatehouse.yaml> [--dry-run] [--prune] [--force]
       gatehouse delete api|gateway|fragment|named-value|module <id> [--force]
       gatehouse get
${TOKEN_USAGE}
       gatehouse import-apim [<policy.xml>] [--fragment <id>=<fragment.xml>]... [--fragments <folder>]
                             [--api <id> --path <prefix> --backend <url>] [--apply] [--partial]
environment: GATEHOUSE_CONTROL_PLANE (http://127.0.0.1:7070; wins over the file's controlPlane:),
             GATEHOUSE_ADMIN_TOKEN or GATEHOUSE_ADMIN_TOKEN_FILE`;

const DEFAULT_CONTROL_PLANE = 'http://127.0.0.1:7070';

class CliError extends Error {}

/** The top-level keys of an apply file. */
const FILE_KEYS = ['controlPlane', 'namedValues', 'fragments', 'apis', 'gateways'];

export async function runCli(argv: string[], io: CliIo = consoleIo): Promise<number> {
  if (io === consoleIo) exitQuietlyOnClosedPipe();
  try {
    const [command, ...rest] = argv;
    if (command === 'apply') return await apply(rest, io);
    if (command === 'get') return await get(io);
    if (command === 'token') return await runTokenCommand(rest, io);
    if (command === 'delete') return await deleteObject(rest, io);
    if (command === 'import-apim') return await importApim(rest, io);
    io.err(USAGE);
    return command === undefined || command === '--help' || command === '-h' ? 0 : 2;
  } catch (err) {
    io.err(`gatehouse: ${(err as Error).message}`);
    return 1;
  }
}

const IMPORT_USAGE =
  'usage: gatehouse import-apim [<policy.xml>] [--fragment <id>=<fragment.xml>]... [--fragments <folder>] [--api <id> --path <prefix> --backend <url>] [--apply] [--partial]';

/** The arguments of `gatehouse import-apim`. */
interface ImportArgs {
  policy: string | null;
  fragments: { id: string; file: string }[];
  folders: string[];
  api: { id: string; path: string; backend: string } | null;
  apply: boolean;
  partial: boolean;
}

function importArgs(args: string[]): ImportArgs {
  const values = new Map<string, string[]>([['--api', []], ['--path', []], ['--backend', []], ['--fragment', []], ['--fragments', []]]);
  const flags = new Set<string>();
  const files: string[] = [];
  const unknown: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const list = values.get(arg);
    if (list && i + 1 < args.length) list.push(args[++i]!);
    else if (arg === '--apply' || arg === '--partial') flags.add(arg);
    else if (arg.startsWith('--') || list) unknown.push(arg);
    else files.push(arg);
  }
  const one = (name: string) => {
    const given = values.get(name)!;
    if (given.length > 1) throw new CliError(`${name} is given ${given.length} times`);
    return given[0];
  };
  const api = { id: one('--api'), path: one('--path'), backend: one('--backend') };
  const fragments = values.get('--fragment')!.map((spec) => {
    const eq = spec.indexOf('=');
    if (eq <= 0 || eq === spec.length - 1) throw new CliError(`--fragment ${spec}: give the fragment's id and its file, as --fragment <id>=<fragment.xml>`);
    return { id: spec.slice(0, eq), file: spec.slice(eq + 1) };
  });
  const folders = values.get('--fragments')!;
  unknown.push(...files.slice(1));
  if (unknown.length > 0 || (files.length === 0 && fragments.length === 0 && folders.length === 0)) {
    throw new CliError(`${IMPORT_USAGE}${unknown.length > 0 ? ` (unknown: ${unknown.join(' ')})` : ''}`);
  }
  const given = Object.values(api).filter((v) => v !== undefined).length;
  if (given !== 0 && given !== 3) throw new CliError('a whole document needs --api, --path and --backend together');
  const policy = files[0] ?? null;
  if (policy === null && given === 3) throw new CliError('--api, --path and --backend declare the API of a policy document: give the document too');
  if (policy !== null && given === 0 && (fragments.length > 0 || folders.length > 0 || flags.has('--apply'))) {
    throw new CliError('with fragments, or --apply, the policy document becomes the API of a whole document: give --api, --path and --backend');
  }
  return { policy, fragments, folders, api: given === 3 ? (api as ImportArgs['api']) : null, apply: flags.has('--apply'), partial: flags.has('--partial') };
}

/** The fragments the arguments give, each id once, checked as a gateway checks a fragment's name. */
async function importedFragmentFiles(options: ImportArgs): Promise<{ id: string; file: string }[]> {
  const listed = [...options.fragments];
  for (const folder of options.folders) {
    const inFolder = await fragmentsIn(folder).catch((err: Error) => Promise.reject(new CliError(`${folder}: ${err.message}`)));
    if (inFolder.length === 0) throw new CliError(`${folder}: no fragments in it (<id>.xml files, or <id>/policy.xml folders as APIOps extracts them)`);
    listed.push(...inFolder);
  }
  const files = new Map<string, string>();
  for (const { id, file } of listed) {
    if (!FRAGMENT_NAME.test(id)) throw new CliError(`${file}: fragment id "${id}": ${FRAGMENT_NAME_HINT}`);
    if (files.has(id)) throw new CliError(`fragment ${id} is given twice: ${files.get(id)} and ${file}`);
    files.set(id, file);
  }
  return listed;
}

/**
 * `gatehouse import-apim`: see the header. Problems go to standard error, one a line, `file:line: message`. A fragment
 * included but not given fails a gateway document (a gateway refuses it) and is noted otherwise (the control plane,
 * or the document the chains go into, may have it).
 */
async function importApim(args: string[], io: CliIo): Promise<number> {
  const options = importArgs(args);
  const read = (file: string) => readFile(file, 'utf8').catch((err: Error) => Promise.reject(new CliError(`${file}: ${err.message}`)));
  let imported: ApimImport;
  try {
    const policy = options.policy === null ? null : { file: options.policy, xml: await read(options.policy) };
    const fragments = await Promise.all((await importedFragmentFiles(options)).map(async (f) => ({ ...f, xml: await read(f.file) })));
    imported = importApimDocuments(policy, fragments);
  } catch (err) {
    if (err instanceof XmlSyntaxError) throw new CliError(err.message);
    throw err;
  }
  const { api, apply } = options;
  const gatewayDocument = api !== null && !apply;
  const problems = [...imported.problems];
  const notes = [...imported.notes];
  for (const inc of imported.notGiven) {
    const message = `fragment ${inc.id} is included but not given (--fragment ${inc.id}=<fragment.xml>, or --fragments <folder>)`;
    if (gatewayDocument) problems.push({ ...inc, message: `${message}: a gateway refuses the document without it` });
    else notes.push({ ...inc, message: `${message}: ${apply ? 'the control plane must have it (gatehouse get lists its fragments)' : 'declare it under fragments: of the document'}` });
  }
  if (api !== null && imported.namedValues.length > 0) {
    const where = { file: options.policy!, line: 0 };
    const names = imported.namedValues.join(', ');
    if (apply) notes.push({ ...where, message: `named values ${names} are referred to: the control plane must have them, or declare them under namedValues: of the file` });
    else problems.push({ ...where, message: `named values ${names} are referred to but not part of the output: declare them under namedValues: in the document` });
  }
  const chainsAlone = options.policy !== null && api === null;
  io.out(chainsAlone ? chainsYaml(imported.chains!) : documentYaml(apply ? 'apply' : 'gateway', imported.fragments, api && { ...api, chains: imported.chains ?? {} }));
  const at = (p: SourceProblem) => `${p.file}${p.line > 0 ? `:${p.line}` : ''}`;
  problems.sort(imported.order);
  notes.sort(imported.order);
  for (const note of notes) io.err(`${at(note)}: note: ${note.message}`);
  for (const problem of problems) io.err(`${at(problem)}: ${problem.message}`);
  if (problems.length === 0) return 0;
  io.err(`gatehouse import-apim: ${problems.length} thing${problems.length === 1 ? '' : 's'} not translated (left out)${options.partial ? '' : '; --partial accepts the output as it is'}`);
  return options.partial ? 0 : 1;
}

/**
 * `gatehouse get | head -1`: once the reader is gone there is nobody to tell anything, so the command ends (exit 0)
 * instead of dying of the failed write with a stack trace.
 */
function exitQuietlyOnClosedPipe(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

async function adminToken(): Promise<string> {
  if (process.env.GATEHOUSE_ADMIN_TOKEN) return process.env.GATEHOUSE_ADMIN_TOKEN;
  const file = process.env.GATEHOUSE_ADMIN_TOKEN_FILE;
  if (file) return (await readFile(file, 'utf8')).trim();
  throw new CliError('set GATEHOUSE_ADMIN_TOKEN (or GATEHOUSE_ADMIN_TOKEN_FILE) to the control plane\'s admin token');
}

/** A problem of the control plane's answer: `path` is its place in the request, when it is in it. */
interface AnswerProblem {
  where?: string;
  path?: DocPath | null;
  message?: string;
}

class ControlPlaneClient {
  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  /** The answer whatever its status (JSON; {} when empty or not JSON). */
  async send(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
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
      // not JSON: reported by the caller if the status says it failed
    }
    return { status: res.statusCode, json, text };
  }

  /** The answer of a call that must succeed; a failure is a CliError with the control plane's problems. */
  async call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Record<string, unknown>> {
    const { status, json, text } = await this.send(method, path, body, contentType);
    if (status >= 300) throw new CliError(failure(method, path, status, json, text, (p) => p.where ?? ''));
    return json;
  }
}

/** A failed call in words: the status, the control plane's `detail`, then each problem on its line placed by `where`. */
function failure(method: string, path: string, status: number, json: Record<string, unknown>, text: string, where: (p: AnswerProblem) => string): string {
  const problems = Array.isArray(json.problems) ? (json.problems as AnswerProblem[]).map((p) => `\n  ${where(p)}: ${p.message ?? ''}`).join('') : '';
  return `${method} ${path}: ${status} ${String(json.detail ?? text.slice(0, 200))}${problems}`;
}

/** The control plane to use, and why that one: the environment wins over the file, as for every other setting. */
function controlPlaneUrl(fromFile?: { url: string; where: string }): { url: string; from: string } {
  if (process.env.GATEHOUSE_CONTROL_PLANE) return { url: process.env.GATEHOUSE_CONTROL_PLANE, from: 'GATEHOUSE_CONTROL_PLANE' };
  if (fromFile) return { url: fromFile.url, from: fromFile.where };
  return { url: DEFAULT_CONTROL_PLANE, from: 'the default; set GATEHOUSE_CONTROL_PLANE' };
}

/** `--flag` options and `-f <value>`-style ones of `args`; anything else is an error naming it. */
function options(args: string[], flags: string[], valued: string[] = []): { flags: Set<string>; values: Map<string, string>; rest: string[] } {
  const out = { flags: new Set<string>(), values: new Map<string, string>(), rest: [] as string[] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (flags.includes(arg)) out.flags.add(arg);
    else if (valued.includes(arg)) {
      const value = args[++i];
      if (value === undefined) throw new CliError(`${arg} needs a value\n${USAGE}`);
      out.values.set(arg, value);
    } else if (arg.startsWith('-')) throw new CliError(`unknown option ${arg}\n${USAGE}`);
    else out.rest.push(arg);
  }
  return out;
}

async function apply(args: string[], io: CliIo): Promise<number> {
  const parsed = options(args, ['--dry-run', '--prune', '--force'], ['-f']);
  const file = parsed.values.get('-f');
  if (!file || parsed.rest.length > 0) throw new CliError(`apply needs -f <file>, and nothing else\n${USAGE}`);
  const path = resolve(file);
  const lines = new LineCounter();
  const yamlDoc = parseDocument(await readFile(path, 'utf8'), { lineCounter: lines });
  if (yamlDoc.errors.length > 0) {
    throw new CliError(yamlDoc.errors.map((e) => `${file}:${e.linePos?.[0]?.line ?? 1}: ${e.message.split('\n')[0]}`).join('\n'));
  }
  const locate = yamlLocator(yamlDoc, lines);
  /** `file:line: apis[1].policies` for a place in the file. */
  const at = (where: DocPath) => {
    const line = locate(where);
    return `${file}${line === undefined ? '' : `:${line}`}: ${formatPath(where)}`;
  };
  const declaration = yamlDoc.toJS() as Record<string, unknown> | null;
  if (!declaration || typeof declaration !== 'object' || Array.isArray(declaration)) {
    throw new CliError(`${file}: must be a YAML mapping with ${FILE_KEYS.join(', ')}`);
  }

  // What can be told from the file alone, all of it, before anything is sent.
  const problems: string[] = [];
  for (const key of Object.keys(declaration)) {
    if (FILE_KEYS.includes(key)) continue;
    const near = FILE_KEYS.find((k) => k.toLowerCase().startsWith(key.toLowerCase().slice(0, 4)));
    problems.push(`${at([key])}: unknown key (a file declares ${FILE_KEYS.join(', ')})${near ? `; did you mean ${near}?` : ''}`);
  }
  const { controlPlane } = declaration;
  if (controlPlane !== undefined && typeof controlPlane !== 'string') problems.push(`${at(['controlPlane'])}: must be a URL`);
  const namedValues: Record<string, unknown> = {};
  const declaredValues = declaration.namedValues;
  if (declaredValues !== undefined && (declaredValues === null || typeof declaredValues !== 'object' || Array.isArray(declaredValues))) {
    problems.push(`${at(['namedValues'])}: must be a mapping of names to {value or fromEnv, secret}`);
  } else {
    for (const [name, declared] of Object.entries((declaredValues ?? {}) as Record<string, unknown>)) {
      const body = namedValueBody(declared, (rest, message) => problems.push(`${at(['namedValues', name, ...rest])}: ${message}`));
      if (body) namedValues[name] = body;
    }
  }
  if (problems.length > 0) throw new CliError(`${file} cannot be applied (nothing was sent):\n  ${problems.join('\n  ')}`);

  const used = controlPlaneUrl(typeof controlPlane === 'string' ? { url: controlPlane, where: at(['controlPlane']).replace(/: controlPlane$/, '') } : undefined);
  io.out(`control plane ${used.url} (from ${used.from})`);
  const client = new ControlPlaneClient(used.url, await adminToken());

  // Policy folders and module files become uploaded modules. Uploads are stored by content and are no revision: a
  // module serves no gateway until an API names it (that is the apply, or the dry run's preview).
  const baseDir = dirname(path);
  const uploaded = new Map<string, string>(); // file or folder -> sha256:<hex>
  const upload = async (what: string, bytes: Uint8Array) => {
    const result = await client.call('POST', '/admin/modules', bytes, 'application/wasm');
    io.out(`module ${result.name} ${result.version}: ${result.module} (${what}${result.stored === 'already' ? ', uploaded before' : ''})`);
    return String(result.module);
  };
  const apis = declaration.apis;
  const fragments = declaration.fragments;
  const entries = [...policyEntries({ apis: Array.isArray(apis) ? apis : [], fragments })];
  if (entries.some(({ entry }) => typeof entry.source === 'string' || (typeof entry.module === 'string' && !MODULE_REF.test(entry.module)))) {
    // Loaded only here: the SDK's build (esbuild, the compiler) would slow every other command.
    const { buildPolicy } = await import('../../sdk/build/index.ts');
    for (const { entry } of entries) {
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
  }

  const body: Record<string, unknown> = {
    dryRun: parsed.flags.has('--dry-run'),
    prune: parsed.flags.has('--prune'),
    force: parsed.flags.has('--force'),
  };
  if (declaredValues !== undefined) body.namedValues = namedValues;
  if (fragments !== undefined) body.fragments = fragments;
  if (declaration.apis !== undefined) body.apis = apis;
  if (declaration.gateways !== undefined) body.gateways = declaration.gateways;
  const answer = await client.send('POST', '/admin/apply', body);
  if (answer.status >= 300) {
    // Each problem at its line of the file: the request holds the file's lists in the file's order.
    // In the file's order.
    const line = (p: AnswerProblem) => (p.path ? (locate(p.path) ?? 0) : 0);
    if (Array.isArray(answer.json.problems)) (answer.json.problems as AnswerProblem[]).sort((a, b) => line(a) - line(b));
    throw new CliError(failure('apply', file, answer.status, answer.json, answer.text, (p) => (p.path ? at(p.path) : (p.where ?? file))));
  }
  printChanges(answer.json as unknown as ApplyAnswer, body.dryRun === true, io);
  return 0;
}

interface ApplyAnswer {
  revision: number;
  changes: { kind: string; id: string; action: string; fields?: { path: string; before?: unknown; after?: unknown; secret?: true }[] }[];
  unchanged: { kind: string; id: string }[];
  breaks: string[];
}

/** What an apply changed (or, dry, would change): each object, each field, what forcing broke, and the revision. */
function printChanges(answer: ApplyAnswer, dryRun: boolean, io: CliIo): void {
  const value = (v: unknown) => (v === undefined ? '(none)' : JSON.stringify(v).slice(0, 120));
  for (const change of answer.changes) {
    const id = change.kind === 'module' ? `sha256:${change.id}` : change.id;
    io.out(`${change.kind} ${id}: ${dryRun ? `would be ${change.action}d` : `${change.action}d`}`);
    for (const field of change.fields ?? []) {
      io.out(`  ${field.path}: ${field.secret ? 'changed (secret)' : `${value(field.before)} -> ${value(field.after)}`}`);
    }
  }
  for (const broken of answer.breaks) io.out(`${dryRun ? 'would break' : 'forced'}: ${broken}`);
  const names = (kind: string) => answer.changes.filter((c) => c.kind === kind).map((c) => c.id);
  const touched = [['APIs', names('api')], ['gateways', names('gateway')], ['fragments', names('fragment')], ['named values', names('named value')], ['modules', names('module')]]
    .filter(([, ids]) => ids!.length > 0)
    .map(([what, ids]) => `${what} ${(ids as string[]).join(', ')}`)
    .join('; ');
  const unchanged = answer.unchanged.length > 0 ? ` (${answer.unchanged.length} unchanged)` : '';
  if (answer.changes.length === 0) io.out(`no change: revision ${answer.revision} is current${unchanged}`);
  else if (dryRun) io.out(`dry run: nothing was changed; applying would make one revision after ${answer.revision} (${touched})${unchanged}`);
  else io.out(`applied: revision ${answer.revision} (${touched})${unchanged}`);
}

/**
 * The control plane's body for a declared named value; a value from the environment is read here, not written down.
 * Null, with `problem` told each mistake, when it cannot be made.
 */
function namedValueBody(
  declared: unknown,
  problem: (at: DocPath, message: string) => void,
): { value: string; secret?: boolean; overlapSeconds?: number } | null {
  if (!declared || typeof declared !== 'object' || Array.isArray(declared)) {
    problem([], 'must be a mapping with "value" or "fromEnv" (and "secret", "overlapSeconds")');
    return null;
  }
  const { value, fromEnv, secret, overlapSeconds, ...unknown } = declared as Record<string, unknown>;
  for (const key of Object.keys(unknown)) problem([key], 'unknown key (allowed: value, fromEnv, secret, overlapSeconds)');
  if ((value === undefined) === (fromEnv === undefined)) problem([], 'give exactly one of "value" or "fromEnv"');
  if (secret !== undefined && typeof secret !== 'boolean') problem(['secret'], 'must be true or false');
  if (overlapSeconds !== undefined && (typeof overlapSeconds !== 'number' || !Number.isInteger(overlapSeconds) || overlapSeconds < 0)) {
    problem(['overlapSeconds'], 'must be a whole number of seconds');
  }
  let text: string | undefined;
  if (fromEnv !== undefined) {
    if (typeof fromEnv !== 'string' || process.env[fromEnv] === undefined) problem(['fromEnv'], `the environment variable ${String(fromEnv)} is not set`);
    else text = process.env[fromEnv];
  } else if (value !== undefined) {
    if (typeof value !== 'string') problem(['value'], 'must be a string (quote numbers and booleans)');
    else text = value;
  }
  if (text === undefined || Object.keys(unknown).length > 0) return null;
  return {
    value: text,
    ...(typeof secret === 'boolean' ? { secret } : {}),
    ...(typeof overlapSeconds === 'number' ? { overlapSeconds } : {}),
  };
}

/** `gatehouse delete <kind> <id>`: the admin API's collection for each kind. */
const DELETABLE: Record<string, string> = { api: 'apis', gateway: 'gateways', fragment: 'fragments', 'named-value': 'named-values', module: 'modules' };

async function deleteObject(args: string[], io: CliIo): Promise<number> {
  const parsed = options(args, ['--force']);
  const [kind, id, ...extra] = parsed.rest;
  if (!kind || !id || extra.length > 0 || !Object.hasOwn(DELETABLE, kind)) {
    throw new CliError(`delete needs what and which: ${Object.keys(DELETABLE).join('|')} <id>\n${USAGE}`);
  }
  const used = controlPlaneUrl();
  const client = new ControlPlaneClient(used.url, await adminToken());
  const path = `/admin/${DELETABLE[kind]}/${encodeURIComponent(id)}${parsed.flags.has('--force') ? '?force=true' : ''}`;
  const answer = await client.send('DELETE', path);
  if (answer.status >= 300) {
    const hint = answer.status === 409 && answer.json.forceable === true ? '\n(gatehouse delete --force deletes it anyway)' : '';
    throw new CliError(`${failure('delete', `${kind} ${id}`, answer.status, answer.json, answer.text, (p) => p.where ?? '')}${hint}`);
  }
  const { revision, breaks } = answer.json as { revision: number; breaks?: string[] };
  for (const broken of breaks ?? []) io.out(`forced: ${broken}`);
  io.out(`deleted ${kind} ${id} (revision ${revision}, control plane ${used.url})`);
  return 0;
}

interface GatewayView {
  id: string;
  apis: string[];
  missingApis: string[];
  lastTokenRefusal: { reason: string; at: string } | null;
  instances: {
    instance: string;
    host: string;
    revision: number | null;
    revisionsBehind: number | null;
    health: string;
    stale: boolean;
    secondsSinceHeartbeat: number;
    tokenExpiresAt: string | null;
    configSource: 'control-plane' | 'backup' | null;
    rejectedRevision: number | null;
    rejectedReason: string | null;
    tokenState: 'unknown' | 'accepted' | 'refused';
    lastSyncAt: string | null;
    syncFailures: number;
  }[];
}

/** A token that expires within this many days is flagged. */
const TOKEN_WARNING_DAYS = 7;

async function get(io: CliIo): Promise<number> {
  const used = controlPlaneUrl();
  const client = new ControlPlaneClient(used.url, await adminToken());
  const apis = (await client.call('GET', '/admin/apis')) as { revision: number; apis: { id: string; pathPrefix?: string }[] };
  const gateways = (await client.call('GET', '/admin/gateways')) as { staleAfterSeconds: number; gateways: GatewayView[] };
  const named = (await client.call('GET', '/admin/named-values')) as { namedValues: { name: string; secret: boolean; usedBy: string[] }[] };
  const fragments = (await client.call('GET', '/admin/fragments')) as { fragments: { name: string; entries: unknown[]; usedByApis: string[] }[] };
  io.out(`control plane ${client.url}, revision ${apis.revision}`);
  io.out('');
  io.out('APIs');
  if (apis.apis.length === 0) io.out('  none');
  for (const api of apis.apis) io.out(`  ${api.id}  ${api.pathPrefix ?? ''}`);
  io.out('');
  io.out('fragments');
  if (fragments.fragments.length === 0) io.out('  none');
  for (const f of fragments.fragments) {
    io.out(`  ${f.name} (${f.entries.length} entr${f.entries.length === 1 ? 'y' : 'ies'}): ${f.usedByApis.length > 0 ? `used by ${f.usedByApis.join(', ')}` : 'not used'}`);
  }
  io.out('');
  io.out('named values');
  if (named.namedValues.length === 0) io.out('  none');
  for (const v of named.namedValues) {
    io.out(`  ${v.name}${v.secret ? ' (secret)' : ''}: ${v.usedBy.length > 0 ? `used by ${v.usedBy.join(', ')}` : 'not used'}`);
  }
  io.out('');
  io.out('gateways');
  if (gateways.gateways.length === 0) io.out('  none');
  for (const g of gateways.gateways) {
    io.out(`  ${g.id}: ${g.apis.join(', ') || 'no API'}`);
    for (const api of g.missingApis) io.out(`    ! names API ${api}, which does not exist: it serves nothing for it`);
    const refusal = g.lastTokenRefusal;
    if (refusal && Date.now() - Date.parse(refusal.at) < gateways.staleAfterSeconds * 1000) {
      io.out(`    ! a token of this gateway was refused ${ago(refusal.at)} (${refusal.reason}): issue a new one`);
    }
    if (g.instances.length === 0) io.out('    no heartbeat yet');
    for (const i of g.instances) io.out(`    ${instanceLine(i)}`);
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
  const client = new ControlPlaneClient(process.env.GATEHOUSE_CONTROL_PLANE ?? DEFAULT_CONTROL_PLANE, await adminToken());
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

/** One instance: what it runs, how far behind, its health, and each thing wrong with it after a `!`. */
function instanceLine(i: GatewayView['instances'][number]): string {
  const behind = i.revisionsBehind === null ? 'no revision yet' : i.revisionsBehind === 0 ? 'up to date' : `${i.revisionsBehind} behind`;
  const source = i.configSource === 'backup' ? ', from its backup' : '';
  const parts = [`${i.instance} on ${i.host}: revision ${i.revision ?? '-'} (${behind}${source}), ${i.health}, heartbeat ${i.secondsSinceHeartbeat} s ago`];
  const days = i.tokenExpiresAt === null ? null : (Date.parse(i.tokenExpiresAt) - Date.now()) / 86_400_000;
  if (i.stale) parts.push(`! stale: no heartbeat for ${i.secondsSinceHeartbeat} s (stopped, or cannot reach the control plane)`);
  if (i.tokenState === 'refused') parts.push('! its token is refused: issue a new one');
  else if (days !== null && days < 0) parts.push('! token expired');
  else if (days !== null && days < TOKEN_WARNING_DAYS) parts.push(`! token expires in ${Math.floor(days * 24)} h: issue a new one`);
  else if (days !== null) parts.push(`token expires in ${Math.floor(days)} d`);
  if (i.rejectedRevision !== null) parts.push(`! refused revision ${i.rejectedRevision}: ${i.rejectedReason ?? 'no reason given'}`);
  if (i.syncFailures > 0) parts.push(`! ${i.syncFailures} failed polls${i.lastSyncAt ? `, last answered ${ago(i.lastSyncAt)}` : ''}`);
  return parts.join(', ');
}

function ago(at: string): string {
  return `${Math.max(0, Math.round((Date.now() - Date.parse(at)) / 1000))} s ago`;
}
