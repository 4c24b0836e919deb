// send-request, send-one-way-request, retry and wait without a gateway process: what refuses a document (each problem
// with its file, line and path), APIM's retry intervals, and what expressions may see of them. The gateway test
// (outbound-gateway.test.ts) sends the calls.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { RepositoryPolicySources } from '../runtime/config/repository-policies.ts';
import { compileExpression, type Expression } from '../runtime/expressions/cel.ts';
import { runSteps, type ChainStep } from '../runtime/pipeline/chain.ts';
import { Retry, retryDelayMs } from '../runtime/pipeline/steps.ts';
import { makeExchange } from './support/policies.ts';
import { bindProblems as bindProblemsWith, messageAt, problemsOf } from './support/config-problems.ts';

const policies = new RepositoryPolicySources(join(repoRoot(), 'policies'));

const bindProblems = (text: string) => bindProblemsWith(text, policies);

/** A document with one API whose inbound chain is `inbound` (YAML, indented for the list); entry i starts on line 9. */
const doc = (inbound: string, onError = '') => `version: 1
apis:
  - id: shop
    pathPrefix: /shop
    backend: { url: "http://127.0.0.1:1" }
    policies:
${onError}
      inbound:
${inbound}`;

describe('send-request, retry and wait that refuse a document', () => {
  test('the schema: required settings, bounds of count, timeout and maxResponseBytes, what wait holds', () => {
    const problems = problemsOf(
      doc(`        - send-request: { url: "http://a.example/", timeout: 31 }
        - send-request: { url: "http://a.example/", responseVariable: r, maxResponseBytes: 2000000 }
        - retry: { condition: "true", count: 51, policies: [{ policy: set-header, config: { name: a, value: b } }] }
        - wait: { for: some, policies: [] }
        - send-one-way-request: { url: "http://a.example/", responseVariable: r }
`),
    );
    assert.match(messageAt(problems, 'gw.yaml:9: apis[0].policies.inbound[0].send-request.responseVariable'), /is required/);
    assert.match(messageAt(problems, 'gw.yaml:9: apis[0].policies.inbound[0].send-request.timeout'), /30/);
    assert.match(messageAt(problems, 'gw.yaml:10: apis[0].policies.inbound[1].send-request.maxResponseBytes'), /1048576/);
    assert.match(messageAt(problems, 'gw.yaml:11: apis[0].policies.inbound[2].retry.count'), /50/);
    assert.match(messageAt(problems, 'gw.yaml:12: apis[0].policies.inbound[3].wait.for'), /all|any/);
    assert.match(messageAt(problems, 'gw.yaml:13: apis[0].policies.inbound[4].send-one-way-request.responseVariable'), /unknown property/);
  });

  test('expressions, grants, a URL that is not one, a wait around anything but send-requests, maxInterval alone', async () => {
    const problems = await bindProblems(
      doc(
        `        - send-request: { url: { expr: "request.path +" }, responseVariable: r }
        - send-request: { url: "ftp://files.example/", responseVariable: r }
          grants: { counters: true, http: { allowedHosts: ["*:*"] } }
        - wait: { policies: [{ policy: set-header, config: { name: a, value: b } }] }
        - retry: { condition: "responses.r.status", count: 2, maxInterval: 5, policies: [{ set-variable: { name: a, value: b } }] }
        - send-request: { url: "http://a.example/", responseVariable: r }
          config: {}
        - set-variable: { name: e, value: { expr: "lastError.reason" } }
`,
        `      on-error:
        - set-variable: { name: e, value: { expr: "lastError.reason + lastError.policy + lastError.source + lastError.message + string(lastError.status)" } }`,
      ),
    );
    assert.match(messageAt(problems, 'gw.yaml:10: apis[0].policies.inbound[0].send-request.url.expr'), /^CEL syntax error/);
    assert.match(messageAt(problems, 'gw.yaml:11: apis[0].policies.inbound[1].send-request.url'), /"ftp:\/\/files.example\/" is not an absolute http\(s\) URL/);
    assert.match(messageAt(problems, 'gw.yaml:12: apis[0].policies.inbound[1].grants.counters'), /a send-request takes the http grant only/);
    assert.match(messageAt(problems, 'gw.yaml:12: apis[0].policies.inbound[1].grants'), /has the port "\*"/);
    assert.match(messageAt(problems, 'gw.yaml:13: apis[0].policies.inbound[2].wait.policies[0]'), /wait runs send-request and send-one-way-request entries side by side/);
    const retry = messageAt(problems, 'gw.yaml:14: apis[0].policies.inbound[3].retry.condition');
    assert.match(retry, /gives int; a condition must give bool/);
    assert.match(messageAt(problems, 'gw.yaml:14: apis[0].policies.inbound[3].retry.maxInterval'), /goes with delta/);
    assert.match(messageAt(problems, 'gw.yaml:15: apis[0].policies.inbound[4]'), /config belong to a policy; send-request has none/);
    assert.match(messageAt(problems, 'gw.yaml:17: apis[0].policies.inbound[5].set-variable.value.expr'), /reads lastError, which exists in on-error only \(this is inbound\)/);
    assert.ok(!problems.some((p) => p.where.includes('on-error')), 'lastError is seen in on-error');
  });
});

