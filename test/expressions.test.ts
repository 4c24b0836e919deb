// CEL expressions in configurations: what refuses a document (syntax, types, scope, secrets, cost, patterns,
// fragments), each problem with its file, line and path; what an expression sees of an exchange; a failure at run time
// as a policy failure; and the bounds that keep an operator's careless (or hostile) expression from stalling the
// gateway. Documents are bound with the real built-in policies; chains run over real exchanges.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { prepareDocument } from '../runtime/config/prepare-document.ts';
import { RepositoryPolicySources } from '../runtime/config/repository-policies.ts';
import { compileExpression, Expression } from '../runtime/expressions/cel.ts';
import { INPUT_BOUND } from '../runtime/expressions/cost.ts';
import { MAX_FRAGMENT_DEPTH } from '../runtime/config/fragments.ts';
import { parseGatewayDocument } from '../runtime/config/parse-document.ts';
import { runChain, runSteps, stackScopes } from '../runtime/pipeline/chain.ts';
import { PolicyFailure } from '../runtime/policy-host/index.ts';
import { DocumentValidator } from '../runtime/control-plane/validation.ts';
import { processClocks } from '../runtime/adapters/process-clocks.ts';
import { Logger } from '../runtime/telemetry/logger.ts';
import { makeExchange, newHost } from './support/policies.ts';
import { bindProblems as bindProblemsWith, messageAt, problemsOf } from './support/config-problems.ts';

const policies = new RepositoryPolicySources(join(repoRoot(), 'policies'));
const scope = { phase: 'inbound' as const, namedValues: new Map([['region', 'eu']]), secretNames: new Set(['key']) };

/** Parses and binds `text` as gw.yaml: the chains, or the ConfigError. */
async function prepare(text: string) {
  const { host } = newHost();
  return prepareDocument(text, { host, baseDir: repoRoot(), policies, sourceName: 'gw.yaml' });
}

const bindProblems = (text: string) => bindProblemsWith(text, policies);

/** A document with one API whose inbound chain is `inbound` (YAML, indented for the list). */
const doc = (inbound: string, extra = '') => `version: 1
namedValues:
  region: { value: eu }
  key: { value: s3cret-value, secret: true }
${extra}apis:
  - id: shop
    pathPrefix: /shop
    backend: { url: "http://127.0.0.1:1" }
    policies:
      inbound:
${inbound}`;

