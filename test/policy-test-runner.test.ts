// The offline test runner (`gatehouse-policy test`): strict about its format, every request field the ABI exposes,
// sequences of calls on one binding, expectations on logs, metrics and effects, --grep, several folders, a TAP report;
// and the format's documentation, generated from the runner's own description of it.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { runCli } from '../sdk/cli/gatehouse-policy.ts';
import { runPolicyTests } from '../sdk/cli/policy-test.ts';
import { caseFormatMarkdown, checkFormat, CASE, FORMAT_TABLE_END, FORMAT_TABLE_START, formatRows } from '../sdk/cli/test-case-format.ts';

const work = mkdtempSync(join(tmpdir(), 'gatehouse-runner-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** A policy that reports what it reads, counts callers by `x-user`, and logs and emits a metric for each count. */
const PROBE = `import { config, context, counter, emitMetric, log, request, respond, response, route, vars, CONTINUE, PENDING } from "@gatehouse/policy-sdk";

export function on_inbound(): i32 {
  vars.set("method", request.method());
  vars.set("path", request.path());
  vars.set("query", request.query());
  vars.set("client", request.clientAddress());
  vars.set("backend", request.backendUrl());
  vars.set("api", context.api());
  vars.set("prefix", context.apiPathPrefix());
  vars.set("operation", context.operation());
  vars.set("request-id", context.requestId());
  vars.set("id", route.param("id"));
  const body = request.bodyText();
  if (body !== null) vars.set("body", body);
  const greeting = config.getString("greeting", "")!;
  vars.set("greeting", greeting);
  log.debug("greeting: " + greeting);
  const user = request.header("x-user");
  if (user === null) return CONTINUE;
  const r = counter("user:" + user, 2, 60);
  if (r === null) return PENDING;
  const dimensions = new Map<string, string>();
  dimensions.set("user", user);
  emitMetric("calls", 1, dimensions);
  log.info("counted " + user + " " + r.count.toString());
  if (!r.allowed) return respond(429, "slow down", "text/plain");
  request.setHeader("x-count", r.count.toString());
  return CONTINUE;
}

export function on_outbound(): i32 {
  response.setHeader("x-seen-status", response.status().toString());
  return CONTINUE;
}
`;

function probeFolder(name: string, cases: unknown[]): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'policy.ts'), PROBE);
  writeFileSync(join(dir, 'policy.json'), JSON.stringify({ name: 'probe', version: '1.0.0', requestBody: true, needs: ['counters'] }));
  writeFileSync(join(dir, 'policy.test.json'), JSON.stringify({ cases }, null, 2));
  return dir;
}

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }, out, err };
}