describe('set-body and trace that refuse a document', () => {
  test('a template that reads a file, one that does not parse, one too long, an expression as a template', async () => {
    const long = 'x'.repeat(64 * 1024 + 1);
    const problems = await bindProblems(
      doc(`        - set-body: { template: liquid, value: "{% include 'secrets.liquid' %}" }
        - set-body: { template: liquid, value: "{% if %}" }
        - set-body: { template: liquid, value: "${long}" }
        - set-body: { template: liquid, value: { expr: "'a'" } }
        - trace: { source: s, message: { expr: "1 +" }, metadata: { m: { expr: "request.nope" } } }
`),
    );
    assert.match(messageAt(problems, 'gw.yaml:9: apis[0].policies.inbound[0].set-body.value'), /the include tag reads another template from a file/);
    assert.match(messageAt(problems, 'gw.yaml:10: apis[0].policies.inbound[1].set-body.value'), /^Liquid: /);
    assert.match(messageAt(problems, 'gw.yaml:11: apis[0].policies.inbound[2].set-body.value'), /the template is 65537 characters long; at most 65536/);
    assert.match(messageAt(problems, 'gw.yaml:12: apis[0].policies.inbound[3].set-body.value'), /a Liquid template is text, not an expression/);
    assert.match(messageAt(problems, 'gw.yaml:13: apis[0].policies.inbound[4].trace.message.expr'), /^CEL syntax error/);
    assert.match(messageAt(problems, 'gw.yaml:13: apis[0].policies.inbound[4].trace.metadata.m.expr'), /^CEL type error/);
  });
});

describe("retry's intervals, as APIM defines them", () => {
  const timing = (intervalMs: number, deltaMs: number | null, maxIntervalMs: number | null, firstFastRetry = false) => ({
    intervalMs,
    deltaMs,
    maxIntervalMs,
    firstFastRetry,
  });
  const waits = (t: ReturnType<typeof timing>, n: number) => Array.from({ length: n }, (_, i) => retryDelayMs(t, i + 1));

  test('fixed: interval alone', () => {
    assert.deepEqual(waits(timing(1000, null, null), 4), [1000, 1000, 1000, 1000]);
  });

  test('linear: interval and delta', () => {
    assert.deepEqual(waits(timing(1000, 500, null), 4), [1000, 1500, 2000, 2500]);
  });

  test('exponential: interval, delta and maxInterval, capped by maxInterval', () => {
    assert.deepEqual(waits(timing(100, 1000, 5000), 5), [100, 1100, 3100, 5000, 5000]);
  });

  test('firstFastRetry: the first retry at once, then the intervals from the start', () => {
    assert.deepEqual(waits(timing(1000, 500, null, true), 4), [0, 1000, 1500, 2000]);
  });
});

describe('retry bounds, on a real exchange', () => {
  /** A step that counts its runs in a variable, as set-variable would, and answers when told to. */
  const counting = (answerAt = Infinity): ChainStep => ({
    id: 'count',
    failOpen: false,
    wallMs: () => performance.now(),
    runNow(_phase, exchange) {
      const n = Number(exchange.variables.get('runs') ?? '0') + 1;
      exchange.variables.set('runs', String(n));
      if (n >= answerAt) exchange.responded = true;
      return undefined;
    },
  });
  const condition = (text: string) => compileExpression(text, 'condition', { phase: 'inbound', namedValues: new Map(), secretNames: new Set() }) as Expression;
  const timing = { intervalMs: 0, deltaMs: null, maxIntervalMs: null, firstFastRetry: false };
  const run = async (retry: Retry) => {
    const exchange = makeExchange();
    await runSteps('inbound', [retry], exchange, {});
    return Number(exchange.variables.get('runs'));
  };

  test('the condition decides, the count bounds', async () => {
    assert.equal(await run(new Retry('r', condition('true'), 3, timing, [counting()], () => performance.now())), 4);
    assert.equal(await run(new Retry('r', condition("variables.runs != '2'"), 10, timing, [counting()], () => performance.now())), 2);
    assert.equal(await run(new Retry('r', condition('false'), 10, timing, [counting()], () => performance.now())), 1);
  });

  test('hostile: a condition that always holds stops at the total time, whatever the count', async () => {
    const waits = { ...timing, intervalMs: 40 };
    const runs = await run(new Retry('r', condition('true'), 50, waits, [counting()], () => performance.now(), false, 150));
    assert.ok(runs >= 2 && runs <= 4, `${runs} runs in 150 ms with 40 ms waits`);
  });

  test('a policy inside that answers ends the retry', async () => {
    assert.equal(await run(new Retry('r', condition('true'), 10, timing, [counting(2)], () => performance.now())), 2);
  });
});
