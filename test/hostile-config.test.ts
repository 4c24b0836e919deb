// Malformed configuration documents, generated: a good document mutated a thousand and more ways (keys deleted and
// duplicated, values of the wrong type, random bytes, truncation, deep nesting, huge strings, YAML alias bombs, bytes
// that are not UTF-8, stray syntax, floods of keys), from a seeded PRNG so that a failure names a seed that reproduces
// it. The properties: reading a document never throws anything but a ConfigError whose problems say where, never takes
// long, and a gateway watching its file keeps the good document in force and keeps serving while bad ones arrive.

import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ConfigError } from '../runtime/config/config-error.ts';
import { parseGatewayDocument } from '../runtime/config/parse-document.ts';
import { bindChains } from '../runtime/config/policies.ts';
import { RepositoryPolicySources } from '../runtime/config/repository-policies.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { newHost } from './support/policies.ts';
import { send, startRecordingBackend, type RecordingBackend } from './support/requests.ts';

/** Documents generated; each seed gives the same document on every run and runtime. */
const DOCUMENTS = 1200;
const FIRST_SEED = 1;
/** The longest one document may take to be read or refused (a loaded CI machine included); the total is bounded too. */
const MAX_MS_EACH = 3000;
const MAX_MS_TOTAL = 25_000;

function goodDocument(backendUrl: string): string {
  return `version: 1
settings:
  maxRequestBodyBytes: 1048576
  backendTimeoutMs: 5000
namedValues:
  api-key: { value: demo-key, secret: true }
policies:
  inbound:
    - policy: set-header
      config: { name: x-gateway, value: gatehouse }
apis:
  - id: shop
    pathPrefix: /shop
    hosts: [shop.example.test, "*.shop.test"]
    backend: { url: "${backendUrl}/shop", timeoutMs: 2000 }
    operations:
      - id: get-order
        method: GET
        urlTemplate: /orders/{orderId}
        policies:
          inbound:
            - policy: rewrite-uri
              config: { template: "/v2/orders/{orderId}" }
      - { id: create-order, method: POST, urlTemplate: /orders }
    policies:
      inbound:
        - policy: check-header
          config: { name: x-api-key, values: ["{{api-key}}"], failedCheckHttpCode: 401 }
      outbound:
        - policy: set-header
          config: { name: x-served-by, value: shop }
  - id: pool
    pathPrefix: /pool
    backend:
      pool: { urls: ["${backendUrl}/a", "${backendUrl}/b"], ejectAfterFailures: 2, ejectForMs: 1000 }
  - id: served
    pathPrefix: /served
    backend: { url: "${backendUrl}/served" }
`;
}

// --- a seeded PRNG and the mutations -------------------------------------------------------------------------------

/** mulberry32: small, fast, and the same sequence on every runtime for a seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Rng {
  next: () => number;
  int: (n: number) => number;
  pick: <T>(items: readonly T[]) => T;
}

function rng(seed: number): Rng {
  const next = prng(seed);
  return { next, int: (n) => Math.floor(next() * n), pick: (items) => items[Math.floor(next() * items.length)]! };
}

type Tree = unknown;

/** Every place in a parsed document: the container and the key or index in it. */
function places(tree: Tree): { parent: Record<string, unknown> | unknown[]; key: string | number }[] {
  const out: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const walk = (node: Tree) => {
    if (Array.isArray(node)) node.forEach((child, i) => (out.push({ parent: node, key: i }), walk(child)));
    else if (node && typeof node === 'object') {
      for (const [k, child] of Object.entries(node)) out.push({ parent: node as Record<string, unknown>, key: k }), walk(child);
    }
  };
  walk(tree);
  return out;
}

const WRONG_VALUES: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -1e308, '', 'x', '/', ' ', [], [1, 'a'], {}, { a: 1 }, 'http://', 'builtin:echo', '{{missing}}', '\u0000', '日本語', 'a\r\nb', 2 ** 53 + 1];