describe('the test runner', () => {
  test('a key it does not know fails its case, naming the key, the file, the case, the path and the keys allowed', async () => {
    const dir = probeFolder('strict', [
      { name: 'misspelt status', expect: { statuss: 200 } },
      { name: 'singular header', expect: { request: { header: { 'x-a': 'b' } } } },
      { name: 'a field in the wrong place', request: { path: '/x', backendurl: 'http://b.test' }, expect: {} },
      { name: 'a wrong type', request: { headers: { 'x-a': 1 } }, expect: { outcome: 'continues' } },
      { name: 'fine', expect: { outcome: 'continue' } },
    ]);
    const run = await runPolicyTests(dir);
    assert.deepEqual(run.results.map((r) => r.ok), [false, false, false, false, true], JSON.stringify(run.results, null, 1));
    const [statuss, header, backend, types] = run.results.map((r) => r.problems.join('\n'));
    assert.match(statuss!, /strict\/policy\.test\.json: case "misspelt status": cases\[0\]\.expect\.statuss: unknown key "statuss" \(did you mean "status"\?\); allowed here: outcome, status, error, request, response, variables, logContains, logs, metrics, effects/);
    assert.match(header!, /case "singular header": cases\[1\]\.expect\.request\.header: unknown key "header" \(did you mean "headers"\?\); allowed here: method, path, query, headers, body, backendUrl/);
    assert.match(backend!, /cases\[2\]\.request\.backendurl: unknown key "backendurl" \(did you mean "backendUrl"\?\)/);
    assert.match(types!, /cases\[3\]\.request\.headers\["x-a"\]: must be a string or a list, not a number/);
    assert.match(types!, /cases\[3\]\.expect\.outcome: must be one of "continue", "respond", "fail", "invalid-config", not "continues"/);
  });

  test('a case sets every request field the ABI exposes, named values included, and expects the request after the call', async () => {
    const dir = probeFolder('fields', [
      {
        name: 'every field',
        config: { greeting: '{{greeting}}, {{who}}' },
        namedValues: { greeting: 'hello', who: { value: 's3cret', secret: true } },
        api: 'shop',
        apiPathPrefix: '/shop',
        operation: 'get-order',
        requestId: 'req-7',
        routeParams: { id: '42' },
        variables: { before: 'set' },
        request: { method: 'post', path: '/shop/orders/42', query: 'a=1', body: 'payload', clientAddress: '203.0.113.9', backendUrl: 'https://orders.internal:8443/v2' },
        expect: {
          outcome: 'continue',
          variables: {
            method: 'POST', path: '/shop/orders/42', query: 'a=1', client: '203.0.113.9', backend: 'https://orders.internal:8443/v2',
            api: 'shop', prefix: '/shop', operation: 'get-order', 'request-id': 'req-7', id: '42', body: 'payload',
            greeting: 'hello, s3cret', before: 'set',
          },
          request: { method: 'POST', body: 'payload', backendUrl: 'https://orders.internal:8443/v2', headers: { 'x-count': null } },
          // The secret is masked in the log as a gateway masks it.
          logs: [{ level: 'debug', contains: 'greeting: hello, ***' }],
        },
      },
      { name: 'a reference to no named value', config: { greeting: '{{nobody}}' }, expect: {} },
      { name: 'an expectation that does not hold is reported', request: { backendUrl: 'http://a.test' }, expect: { request: { backendUrl: 'http://b.test' } } },
    ]);
    const run = await runPolicyTests(dir);
    assert.equal(run.results[0]!.ok, true, run.results[0]!.problems.join('\n'));
    assert.match(run.results[1]!.problems.join(), /config\.greeting: \{\{nobody\}\} names no value of "namedValues"/);
    assert.match(run.results[2]!.problems.join(), /request\.backendUrl: expected "http:\/\/b\.test", got "http:\/\/a\.test"/);
  });

  test('steps run different requests on one binding: two users are counted apart, with logs, metrics and effects', async () => {
    // A case's counters start with it: the first call reads the whole 60 s of its window, and the steps, however
    // the case falls on the wall clock, are counted in one window (on the wall clock's windows alice's count started
    // again when the steps straddled the start of a minute, and resetSeconds read 60 one run in sixty).
    const counted = (user: string, count: number, allowed = true, resetSeconds?: number) => ({
      request: { headers: { 'x-user': user } },
      expect: {
        outcome: allowed ? 'continue' : 'respond',
        ...(allowed ? { request: { headers: { 'x-count': String(count) } } } : { status: 429 }),
        logs: [{ level: 'info', contains: `counted ${user} ${count}` }],
        metrics: [{ name: 'calls', value: 1, dimensions: { user } }],
        effects: [{ kind: 'counter', request: { key: `user:${user}`, limit: 2 }, result: { allowed, count, ...(resetSeconds ? { resetSeconds } : {}) } }],
      },
    });
    const dir = probeFolder('steps', [
      {
        name: 'two users are counted apart',
        grants: { counters: true },
        steps: [
          { name: 'alice 1', ...counted('alice', 1, true, 60) },
          { name: 'bob 1', ...counted('bob', 1) },
          { name: 'alice 2', ...counted('alice', 2) },
          { name: 'alice 3 is refused', ...counted('alice', 2, false) },
          { name: 'bob 2', ...counted('bob', 2) },
          { name: 'the backend answers 503', phase: 'outbound', response: { status: 503 }, expect: { response: { headers: { 'x-seen-status': '503' } }, effects: [], metrics: [] } },
        ],
      },
      {
        name: 'a step whose expectation fails names the step',
        grants: { counters: true },
        steps: [
          { request: { headers: { 'x-user': 'carol' } }, expect: { outcome: 'continue' } },
          { name: 'second', request: { headers: { 'x-user': 'carol' } }, expect: { effects: [{ kind: 'counter', result: { count: 5 } }], metrics: [] } },
        ],
      },
      { name: 'steps and a case-level expect do not go together', steps: [{ expect: {} }], expect: {} },
    ]);
    const run = await runPolicyTests(dir);
    assert.equal(run.results[0]!.ok, true, run.results[0]!.problems.join('\n'));
    const second = run.results[1]!.problems.join('\n');
    assert.match(second, /^steps\[1\] \(second\): effects\[0\]: result\.count: expected 5, got 2/m);
    assert.match(second, /^steps\[1\] \(second\): metrics\[0\]: not expected, got \{"name":"calls"/m);
    assert.match(run.results[2]!.problems.join(), /cases\[2\]\.expect: a case with steps has its expectations in each step/);
  });

  test('test takes several folders, selects cases with --grep, and reports as node --test does', async () => {
    const one = probeFolder('report-one', [
      { name: 'plain request', expect: { outcome: 'continue' } },
      { name: 'counted request', grants: { counters: true }, request: { headers: { 'x-user': 'u' } }, expect: { outcome: 'continue' } },
    ]);
    const two = probeFolder('report-two', [
      { name: 'plain request fails', expect: { outcome: 'respond' } },
      { name: 'counted request again', grants: { counters: true }, request: { headers: { 'x-user': 'u' } }, expect: { outcome: 'continue' } },
    ]);
    const all = capture();
    assert.equal(await runCli(['test', one, two], all.io), 1);
    const text = all.out.join('\n');
    assert.match(text, /^TAP version 13$/m);
    assert.match(text, /^ok 1 - probe: plain request # \d+ ms$/m);
    assert.match(text, /^not ok 3 - probe: plain request fails\n {2}---\n {2}problems:\n {4}- "outcome: expected respond, got continue"\n {2}\.\.\.$/m);
    assert.deepEqual(all.out.slice(-5, -1), ['1..4', '# tests 4', '# pass 3', '# fail 1']);
    assert.match(all.out.at(-1)!, /^# duration_ms \d+$/);

    const counted = capture();
    assert.equal(await runCli(['test', one, two, '--grep', '^counted'], counted.io), 0);
    assert.deepEqual(counted.out.filter((l) => /^(not )?ok /.test(l)).map((l) => l.replace(/ # \d+ ms$/, '')), ['ok 1 - probe: counted request', 'ok 2 - probe: counted request again']);
    assert.ok(counted.out.includes('# skipped 2 (not matching --grep ^counted)'), counted.out.join('\n'));

    const none = capture();
    assert.equal(await runCli(['test', one, '--grep', 'nothing like it'], none.io), 1);
    assert.match(none.err.join('\n'), /no case matches --grep nothing like it/);
    const bad = capture();
    assert.equal(await runCli(['test', one, '--grep', '('], bad.io), 2);
    assert.match(bad.err.join('\n'), /--grep "\(" is not a regular expression/);
  });
});

describe('a policy that declares itself deterministic', () => {
  function folder(name: string, source: string): string {
    const dir = join(work, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'policy.ts'), source);
    writeFileSync(join(dir, 'policy.json'), JSON.stringify({ name, version: '1.0.0', deterministic: true }));
    writeFileSync(join(dir, 'policy.test.json'), JSON.stringify({ cases: [{ name: 'a call', request: { headers: { 'x-in': 'a' } }, expect: { outcome: 'continue' } }] }));
    return dir;
  }

  test('each case is made again and replayed, then run again: a policy that keeps a count between calls fails it, naming what changed', async () => {
    const counting = folder(
      'counts-calls',
      ['import { request, CONTINUE } from "@gatehouse/policy-sdk";', 'let calls = 0;', 'export function on_inbound(): i32 {', '  calls++;', '  request.setHeader("x-calls", calls.toString());', '  return CONTINUE;', '}', ''].join('\n'),
    );
    const run = await runPolicyTests(counting);
    assert.equal(run.failed, 1);
    assert.match(
      run.results[0]!.problems.join('\n'),
      /"deterministic": true in policy\.json, but the same call made again changed request\.headers to .*"x-calls",\["3"\].*, where the first call changed it to .*"x-calls",\["2"\]/,
    );
  });

  test('a policy whose changes follow from what it reads passes', async () => {
    const echoing = folder(
      'echoes',
      ['import { request, CONTINUE } from "@gatehouse/policy-sdk";', 'export function on_inbound(): i32 {', '  const v = request.header("x-in");', '  if (v !== null) request.setHeader("x-out", v);', '  return CONTINUE;', '}', ''].join('\n'),
    );
    const run = await runPolicyTests(echoing);
    assert.deepEqual(run.results[0]!.problems, []);
  });
});

describe('the format\'s documentation', () => {
  for (const page of ['sdk/README.md', 'docs/testing.md']) {
    test(`${page} carries the table generated from the runner's format (npm run docs:test-format rewrites it)`, () => {
      const text = readFileSync(join(repoRoot(), page), 'utf8');
      const start = text.indexOf(FORMAT_TABLE_START);
      const end = text.indexOf(FORMAT_TABLE_END);
      assert.ok(start >= 0 && end > start, `${page} has the generated table between its markers`);
      assert.equal(text.slice(start, end + FORMAT_TABLE_END.length), caseFormatMarkdown(), `${page}: the table differs from the format: run npm run docs:test-format`);
    });
  }

  test('the documented keys are the keys the runner accepts, and none other', () => {
    const documented = new Set(formatRows().map((r) => r.path));
    for (const key of ['expect.request.headers', 'request.backendUrl', 'steps[]', 'expect.effects[].result', 'namedValues.<name>.secret']) {
      assert.ok(documented.has(key), `${key} is documented`);
    }
    // Every documented top-level key is accepted; one that is not documented is refused.
    const top = [...documented].filter((k) => !/[.[]/.test(k));
    assert.deepEqual(checkFormat(CASE, Object.fromEntries(top.map((k) => [k, undefined])), 'c').filter((p) => p.message.startsWith('unknown')), []);
    assert.match(checkFormat(CASE, { undocumented: 1 }, 'c')[0]!.message, /unknown key "undocumented"/);
  });
});