describe('expressions that refuse a document, with file, line and path', () => {
  test('syntax and type errors, results of the wrong type, and what a phase may not see', async () => {
    // Entry i is on lines 11 + 3i to 13 + 3i, its `when` on line 12 + 3i.
    const conditions = [
      'request.method ==',
      "request.methd == 'GET'",
      'request.path',
      'response.status == 200',
      "namedValues.key == 'x' || namedValues.nope == 'y'",
    ];
    const problems = await bindProblems(
      doc(conditions.map((when) => `        - policy: set-header\n          when: ${JSON.stringify(when)}\n          config: { name: x-a, value: "1" }\n`).join('')),
    );
    assert.match(messageAt(problems, 'gw.yaml:12: apis[0].policies.inbound[0].when'), /^CEL syntax error: Unexpected token: EOF \(at column 18\)$/);
    assert.match(messageAt(problems, 'gw.yaml:15: apis[0].policies.inbound[1].when'), /^CEL type error: No such key: methd \(at column 9\)$/);
    assert.match(messageAt(problems, 'gw.yaml:18: apis[0].policies.inbound[2].when'), /gives string; a condition must give bool/);
    assert.match(messageAt(problems, 'gw.yaml:21: apis[0].policies.inbound[3].when'), /reads response, which exists in outbound and on-error only \(this is inbound\)/);
    const secret = messageAt(problems, 'gw.yaml:24: apis[0].policies.inbound[4].when');
    assert.match(secret, /named value "key", a secret/);
    assert.match(secret, /named value "nope", which is not defined/);
    assert.ok(!problems.some((p) => p.message.includes('s3cret-value')), 'the secret is never shown');
  });

  test('computed values: only where the policy takes them, of the type it takes', async () => {
    const problems = await bindProblems(
      doc(`        - policy: check-header
          config: { name: { expr: "'x-key'" }, values: ["a"] }
        - policy: set-header
          config: { name: x-a, value: { expr: "request.headers" } }
        - policy: return-response
          config: { status: { expr: "'teapot'" } }
        - set-variable: { name: v, value: { expr: "1 +" } }
`),
    );
    assert.match(messageAt(problems, 'gw.yaml:12: apis[0].policies.inbound[0].config.name'), /policy check-header does not take an expression here \(it takes none\)/);
    assert.match(messageAt(problems, 'gw.yaml:14: apis[0].policies.inbound[1].config.value.expr'), /gives map<string, string>; a value here must give string or int/);
    assert.match(messageAt(problems, 'gw.yaml:16: apis[0].policies.inbound[2].config.status.expr'), /gives string; a value here must give int/);
    assert.match(messageAt(problems, 'gw.yaml:17: apis[0].policies.inbound[3].set-variable.value.expr'), /^CEL syntax error/);
  });

  test('the schema: an entry needs one kind, choose branches need when and policies, names are checked', () => {
    const problems = problemsOf(
      doc(`        - policy: set-header
          choose: [{ when: "true", policies: [] }]
        - choose: [{ policies: [] }]
        - set-variable: { name: "bad name", value: { expr: "1", extra: 2 } }
        - when: "true"
`),
    );
    assert.match(messageAt(problems, 'gw.yaml:11: apis[0].policies.inbound[0]'), /has "policy" and "choose": give exactly one of/);
    assert.equal(messageAt(problems, 'gw.yaml:13: apis[0].policies.inbound[1].choose[0].when'), 'is required');
    assert.match(messageAt(problems, 'gw.yaml:14: apis[0].policies.inbound[2].set-variable.name'), /letters, digits/);
    assert.match(messageAt(problems, 'gw.yaml:14: apis[0].policies.inbound[2].set-variable.value'), /text as it is, or \{expr/);
    assert.match(messageAt(problems, 'gw.yaml:15: apis[0].policies.inbound[3]'), /needs one of "policy", "module", "source", "choose", "set-variable", "include-fragment", "send-request", "send-one-way-request", "retry", "wait", "set-body", "trace", "cache-lookup", "cache-store", "cache-lookup-value", "cache-store-value" or "cache-remove-value"/);
  });

  test('fragments: a missing one and a cycle are the document\'s problems, at the include', () => {
    const problems = problemsOf(
      doc(
        `        - include-fragment: a
        - include-fragment: nowhere
`,
        `fragments:
  a:
    - include-fragment: b
  b:
    - policy: set-header
      config: { name: x-b, value: "1" }
    - choose:
        - when: "true"
          policies:
            - include-fragment: a
`,
      ),
    );
    assert.match(messageAt(problems, 'gw.yaml:14: fragments.b[1].choose[0].policies[0].include-fragment'), /fragment "a" includes itself: a -> b -> a/);
    assert.match(messageAt(problems, 'gw.yaml:22: apis[0].policies.inbound[1].include-fragment'), /no fragment "nowhere" \(fragments: a, b\)/);
  });

  test('fragments that multiply (each includes the next twice) are refused before anything is bound', () => {
    const levels = 20;
    let fragments = 'fragments:\n';
    for (let i = 0; i < levels; i++) {
      fragments += `  f${i}:\n`;
      fragments += i === levels - 1 ? '    - policy: set-header\n      config: { name: x-a, value: "1" }\n' : `    - include-fragment: f${i + 1}\n    - include-fragment: f${i + 1}\n`;
    }
    const started = performance.now();
    const problems = problemsOf(doc('        - include-fragment: f0\n', fragments));
    assert.match(messageAt(problems, 'gw.yaml:71: apis[0].policies.inbound'), /expand to more than 10000 entries/);
    assert.ok(performance.now() - started < 2000);
  });

  test('fragments nested thousands deep through includes are refused at the deepest, without exhausting the stack', () => {
    const chain = (n: number) => {
      let fragments = 'fragments:\n';
      for (let i = 0; i < n; i++) fragments += `  f${i}:\n` + (i === n - 1 ? '    - policy: cors\n' : `    - include-fragment: f${i + 1}\n`);
      return doc('        - include-fragment: f0\n', fragments);
    };
    assert.doesNotThrow(() => parseGatewayDocument(chain(MAX_FRAGMENT_DEPTH), 'gw.yaml'));
    const deep = problemsOf(chain(MAX_FRAGMENT_DEPTH + 1));
    assert.deepEqual(deep, [{ where: 'gw.yaml:6: fragments.f0', message: `fragment "f0" nests fragments ${MAX_FRAGMENT_DEPTH + 1} deep through include-fragment (at most ${MAX_FRAGMENT_DEPTH})` }]);
    // 5,000 deep: a walk that recursed once a fragment would throw RangeError here.
    assert.match(problemsOf(chain(5000))[0]!.message, /fragment "f0" nests fragments 5000 deep through include-fragment/);
  });

  test("a fragment's entry that cannot be bound is reported where it is written, with where it was included", async () => {
    const problems = await bindProblems(
      doc(
        '        - include-fragment: stamp\n        - include-fragment: stamp\n',
        'fragments:\n  stamp:\n    - policy: set-header\n      when: "1 == \'a\'"\n      config: { name: x-a, value: "1" }\n',
      ),
    );
    assert.match(messageAt(problems, 'gw.yaml:8: fragments.stamp[0].when'), /CEL type error: .* \(included at apis\[0\]\.policies\.inbound\[0\]\)$/);
    assert.equal(problems.length, 1, 'reported once, not once for each include');
  });
});

describe('documents that carry expressions and fragments elsewhere', () => {
  test("the control plane's document check (the gateway's own) accepts fragments, choose and conditions, and names a missing fragment", async () => {
    const validator = new DocumentValidator({ policies, logger: new Logger(() => undefined), moduleBytes: () => null, clocks: processClocks });
    try {
      const good = {
        version: 1,
        fragments: { tag: [{ 'set-variable': { name: 'tier', value: { expr: "request.headers[?'x-tier'].orValue('free')" } } }] },
        apis: [
          {
            id: 'shop',
            pathPrefix: '/shop',
            backend: { url: 'http://127.0.0.1:1' },
            policies: {
              inbound: [
                { 'include-fragment': 'tag' },
                { choose: [{ when: "variables.tier == 'gold'", policies: [{ policy: 'set-header', config: { name: 'x-lane', value: 'fast' } }] }] },
              ],
            },
          },
        ],
      };
      assert.deepEqual(await validator.check(good, 'shop'), []);
      const bad = structuredClone(good) as { fragments?: unknown };
      delete bad.fragments;
      assert.deepEqual(await validator.check(bad, 'shop'), [
        { path: ['apis', 0, 'policies', 'inbound', 0, 'include-fragment'], includedAt: null, message: 'no fragment "tag" (the document declares no fragments)' },
      ]);
      // A problem in a fragment's entry names the include it was reached through apart from its message.
      const late = structuredClone(good);
      late.fragments.tag = [{ policy: 'set-header', when: 'response.status == 200', config: { name: 'x-late', value: '1' } }] as never;
      assert.deepEqual(await validator.check(late, 'shop'), [
        {
          path: ['fragments', 'tag', 0, 'when'],
          includedAt: ['apis', 0, 'policies', 'inbound', 0],
          message: 'reads response, which exists in outbound and on-error only (this is inbound)',
        },
      ]);
    } finally {
      await validator.close();
    }
  });

  test('a long expression in a fragment included thousands of times is compiled once', async () => {
    const long = Array.from({ length: 40 }, (_, i) => `request.headers[?'x-h${i}'].orValue('') == 'v${i}'`).join(' || ');
    const includes = Array.from({ length: 3000 }, () => '        - include-fragment: f\n').join('');
    const started = performance.now();
    const { chains } = await prepare(doc(includes, `fragments:\n  f:\n    - set-variable: { name: hit, value: { expr: ${JSON.stringify(`string(${long})`)} } }\n`));
    const ms = performance.now() - started;
    assert.equal(chains.apis.get('shop')!.api.inbound!.length, 3000);
    // One compilation is about a millisecond; 3000 of them would take seconds.
    assert.ok(ms < 3000, `binding took ${ms} ms`);
  });
});

describe('the cost of an expression is bounded before it is accepted', () => {
  const refused = (source: string) => {
    const compiled = compileExpression(source, 'condition', scope);
    assert.ok(Array.isArray(compiled), `accepted: ${source}`);
    return compiled.join(' | ');
  };

  test('nested macros over split strings, doubling through cel.bind, and huge lists are refused with the estimate', () => {
    assert.match(refused("request.path.split('').map(c, request.path.split('')).size() > 0"), /may cost too much: estimated \d+ steps and values of \d+/);
    // Each binding doubles the last: 16 KiB becomes 4 MiB.
    let doubled = 'v8.size() > 0';
    for (let i = 8; i > 0; i--) doubled = `cel.bind(v${i}, v${i - 1} + v${i - 1}, ${doubled})`;
    assert.match(refused(`cel.bind(v0, request.path, ${doubled})`), /may cost too much: estimated \d+ steps and values of 4194\d+ characters/);
    assert.match(refused("[1].all(a, [1].all(b, [1].all(c, [1].all(d, true))))"), /nests macros more than 3 deep/);
    assert.match(refused(`[${Array.from({ length: 300 }, (_, i) => i).join(',')}].size() > 0`), /maxListElements/);
    assert.match(refused(`${'('.repeat(40)}true${')'.repeat(40)}`), /maxDepth/);
    assert.match(refused(`'${'a'.repeat(5000)}' == ''`), /at most 4096/);
  });

  test('patterns: literal only, no nested quantifiers, no back-references', () => {
    assert.match(refused("request.path.matches('^(a+)+$')"), /repeats a group that itself repeats/);
    assert.match(refused("request.path.matches('^(a|aa)*b$')"), /repeats a group that itself repeats/);
    assert.match(refused("request.path.matches('(a)\\\\1')"), /back-reference/);
    assert.match(refused('request.path.matches(request.headers.p)'), /takes a literal pattern/);
    assert.ok(compileExpression("request.path.matches('^/shop/(orders|items)?/[0-9]+$')", 'condition', scope) instanceof Expression);
  });

  test('what is accepted runs in bounded time on the largest inputs a client can send', () => {
    const accepted = [
      "request.path.split('/').exists(s, s == 'admin')",
      "request.headers.exists(k, k.startsWith('x-debug-') && k.endsWith('-on'))",
      "request.path.matches('^/shop/[a-z]+(/[0-9]+)?$') || request.query.exists(k, k.size() > 10)",
    ].map((source) => {
      const compiled = compileExpression(source, 'condition', scope);
      assert.ok(compiled instanceof Expression, `${source}: ${String(compiled)}`);
      return compiled;
    });
    const big = 'a/'.repeat(INPUT_BOUND / 2);
    const headers: Record<string, string> = {};
    for (let i = 0; i < 200; i++) headers[`x-h${i}`] = 'v'.repeat(64);
    const exchange = makeExchange({ path: `/${big}`, query: Array.from({ length: 500 }, (_, i) => `k${i}=v`).join('&'), headers });
    for (const expression of accepted) {
      const started = performance.now();
      assert.equal(expression.holds(exchange), false);
      // About 1 ms each on this machine; the bound leaves room for a busy one.
      assert.ok(performance.now() - started < 200, `${expression.source} took ${performance.now() - started} ms`);
    }
  });
});

describe('evaluating expressions', () => {
  test('a map an expression names many times is built once an evaluation, and the query parsed once a request', () => {
    const source = Array.from({ length: 40 }, (_, i) => `request.query[?'p${i}'].orValue('') == 'x'`).join(' || ');
    const expression = compileExpression(source, 'condition', scope);
    assert.ok(expression instanceof Expression, String(expression));
    const exchange = makeExchange({ query: Array.from({ length: 3000 }, (_, i) => `k${i}=v`).join('&') });
    assert.equal(expression.holds(exchange), false);
    const started = performance.now();
    for (let i = 0; i < 20; i++) expression.holds(exchange);
    // Parsing the 3,000 parameters for each of the 40 reads took about 100 ms an evaluation.
    assert.ok(performance.now() - started < 200, `20 evaluations took ${performance.now() - started} ms`);
    exchange.request.query = 'p39=x';
    assert.equal(expression.holds(exchange), true, 'a query a policy changed is read again');
  });


  test('what an expression sees: request, route, variables, JWT claims, named values, api and operation', () => {
    const exchange = makeExchange({ method: 'PUT', path: '/shop/orders/7', query: 'a=1&a=2', headers: { 'x-tier': 'gold', accept: 'a' } });
    exchange.request.headers.set('accept', ['a', 'b']);
    exchange.variables.set('jwt-claims', JSON.stringify({ sub: 'alice', roles: ['admin'], exp: 1 }));
    exchange.routeParams.set('id', '7');
    const text = (source: string) => {
      const compiled = compileExpression(source, 'text', scope);
      assert.ok(compiled instanceof Expression, `${source}: ${String(compiled)}`);
      return compiled.text(exchange);
    };
    assert.equal(text("request.method + ' ' + request.path"), 'PUT /shop/orders/7');
    assert.equal(text('request.query.a'), '1,2');
    assert.equal(text("request.headers['accept']"), 'a, b');
    assert.equal(text("request.headers[?'x-none'].orValue('default')"), 'default');
    assert.equal(text("route.id + '/' + api + '/' + operation"), '7/test-api/test-op');
    assert.equal(text("jwt.sub + ('admin' in jwt.roles ? ' admin' : '')"), 'alice admin');
    assert.equal(text('namedValues.region'), 'eu');
    assert.equal(text('request.clientAddress'), '127.0.0.1');
    assert.equal(text('size(request.headers) > 1'), 'true');
    assert.equal(text('request.path.size() * 2'), '28');
  });

  test('a failure at run time is the entry\'s policy failure; fail-open skips it; the chain stays synchronous', async () => {
    const { chains } = await prepare(
      doc(`        - policy: set-header
          when: "request.headers['x-missing'] == 'a'"
          failOpen: true
          config: { name: x-a, value: "1" }
        - policy: set-header
          when: "request.method == 'GET'"
          config: { name: x-get, value: "1" }
        - policy: set-header
          when: "int(request.headers['x-n']) > 1"
          config: { name: x-n, value: "1" }
`),
    );
    const inbound = chains.apis.get('shop')!.api.inbound!;
    const ok = makeExchange({ headers: { 'x-n': '2' } });
    // Every call completes synchronously: the phase answers a boolean, not a promise.
    assert.equal(runSteps('inbound', inbound, ok, {}), false);
    assert.deepEqual(ok.timings.map((t) => t.outcome), ['failed-open', 'continue', 'continue']);
    assert.equal(ok.request.headers.get('x-get')?.[0], '1');

    const bad = makeExchange({ method: 'POST', headers: { 'x-n': 'many' } });
    assert.throws(
      () => runSteps('inbound', inbound, bad, {}),
      (err: unknown) => err instanceof PolicyFailure && err.reason === 'expression' && err.policy === 'api:shop/inbound/2' && /int\(\)|string|many/i.test(err.message),
    );
    assert.deepEqual(bad.timings.map((t) => t.outcome), ['failed-open', 'skipped', 'failed']);

    // Through the whole chain: on-error's default answer names the entry and the reason.
    const exchange = makeExchange({ headers: { 'x-n': 'many' } });
    await runChain(stackScopes(chains.apis.get('shop')!.api), exchange, () => assert.fail('the backend is not called'));
    assert.equal(exchange.response.status, 500);
    assert.equal(exchange.error?.reason, 'expression');
    assert.match(new TextDecoder().decode(exchange.response.body!), /policy api:shop\/inbound\/2 failed \(expression\)/);
  });

  test('set-variable stores text; a value longer than a variable may hold fails the entry', async () => {
    const { chains } = await prepare(
      doc(`        - set-variable: { name: plain, value: "as written" }
        - set-variable: { name: n, value: { expr: "request.path.size() + 1" } }
        - set-variable: { name: big, value: { expr: "request.path + request.path" } }
`),
    );
    const inbound = chains.apis.get('shop')!.api.inbound!;
    const small = makeExchange({ path: '/abc' });
    runSteps('inbound', inbound, small, {});
    assert.deepEqual([...small.variables], [['plain', 'as written'], ['n', '5'], ['big', '/abc/abc']]);
    const large = makeExchange({ path: `/${'a'.repeat(9000)}` });
    assert.throws(() => runSteps('inbound', inbound, large, {}), /variable "big" is 18002 characters long; a variable may hold at most 16384/);
  });
});