/** JSON text of `inner` wrapped in `depth` lists and maps, written out directly (JSON.stringify recurses, and Node's
 *  stack ends before 5,000 levels). */
function nestedJson(depth: number, inner: unknown, r: Rng): string {
  const opens: string[] = [];
  const closes: string[] = [];
  for (let i = 0; i < depth; i++) {
    const list = r.next() < 0.5;
    opens.push(list ? '[' : '{"a":');
    closes.push(list ? ']' : '}');
  }
  return opens.join('') + JSON.stringify(inner ?? null) + closes.reverse().join('');
}

/** A mutation of the good document's text (YAML), by kind. */
const MUTATIONS: Record<string, (good: string, r: Rng) => string | Uint8Array> = {
  'delete a key': (good, r) => {
    const tree = parseYaml(good) as Tree;
    const at = r.pick(places(tree));
    if (Array.isArray(at.parent)) at.parent.splice(at.key as number, 1);
    else delete at.parent[at.key as string];
    return stringifyYaml(tree);
  },
  'duplicate a key': (good, r) => {
    const lines = good.split('\n');
    const keyed = lines.map((l, i) => [l, i] as const).filter(([l]) => /^\s*(- )?[\w$-]+:/.test(l));
    const [line, i] = r.pick(keyed);
    lines.splice(i + 1, 0, line.replace('- ', '  '));
    return lines.join('\n');
  },
  'a value of the wrong type': (good, r) => {
    const tree = parseYaml(good) as Tree;
    for (let n = 1 + r.int(3); n > 0; n--) {
      const at = r.pick(places(tree));
      (at.parent as Record<string | number, unknown>)[at.key] = r.pick(WRONG_VALUES);
    }
    return stringifyYaml(tree);
  },
  'random bytes': (good, r) => {
    const bytes = Buffer.from(good, 'utf8');
    for (let n = 1 + r.int(20); n > 0; n--) bytes[r.int(bytes.length)] = r.int(256);
    return bytes;
  },
  truncated: (good, r) => good.slice(0, r.int(good.length)),
  'nested deep': (good, r) => {
    const tree = parseYaml(good) as Tree;
    const at = r.pick(places(tree));
    const depth = r.next() < 0.9 ? r.pick([60, 65, 100, 300]) : r.pick([1000, 5000]);
    const slot = at.parent as Record<string | number, unknown>;
    const deep = nestedJson(depth, slot[at.key], r);
    slot[at.key] = '@@deep@@';
    // JSON text, which is YAML too; read as either.
    const text = JSON.stringify(tree).replace('"@@deep@@"', () => deep);
    return r.next() < 0.5 ? text : `# yaml\n${text}`;
  },
  'nested deep in flow style': (good, r) => `${good}x: ${'['.repeat(r.next() < 0.8 ? 70 : r.pick([1500, 5000]))}\n`,
  'a huge string': (good, r) => {
    const tree = parseYaml(good) as Tree;
    const at = r.pick(places(tree));
    // Mostly large; now and then past the 2 MiB the gateway reads.
    const size = r.next() < 0.97 ? 1000 + r.int(200_000) : 2 * 1024 * 1024 + r.int(1000);
    (at.parent as Record<string | number, unknown>)[at.key] = 'z'.repeat(size);
    return stringifyYaml(tree);
  },
  'an alias bomb': (_good, r) => {
    const fan = 2 + r.int(9);
    const levels = 3 + r.int(8);
    const lines = [`version: 1`, `l0: &l0 [${Array(fan).fill('"lol"').join(', ')}]`];
    for (let i = 1; i < levels; i++) lines.push(`l${i}: &l${i} [${Array(fan).fill(`*l${i - 1}`).join(', ')}]`);
    lines.push(`apis: *l${levels - 1}`);
    return lines.join('\n');
  },
  'aliases in odd places': (good, r) =>
    r.pick([
      `${good}loop: &loop [*loop]\n`,
      `${good}undefined: *nowhere\n`,
      good.replace('apis:', 'apis: &apis').concat('again: *apis\n'),
      good.replace('backend: {', 'backend: &b {').concat('b2: *b\nb3: *b\n'),
      `&top version: 1\n${good.split('\n').slice(1).join('\n')}`,
    ]),
  'bytes that are not UTF-8': (good, r) => {
    const bytes = Buffer.from(good, 'utf8');
    const at = r.int(bytes.length);
    const bad = r.pick([[0xff], [0xfe, 0xff], [0xc3], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80]]);
    return Buffer.concat([bytes.subarray(0, at), Buffer.from(bad), bytes.subarray(at)]);
  },
  'stray YAML syntax': (good, r) => {
    let text = good;
    for (let n = 1 + r.int(5); n > 0; n--) {
      const at = r.int(text.length);
      text = text.slice(0, at) + r.pick([':', '- ', '{', '}', '[', ']', '&a ', '*a', '!!binary ', '!tag ', '%YAML 1.1\n', '|', '>', '\t', '"', "'", '#', '? ', '---\n', '...\n', ',', '\\']) + text.slice(at);
    }
    return text;
  },
  'a flood of keys': (good, r) => {
    // Mostly a few hundred; one in ten, ten thousand (the yaml package's own duplicate check took 0.5 s for those).
    const n = r.next() < 0.9 ? 100 + r.int(300) : 10_000;
    const keys = Array.from({ length: n }, (_, i) => `k${i % (r.next() < 0.5 ? n : 7)}: ${i}`).join('\n');
    return r.next() < 0.5 ? `${good}${keys}\n` : good.replace('settings:\n', `settings:\n${keys.replace(/^/gm, '  ')}\n`);
  },
  'a flood of APIs': (good, r) => {
    const n = r.next() < 0.9 ? 10 + r.int(50) : 1000;
    const apis = Array.from({ length: n }, (_, i) => `  - { id: a${i}, pathPrefix: /p${i % 3}, hosts: [h${i % 50}.test], backend: { url: builtin:echo } }`);
    return `${good}${apis.join('\n')}\n`;
  },
  'the document as JSON, mutated': (good, r) => {
    const json = JSON.stringify(parseYaml(good), null, r.next() < 0.5 ? 2 : undefined);
    const at = r.int(json.length);
    return json.slice(0, at) + r.pick(['', ',', '}', '"', ':', '{"a":', '[', 'NaN', '\u0000', '\\u12']) + json.slice(at + r.int(3));
  },
};

const KINDS = Object.keys(MUTATIONS);

/** Document `seed`: its kind, its name (JSON flavours end in .json), and its text as the gateway would read it. */
function generated(seed: number, good: string): { kind: string; name: string; text: string; bytes: Uint8Array } {
  const r = rng(seed);
  const kind = KINDS[seed % KINDS.length]!;
  const made = MUTATIONS[kind]!(good, r);
  const bytes = typeof made === 'string' ? Buffer.from(made, 'utf8') : made;
  const json = kind === 'the document as JSON, mutated' || (kind === 'nested deep' && made.toString().startsWith('{'));
  // Files are read as UTF-8 text (readFile(file, 'utf8')): the same decoding here.
  return { kind, name: json ? 'gw.json' : 'gw.yaml', text: Buffer.from(bytes).toString('utf8'), bytes };
}

// --- in process: read (and bind) every generated document ----------------------------------------------------------

describe('hostile configuration: generated malformed documents', () => {
  test(`${DOCUMENTS} documents: each is read, or refused with a ConfigError naming where, never anything else, never slowly`, { timeout: 120_000 }, async () => {
    const good = goodDocument('http://127.0.0.1:9');
    parseGatewayDocument(good, 'gw.yaml');
    const byKind = new Map<string, { refused: number; read: number; slowestMs: number }>();
    const readable: { seed: number; doc: ReturnType<typeof parseGatewayDocument> }[] = [];
    let totalMs = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + DOCUMENTS; seed++) {
      const { kind, name, text } = generated(seed, good);
      const stats = byKind.get(kind) ?? { refused: 0, read: 0, slowestMs: 0 };
      byKind.set(kind, stats);
      const started = performance.now();
      let outcome: unknown = null;
      try {
        readable.push({ seed, doc: parseGatewayDocument(text, name) });
        stats.read++;
      } catch (err) {
        outcome = err;
        stats.refused++;
      }
      const ms = performance.now() - started;
      totalMs += ms;
      stats.slowestMs = Math.max(stats.slowestMs, ms);
      const what = `seed ${seed} (${kind})`;
      assert.ok(ms < MAX_MS_EACH, `${what} took ${ms.toFixed(0)} ms`);
      if (outcome === null) continue;
      assert.ok(outcome instanceof ConfigError, `${what} threw ${(outcome as Error)?.constructor?.name}: ${(outcome as Error)?.stack ?? String(outcome)}`);
      assert.ok(outcome.problems.length > 0 && outcome.problems.length <= 101, `${what}: ${outcome.problems.length} problems`);
      for (const p of outcome.problems) {
        assert.ok(p.where.startsWith(name), `${what}: a problem without its place: ${JSON.stringify(p)}`);
        assert.ok(p.message.length > 0 && p.message.length < 2000, `${what}: message ${JSON.stringify(p.message.slice(0, 100))}`);
      }
    }
    assert.ok(totalMs < MAX_MS_TOTAL, `reading ${DOCUMENTS} documents took ${totalMs.toFixed(0)} ms`);
    const refused = [...byKind.values()].reduce((n, s) => n + s.refused, 0);
    assert.ok(refused >= 1000, `${refused} of ${DOCUMENTS} documents refused: at least a thousand malformed ones are wanted`);
    // Every kind was generated, and most of every kind but the gentle ones is refused.
    for (const kind of KINDS) assert.ok((byKind.get(kind)?.refused ?? 0) > 0, `no document of kind "${kind}" was refused`);
    const summary = [...byKind].map(([k, s]) => `${k}: ${s.refused} refused, ${s.read} read, slowest ${s.slowestMs.toFixed(0)} ms`);
    process.stdout.write(`# ${DOCUMENTS} documents in ${totalMs.toFixed(0)} ms\n${summary.map((l) => `#   ${l}`).join('\n')}\n`);

    // The documents that were read are bound (policies built, loaded, configured) or refused with a ConfigError.
    const { host } = newHost();
    const policies = new RepositoryPolicySources(join(repoRoot(), 'policies'));
    for (const { seed, doc } of readable.slice(0, 60)) {
      await bindChains(doc, { host, baseDir: tempDir(), policies, sourceName: 'gw.yaml' }).catch((err: unknown) => {
        assert.ok(err instanceof ConfigError, `seed ${seed}: binding threw ${(err as Error)?.stack ?? String(err)}`);
      });
    }
  });

  test('bytes that are not UTF-8 are refused where they are, not read as U+FFFD into a value', () => {
    const text = Buffer.concat([Buffer.from('version: 1\napis: []\nx: "a'), Buffer.from([0xff]), Buffer.from('b"\n')]).toString('utf8');
    assert.throws(
      () => parseGatewayDocument(text, 'gw.yaml'),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.problems[0]!.where === 'gw.yaml:3:6' &&
        /not UTF-8/.test(err.problems[0]!.message),
    );
  });

  test('a YAML alias bomb is refused in milliseconds, without expanding it', () => {
    const bomb = generated(KINDS.indexOf('an alias bomb') + KINDS.length * 3, goodDocument('http://127.0.0.1:9'));
    const started = performance.now();
    assert.throws(() => parseGatewayDocument(bomb.text, 'gw.yaml'), (err: unknown) => err instanceof ConfigError && /aliases are expanded more than 100 times|not a valid/.test(err.message));
    assert.ok(performance.now() - started < 1000);
  });
});

// --- a running gateway watching its file ---------------------------------------------------------------------------

describe('hostile configuration: a running gateway keeps its good document', () => {
  let backend: RecordingBackend;
  let gw: GatewayProcess;
  let file: string;
  let good: string;

  before(async () => {
    backend = await startRecordingBackend(() => ({ body: 'ok' }));
    good = goodDocument(`http://127.0.0.1:${backend.port}`);
    file = writeConfig(tempDir(), 'gateway.yaml', good);
    gw = await startGatewayProcess({ config: file });
  });

  after(async () => {
    await gw?.stop();
    backend.server.closeAllConnections();
    await new Promise((r) => backend.server.close(r));
  });

  test('one refused document of each kind, written over the file: each is rejected with its problems, and no request fails meanwhile', { timeout: 90_000 }, async () => {
    // For each of these kinds, the first generated document of that kind that is refused in process. (The watcher polls
    // once a second: every kind would make this test long; the in-process test above covers them all.)
    const kinds = ['a value of the wrong type', 'truncated', 'random bytes', 'nested deep in flow style', 'a huge string', 'an alias bomb', 'bytes that are not UTF-8', 'a flood of keys'];
    const chosen: { seed: number; kind: string; bytes: Uint8Array }[] = [];
    for (const kind of kinds) {
      for (let seed = KINDS.indexOf(kind) || KINDS.length; seed < 5000; seed += KINDS.length) {
        const doc = generated(seed, good);
        if (doc.name !== 'gw.yaml') continue;
        let refused = false;
        try {
          parseGatewayDocument(doc.text, file);
        } catch {
          refused = true;
        }
        if (refused) {
          chosen.push({ seed, kind, bytes: doc.bytes });
          break;
        }
      }
    }
    assert.equal(chosen.length, kinds.length);

    // A client sends requests the whole time; every one must be served by the good document.
    let traffic = true;
    const statuses: number[] = [];
    const client = (async () => {
      while (traffic) {
        const res = await send(gw.url, '/served/ping').catch((err: Error) => ({ status: 0, body: err.message }));
        statuses.push(res.status);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      for (const { seed, kind, bytes } of chosen) {
        const rejectedBefore = gw.logs.filter((l) => l.msg === 'configuration rejected; the running configuration stays in force').length;
        writeFileSync(file, bytes);
        const line = await gw.waitForLog(
          () => gw.logs.filter((l) => l.msg === 'configuration rejected; the running configuration stays in force').length > rejectedBefore,
          15_000,
        );
        const rejected = gw.logs.filter((l) => l.msg === 'configuration rejected; the running configuration stays in force')[rejectedBefore] ?? line;
        const problems = rejected.problems as { where: string; message: string }[];
        assert.ok(problems.length > 0 && problems.every((p) => p.where.startsWith(file)), `seed ${seed} (${kind}): ${JSON.stringify(problems).slice(0, 300)}`);
        assert.equal((await send(gw.url, '/served/after')).status, 200, `seed ${seed} (${kind}): the good document still serves`);
      }
    } finally {
      traffic = false;
      await client;
    }
    assert.ok(statuses.length > 20, `${statuses.length} requests made`);
    assert.deepEqual([...new Set(statuses)], [200], 'every request during the bad documents was served');
    assert.equal(gw.logs.filter((l) => l.msg === 'configuration applied').length, 1, 'only the first, good, document was ever applied');
    // And the good document, written back, is applied again (the watcher is still working).
    writeFileSync(file, `${good}# written back\n`);
    await gw.waitForLog(() => gw.logs.filter((l) => l.msg === 'configuration applied').length === 2, 15_000);
  });
});
