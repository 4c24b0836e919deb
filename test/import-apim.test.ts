// `gatehouse import-apim`: APIM policy documents written as APIM's documentation writes them (test/fixtures/apim/),
// run through the real command, then the imported document served by a real gateway in front of a real backend; and
// documents with what cannot be translated, listed with their lines (exit 1, or 0 with --partial).

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { parse, stringify } from 'yaml';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { prepareDocument } from '../runtime/config/prepare-document.ts';
import { RepositoryPolicySources } from '../runtime/config/repository-policies.ts';
import { translateExpression } from '../runtime/operator-cli/apim/expressions.ts';
import { runGatehouse } from './support/gatehouse-cli.ts';
import { newHost } from './support/policies.ts';
import { send as sendTo, startRecordingBackend, type RecordingBackend } from './support/requests.ts';
import { startGatewayProcess, stopAll, tempDir, type GatewayProcess } from './support/gateway-process.ts';

const fixture = (name: string) => join(repoRoot(), 'test', 'fixtures', 'apim', name);

describe('APIM expressions to CEL', () => {
  test('the common forms become CEL', () => {
    const cases: [string, string][] = [
      ['@(context.Request.Method)', 'request.method'],
      ['@(context.Request.Headers.GetValueOrDefault("X-Tier","free"))', 'request.headers[?"x-tier"].orValue("free")'],
      ['@(context.Request.Headers.GetValueOrDefault("Accept"))', 'request.headers[?"accept"].orValue("")'],
      ['@(context.Request.Url.Query.GetValueOrDefault("page", "1"))', 'request.query[?"page"].orValue("1")'],
      ['@((string)context.Variables["tier"])', 'variables["tier"]'],
      ['@(context.Variables.GetValueOrDefault<string>("tier", "none") == "gold")', 'variables[?"tier"].orValue("none") == "gold"'],
      ['@(context.Request.IpAddress)', 'request.clientAddress'],
      ['@(context.Response.StatusCode >= 500)', 'response.status >= 500'],
      ['@(context.Response.StatusCode.ToString())', 'string(response.status)'],
      ['@(context.Request.Headers.GetValueOrDefault("Authorization","").AsJwt()?.Claims.GetValueOrDefault("sub", ""))', 'jwt[?"sub"].orValue("")'],
      ['@(context.Request.Headers.GetValueOrDefault("Authorization","").Split(\' \').Last().AsJwt()?.Subject)', 'jwt[?"sub"].orValue("")'],
      ['@(context.Subscription.Id)', 'variables[?"subscription-id"].orValue("")'],
      ['@(context.Request.Headers.ContainsKey("X-Debug") && !context.Variables.ContainsKey("x"))', '"x-debug" in request.headers && !"x" in variables'],
      ['@(context.Request.Url.Path.StartsWith("/internal"))', 'request.path.startsWith("/internal")'],
      ['@(context.Api.Id + "/" + context.Operation.Id)', 'api + "/" + operation'],
      ['@(((IResponse)context.Variables["tokenResponse"]).StatusCode >= 500)', 'responses["tokenResponse"].status >= 500'],
      ['@(((IResponse)context.Variables["r"]).Body.As<string>())', 'responses["r"].body'],
    ];
    for (const [apim, cel] of cases) assert.deepEqual(translateExpression(apim), { cel }, apim);
  });

  test('what has no mapping is refused with what it was, never passed through', () => {
    for (const apim of ['@(context.Request.Body.As<string>())', '@(DateTime.UtcNow.ToString())', '@(context.User.Email)', '@{ return "x"; }']) {
      const out = translateExpression(apim);
      assert.ok('problem' in out, apim);
    }
    assert.match((translateExpression('@(context.Deployment.Region)') as { problem: string }).problem, /no CEL mapping for "context.Deployment.Region"/);
  });
});

/**
 * `gatehouse import-apim <file> [args]`, which must fail (exit 1): its output, the lines of its standard error, and
 * `at(line, pattern)`, which asserts that a line of standard error names that line of the file and matches.
 */
async function importFailing(file: string, args: string[] = []) {
  const run = await runGatehouse(['import-apim', file, ...args]);
  assert.equal(run.code, 1, run.stderr);
  const lines = run.stderr.trim().split('\n');
  const at = (line: number, pattern: RegExp) => assert.ok(lines.some((l) => l.startsWith(`${file}:${line}: `) && pattern.test(l)), `${line} ${pattern}\n${run.stderr}`);
  return { run, lines, at };
}

describe('gatehouse import-apim', () => {
  const policies = new RepositoryPolicySources(join(repoRoot(), 'policies'));

  test('every policy of the operation document is translated, and the result is a document a gateway accepts', async () => {
    const run = await runGatehouse(['import-apim', fixture('operation-policy.xml'), '--api', 'orders', '--path', '/orders', '--backend', 'http://127.0.0.1:9']);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stderr, /operation-policy\.xml:/, 'nothing left out, nothing noted');
    const doc = parse(run.stdout) as { apis: { policies: Record<string, Record<string, unknown>[]> }[] };
    const inbound = doc.apis[0]!.policies.inbound!;
    const names = inbound.map((e) => (e.policy as string | undefined) ?? Object.keys(e)[0]);
    assert.deepEqual(names, [
      'validate-jwt',
      'rate-limit',
      'quota-by-key',
      'limit-concurrency',
      'cache-lookup-value',
      'cache-store-value',
      'cache-remove-value',
      'set-method',
      'rewrite-uri',
      'set-backend-service',
      'find-and-replace',
      'json-to-xml',
      'choose',
    ]);
    assert.deepEqual(inbound[0]!.config, {
      header: 'authorization',
      failedValidationHttpCode: 401,
      requireExpirationTime: true,
      clockSkewSeconds: 30,
      openidConfig: ['https://login.contoso.com/tenant/v2.0/.well-known/openid-configuration'],
      keys: [{ kid: 'hmac-1', secret: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NQ==' }],
      audiences: ['api://orders'],
      issuers: ['https://login.contoso.com/tenant/v2.0'],
      requiredClaims: [{ name: 'scp', values: ['orders.read', 'orders.write'] }],
    });
    assert.deepEqual(inbound[2]!.config, { calls: 10000, bandwidth: 40000, renewalPeriod: 3600, counterKey: { from: 'client-address' } });
    assert.deepEqual(inbound[3]!.config, { maxCount: 4, counterKey: { from: 'claim', name: 'sub' } });
    assert.deepEqual(inbound[4], { 'cache-lookup-value': { key: { expr: '"token-" + request.headers[?"x-tenant"].orValue("")' }, variableName: 'cachedToken', defaultValue: 'none' } });
    const outbound = doc.apis[0]!.policies.outbound!;
    assert.deepEqual(outbound[1]!.config, { name: 'orders', value: 1, dimensions: [{ name: 'API_ID', from: 'api' }, { name: 'tenant', from: 'header', key: 'x-tenant' }] });
    assert.deepEqual(inbound[12], {
      choose: [{ when: '"x-mock" in request.headers && "tier" in variables', policies: [{ policy: 'mock-response', config: { status: 503, contentType: 'application/json' } }] }],
    });
    assert.deepEqual(outbound[2], { policy: 'set-status', config: { code: 202 } });
    // Bound as a gateway binds it: the schema, every policy's configuration, every expression.
    await prepareDocument(run.stdout, { host: newHost().host, baseDir: repoRoot(), policies, sourceName: 'imported.yaml' });
  });

  test('what cannot be translated is listed with its line and left out: exit 1, or 0 with --partial', async () => {
    const file = fixture('untranslatable.xml');
    const { run, lines, at } = await importFailing(file, ['--api', 'x', '--path', '/x', '--backend', 'http://127.0.0.1:9']);
    at(7, /<publish-to-dapr>: no Gatehouse policy for it/);
    at(8, /multi-statement expression/);
    at(9, /attribute foo="bar" of <set-header> is not translated/);
    at(12, /counter-key=.*no CEL mapping|a counter key must be/);
    at(16, /reason="Fine"/);
    at(17, /note: <base \/> is not first in <outbound>/);
    at(13, /fragment shared-auth is included but not given \(--fragment shared-auth=<fragment\.xml>, or --fragments <folder>\): a gateway refuses the document without it/);
    assert.match(lines.at(-1)!, /not translated \(left out\); --partial accepts/);
    const doc = parse(run.stdout) as { apis: { policies: { inbound: unknown[] } }[] };
    assert.deepEqual(doc.apis[0]!.policies.inbound[0], { policy: 'set-header', config: { name: 'X-Kept', existsAction: 'override', value: 'kept' } });
    const partial = await runGatehouse(['import-apim', file, '--partial']);
    assert.equal(partial.code, 0);
    // The chains alone go into a document that may declare the fragment: a note.
    assert.match(partial.stderr, new RegExp(`${file}:13: note: fragment shared-auth is included but not given .*: declare it under fragments: of the document`));
    assert.equal(partial.stdout, run.stdout.slice(run.stdout.indexOf('policies:') + 'policies:\n'.length).replace(/^ {6}/gm, ''));
  });

  test('outbound calls, retry, wait, set-body, trace, authentication-basic, quota and jsonp are translated', async () => {
    const file = fixture('outbound-calls.xml');
    const run = await runGatehouse(['import-apim', file]);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(
      run.stderr.trim().split('\n'),
      [`${file}:29: note: metadata name="Operation Name" is recorded as Operation-Name (Gatehouse's names have no spaces)`],
    );
    const chains = parse(run.stdout) as Record<string, Record<string, unknown>[]>;
    const inbound = chains.inbound!;
    assert.deepEqual(inbound[0], {
      retry: {
        condition: 'responses["tokenResponse"].status >= 500',
        count: 3,
        interval: 1,
        delta: 1,
        maxInterval: 8,
        firstFastRetry: true,
        policies: [
          {
            'send-request': {
              url: 'https://login.contoso.com/oauth2/token',
              mode: 'new',
              method: 'POST',
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              body: { expr: '"grant_type=client_credentials&scope=" + request.headers[?"x-scope"].orValue("read")' },
              timeout: 20,
              responseVariable: 'tokenResponse',
              ignoreError: false,
            },
          },
        ],
      },
    });
    assert.deepEqual(inbound[1], {
      wait: {
        for: 'any',
        policies: [
          { 'send-request': { url: 'https://prices.contoso.com/p', mode: 'new', method: 'GET', timeout: 10, responseVariable: 'prices', ignoreError: true } },
          { 'send-request': { url: { expr: '"https://stock.contoso.com/s/" + route["id"]' }, mode: 'copy', timeout: 20, responseVariable: 'stock' } },
        ],
      },
    });
    assert.deepEqual(inbound[2], { policy: 'authentication-basic', config: { username: 'orders-client', password: '{{orders-backend-password}}' } });
    assert.deepEqual(inbound[3], { policy: 'quota', config: { calls: 10000, bandwidth: 40000, renewalPeriod: 3600 } });
    assert.deepEqual(inbound[4], { trace: { source: 'Orders API', severity: 'information', message: { expr: 'request.method' }, metadata: { 'Operation-Name': 'New-Order' } } });
    assert.deepEqual(inbound[5], { 'set-body': { value: { expr: 'request.headers[?"x-tenant"].orValue("none")' } } });
    assert.deepEqual(chains.outbound, [
      {
        'send-one-way-request': {
          url: 'https://audit.contoso.com/log',
          mode: 'new',
          method: 'POST',
          headers: { 'x-api': { expr: 'api' } },
          body: { expr: 'api + " " + string(response.status)' },
          timeout: 5,
        },
      },
      { policy: 'jsonp', config: { callbackParameterName: 'cb' } },
      { 'set-body': { value: '{"price": {{body.price}}, "tenant": "{{context.Request.Headers["X-Tenant"]}}"}', template: 'liquid' } },
    ]);
    // Bound as a gateway binds it, with the named value the document refers to defined.
    const doc = { version: 1, namedValues: { 'orders-backend-password': { value: 'p4ssw0rd', secret: true } }, apis: [{ id: 'orders', pathPrefix: '/orders', backend: { url: 'http://127.0.0.1:9' }, policies: chains }] };
    await prepareDocument(stringify(doc), { host: newHost().host, baseDir: repoRoot(), policies, sourceName: 'imported.yaml' });
    // A whole gateway document without that named value would be refused: the command says so.
    const whole = await runGatehouse(['import-apim', file, '--api', 'orders', '--path', '/orders', '--backend', 'http://127.0.0.1:9']);
    assert.equal(whole.code, 1);
    assert.match(whole.stderr, /named values orders-backend-password are referred to but not part of the output/);
  });

  test('what these elements carry that Gatehouse cannot express is listed with its line and left out', async () => {
    const file = fixture('calls-untranslatable.xml');
    const { run, lines, at } = await importFailing(file);
    at(4, /timeout="60": Gatehouse allows at most 30 seconds here \(30 used\)/);
    at(6, /<authentication-certificate> inside <send-request> is not translated/);
    at(8, /note: no timeout: APIM waits 60 seconds by default/);
    at(10, /exists-action="skip" on a copied request/);
    at(19, /a second <set-header> for accept: Gatehouse's call sends one value per header \(the first is kept\)/);
    at(23, /response-variable-name is required/);
    at(27, /<choose> inside <wait>: Gatehouse runs only send-request and send-one-way-request/);
    at(35, /<api> inside <quota> is not translated/);
    at(37, /password: the Gatehouse policy takes no expression here/);
    at(38, /no CEL mapping for "DateTime\.UtcNow\.Second"/);
    at(43, /xsi-nil="blank" of <set-body> is not translated/);
    at(43, /multi-statement expression/);
    at(44, /<trace> has no <message>/);
    at(51, /<forward-request> inside <retry>: .*backend\.retry/);
    at(50, /<retry> has no policy Gatehouse runs inside it/);
    at(53, /attribute timeout="60" of <forward-request> is not translated/);
    at(53, /note: <forward-request>: Gatehouse forwards between the backend and outbound phases itself/);
    assert.match(lines.at(-1)!, /15 things not translated \(left out\)/);
    const chains = parse(run.stdout) as { inbound: Record<string, unknown>[]; backend?: unknown };
    assert.equal(chains.backend, undefined, 'forward-request is no entry');
    const kinds = chains.inbound.map((e) => (e.policy as string | undefined) ?? Object.keys(e)[0]);
    assert.deepEqual(kinds, ['send-request', 'send-request', 'send-request', 'wait', 'quota']);
    assert.deepEqual(chains.inbound[0], { 'send-request': { url: 'https://slow.contoso.com/', mode: 'new', timeout: 30, responseVariable: 'slow' } });
    assert.deepEqual(chains.inbound[2], { 'send-request': { url: 'https://twice.contoso.com/', mode: 'new', headers: { accept: 'application/json' }, timeout: 5, responseVariable: 'twice' } });
    assert.deepEqual(chains.inbound[3], { wait: { for: 'all', policies: [{ 'send-one-way-request': { url: 'https://audit.contoso.com/', mode: 'new' } }] } });
  });

  test('validate-parameters, validate-status-code and validate-headers: actions, errors variable and the names let through', async () => {
    const file = fixture('validation-policy.xml');
    const run = await runGatehouse(['import-apim', file]);
    assert.equal(run.code, 0, run.stderr);
    // What the API definition declares is not in the document: each policy says where to add it; <path> is noted.
    const notes = run.stderr.trim().split('\n');
    assert.deepEqual(notes.map((l) => l.slice(0, l.indexOf(': note: ') + 8)), [7, 16, 26, 31].map((n) => `${file}:${n}: note: `));
    assert.match(notes[0]!, /the query parameters and headers of the API definition.*add those the operation declares to query and headers/);
    assert.match(notes[1]!, /<path>: Gatehouse routes path parameters by the operation's URL template/);
    const chains = parse(run.stdout) as Record<string, Record<string, unknown>[]>;
    assert.deepEqual(chains.inbound, [
      {
        policy: 'validate-parameters',
        config: {
          // page and sort are let through; debug's prevent is what Gatehouse does to an undeclared parameter anyway.
          query: [{ name: 'page' }, { name: 'sort' }],
          headers: [{ name: 'X-Tenant' }],
          specifiedParameterAction: 'prevent',
          unspecifiedParameterAction: 'prevent',
          errorsVariable: 'requestParametersValidation',
        },
      },
    ]);
    assert.deepEqual(chains.outbound, [
      { policy: 'validate-status-code', config: { statusCodes: ['200', '404'], unspecifiedStatusCodeAction: 'prevent', errorsVariable: 'responseStatusCodeValidation' } },
      {
        policy: 'validate-headers',
        config: { headers: [{ name: 'X-Version' }], specifiedHeaderAction: 'ignore', unspecifiedHeaderAction: 'prevent', errorsVariable: 'responseHeadersValidation' },
      },
    ]);
    const doc = { version: 1, apis: [{ id: 'orders', pathPrefix: '/orders', backend: { url: 'http://127.0.0.1:9' }, policies: chains }] };
    await prepareDocument(stringify(doc), { host: newHost().host, baseDir: repoRoot(), policies, sourceName: 'imported.yaml' });
  });

  test('what the validation policies carry that Gatehouse cannot express is listed with its line and left out', async () => {
    const file = fixture('validation-untranslatable.xml');
    const { run, lines, at } = await importFailing(file);
    // validate-parameters as APIM's reference writes its example: headers detected while query parameters are prevented.
    at(5, /specified-parameter-action="detect" on <headers>: .*one action for declared query parameters and headers \(prevent, the stricter, is used for both\)/);
    at(5, /unspecified-parameter-action="detect" on <headers>: .*checks undeclared query parameters only/);
    at(6, /action="prevent" for header Authorization: Gatehouse's validate-parameters has no action per header/);
    // validate-status-code as APIM's reference writes its example: every status declared by the API definition.
    at(15, /validate-status-code needs the statuses the operation declares, .* \(left out\)/);
    at(16, /unspecified-status-code-action: Gatehouse takes prevent, detect or ignore here, not an expression/);
    at(18, /action="detect" for status 418: Gatehouse's validate-status-code has no action per status \(here it applies prevent\)/);
    at(19, /code="2XX": not a status from 100 to 599/);
    at(21, /errors-variable-name="response headers": .*validation-errors used/);
    at(22, /action="detect" for header X-Debug: Gatehouse's validate-headers has no action per header/);
    at(28, /<validate-status-code> in <on-error>: Gatehouse's validate-status-code runs in outbound only \(left out\)/);
    assert.match(lines.at(-1)!, /10 things not translated \(left out\)/);
    const chains = parse(run.stdout) as Record<string, Record<string, unknown>[]>;
    assert.deepEqual(chains.inbound![0]!.config, {
      headers: [{ name: 'User-Agent' }, { name: 'Host' }, { name: 'Referrer' }],
      specifiedParameterAction: 'prevent',
      unspecifiedParameterAction: 'prevent',
      errorsVariable: 'requestParametersValidation',
    });
    assert.deepEqual(chains.outbound, [
      { policy: 'validate-status-code', config: { statusCodes: ['200'] } },
      { policy: 'validate-headers', config: { headers: [{ name: 'X-Version' }], specifiedHeaderAction: 'ignore', unspecifiedHeaderAction: 'prevent' } },
    ]);
    assert.equal(chains['on-error'], undefined);
    assert.equal((await runGatehouse(['import-apim', file, '--partial'])).code, 0);
  });

  test('a file that is not XML, or not a policy document, is refused with the reason', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad.xml'), '<policies><inbound></policies>');
    const bad = await runGatehouse(['import-apim', join(dir, 'bad.xml')]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /bad\.xml: not well-formed XML/);
    writeFileSync(join(dir, 'other.xml'), '<fragment><set-header name="a" exists-action="delete" /></fragment>');
    assert.match((await runGatehouse(['import-apim', join(dir, 'other.xml')])).stderr, /the root element is <fragment>, not <policies> \(a policy fragment is given with --fragment <id>=<file\.xml> or --fragments <folder>\)/);
    assert.equal((await runGatehouse(['import-apim', join(dir, 'bad.xml'), '--api', 'a'])).code, 1);
  });
});

describe('gatehouse import-apim with APIM policy fragments', () => {
  const policies = new RepositoryPolicySources(join(repoRoot(), 'policies'));
  const whole = ['--api', 'shop', '--path', '/shop', '--backend', 'http://127.0.0.1:9'];

  test('each fragment of a folder is translated in the section that includes it, into the document\'s fragments', async () => {
    const run = await runGatehouse(['import-apim', fixture('fragment-policy.xml'), '--fragments', fixture('fragments'), ...whole]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, '', 'nothing left out, nothing noted');
    const doc = parse(run.stdout) as { fragments: Record<string, Record<string, unknown>[]>; apis: { policies: Record<string, unknown[]> }[] };
    // <id>.xml files and the <id>/policy.xml folder APIOps extracts.
    assert.deepEqual(Object.keys(doc.fragments), ['client-tag', 'response-stamp', 'tenant-check']);
    assert.deepEqual(doc.fragments['tenant-check']![2], {
      choose: [{ when: 'variables[?"tenant"].orValue("") == "acme"', policies: [{ 'include-fragment': 'client-tag' }] }],
    });
    assert.deepEqual(doc.fragments['client-tag'], [{ policy: 'set-header', config: { name: 'X-Client-Tag', existsAction: 'override', value: { expr: 'request.clientAddress' } } }]);
    // Included in outbound: find-and-replace works on the response there.
    assert.deepEqual(doc.fragments['response-stamp']![1], { policy: 'find-and-replace', config: { from: 'backend', to: 'gateway', scope: 'response' } });
    assert.deepEqual(doc.apis[0]!.policies.outbound, [{ 'include-fragment': 'response-stamp' }]);
    await prepareDocument(run.stdout, { host: newHost().host, baseDir: repoRoot(), policies, sourceName: 'imported.yaml' });

    // The same with each fragment given by id: the same document.
    const byId = await runGatehouse([
      'import-apim',
      fixture('fragment-policy.xml'),
      '--fragment',
      `tenant-check=${fixture('fragments/tenant-check.xml')}`,
      '--fragment',
      `client-tag=${fixture('fragments/client-tag/policy.xml')}`,
      '--fragment',
      `response-stamp=${fixture('fragments/response-stamp.xml')}`,
      ...whole,
    ]);
    assert.equal(byId.code, 0, byId.stderr);
    assert.equal(byId.stdout, run.stdout);
  });

  test('fragments alone become fragments:, each in the section it fits when no document given includes it (noted)', async () => {
    const run = await runGatehouse(['import-apim', '--fragments', fixture('fragments')]);
    assert.equal(run.code, 0, run.stderr);
    const doc = parse(run.stdout) as Record<string, Record<string, Record<string, unknown>[]>>;
    assert.deepEqual(Object.keys(doc), ['fragments']);
    assert.deepEqual(doc.fragments!['response-stamp']![1], { policy: 'find-and-replace', config: { from: 'backend', to: 'gateway', scope: 'request' } });
    assert.deepEqual(run.stderr.trim().split('\n'), [
      `${fixture('fragments/response-stamp.xml')}:1: note: no policy document given here includes this fragment: translated as included in <inbound>, where it has the fewest problems (it translates differently in <outbound>, <on-error>)`,
    ]);
  });

  test('what a fragment cannot carry is listed by fragment file and line; circles are broken, missing fragments named', async () => {
    const file = fixture('fragment-untranslatable.xml');
    const dir = fixture('fragments-untranslatable');
    const run = await runGatehouse(['import-apim', file, '--fragments', dir, ...whole]);
    assert.equal(run.code, 1, run.stderr);
    assert.deepEqual(run.stderr.trim().split('\n'), [
      `${file}:8: fragment nowhere is included but not given (--fragment nowhere=<fragment.xml>, or --fragments <folder>): a gateway refuses the document without it`,
      `${dir}/both-ways.xml:1: this fragment is included in <inbound> and <outbound>, and translates differently there (a policy that depends on its section): a Gatehouse fragment is one list, the <inbound> translation is kept`,
      `${dir}/loop-b.xml:2: fragment "loop-a" includes itself: loop-a -> loop-b -> loop-a (this include is left out)`,
      `${dir}/sectioned.xml:2: <base /> in a fragment: APIM takes none there (the <base /> of the including document says where the outer scope's policies run)`,
      `${dir}/sectioned.xml:3: <inbound> in a fragment: a fragment is a sequence of policies, included in a section (left out)`,
      `${dir}/sectioned.xml:6: <publish-to-dapr>: no Gatehouse policy for it (left out)`,
      `${dir}/sectioned.xml:10: fragment absent is included but not given (--fragment absent=<fragment.xml>, or --fragments <folder>): a gateway refuses the document without it`,
      'gatehouse import-apim: 7 things not translated (left out); --partial accepts the output as it is',
    ]);
    const doc = parse(run.stdout) as { fragments: Record<string, unknown[]> };
    assert.deepEqual(doc.fragments['loop-b'], [], 'the include closing the circle is left out');
    assert.deepEqual(doc.fragments['loop-a']!.at(-1), { 'include-fragment': 'loop-b' });
    assert.deepEqual(doc.fragments.sectioned, [{ policy: 'set-header', config: { name: 'X-Kept', existsAction: 'override', value: 'kept' } }, { 'include-fragment': 'absent' }]);

    // For the control plane, which may have them, fragments not given are notes: only what is left out fails.
    const forApply = await runGatehouse(['import-apim', file, '--fragments', dir, ...whole, '--apply', '--partial']);
    assert.equal(forApply.code, 0, forApply.stderr);
    assert.match(forApply.stderr, /fragment-untranslatable\.xml:8: note: fragment nowhere is included but not given .*: the control plane must have it \(gatehouse get lists its fragments\)/);
    assert.match(forApply.stderr, /5 things not translated/);
    assert.equal((parse(forApply.stdout) as { version?: number }).version, undefined, 'an apply file has no version');
  });

  test('fragment arguments that cannot be used are refused, naming what is wrong', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'policies.xml'), '<policies><inbound><set-header name="a" exists-action="delete" /></inbound></policies>');
    writeFileSync(join(dir, 'bad.xml'), '<fragment><set-header name="a"></fragment>');
    const cases: [string[], RegExp][] = [
      [['--fragment', 'auth'], /--fragment auth: give the fragment's id and its file, as --fragment <id>=<fragment\.xml>/],
      [['--fragment', `-auth=${join(dir, 'bad.xml')}`], /fragment id "-auth": a fragment name is letters, digits/],
      [['--fragment', `a=${join(dir, 'bad.xml')}`, '--fragment', `a=${join(dir, 'policies.xml')}`], /fragment a is given twice: .*bad\.xml and .*policies\.xml/],
      [['--fragment', `a=${join(dir, 'bad.xml')}`], /bad\.xml: not well-formed XML/],
      [['--fragment', `a=${join(dir, 'policies.xml')}`], /policies\.xml: line 1: the root element is <policies>, not <fragment>/],
      [['--fragments', join(dir, 'none')], /none: ENOENT/],
      [['--fragments', tempDir()], /no fragments in it \(<id>\.xml files, or <id>\/policy\.xml folders as APIOps extracts them\)/],
      [[join(dir, 'policies.xml'), '--fragments', fixture('fragments')], /with fragments, or --apply, the policy document becomes the API of a whole document: give --api, --path and --backend/],
      [['--fragments', fixture('fragments'), ...whole], /declare the API of a policy document: give the document too/],
      [[], /usage: gatehouse import-apim \[<policy\.xml>\]/],
    ];
    for (const [args, message] of cases) {
      const run = await runGatehouse(['import-apim', ...args]);
      assert.equal(run.code, 1, args.join(' '));
      assert.match(run.stderr, message, args.join(' '));
    }
  });
});

/** `gatehouse import-apim <xml> [args]` as a whole document, which must translate everything, served by a gateway process. */
async function serveImported(xml: string, api: { id: string; path: string; backendPort: number }, args: string[] = []): Promise<GatewayProcess> {
  const run = await runGatehouse(['import-apim', xml, '--api', api.id, '--path', api.path, '--backend', `http://127.0.0.1:${api.backendPort}`, ...args]);
  assert.equal(run.code, 0, run.stderr);
  const file = join(tempDir(), 'imported.yaml');
  writeFileSync(file, run.stdout);
  return startGatewayProcess({ config: file });
}

describe('an imported document served by a gateway', () => {
  let backend: RecordingBackend;
  let gateway: GatewayProcess;
  const agent = new Agent({ connections: 4 });

  before(async () => {
    backend = await startRecordingBackend(({ url }) => ({ headers: { 'content-type': 'text/plain', 'x-powered-by': 'backend' }, body: `seen ${url}` }));
    gateway = await serveImported(fixture('api-policy.xml'), { id: 'shop', path: '/shop', backendPort: backend.port });
  });

  after(() => stopAll(gateway, agent, [backend?.server]));

  const send = (path: string, headers: Record<string, string> = {}, method = 'GET') => sendTo(gateway.url, path, { method, headers, dispatcher: agent });

  test('the translated policies do what the APIM document says', async () => {
    const missing = await send('/shop/a');
    assert.equal(missing.status, 400, 'check-header');
    const before = backend.seen.length;
    const gold = await send('/shop/gold?page=1', { 'x-tenant': 'acme', 'x-tier': 'gold' });
    assert.equal(gold.status, 200, gold.body);
    const seen = backend.seen[before]!;
    assert.equal(seen.headers['x-lane'], 'fast', 'choose on a variable set from a header');
    assert.equal(seen.headers['x-client'], '127.0.0.1');
    assert.equal(seen.url, '/gold?page=1&api-version=2024-01-01');
    assert.equal(gold.headers['x-status'], '200');
    assert.equal(gold.headers['x-powered-by'], undefined);
    assert.equal((await send('/shop/std', { 'x-tenant': 'beta' })).status, 200);
    assert.equal(backend.seen.at(-1)!.headers['x-lane'], 'standard');
    const deleted = await send('/shop/x', { 'x-tenant': 'gamma' }, 'DELETE');
    assert.equal(deleted.status, 405);
    assert.equal(deleted.body, 'deletes are not allowed');
    assert.equal(deleted.headers.allow, 'GET, POST');
  });

  test('cache-lookup and cache-store: the second GET of a page is answered without the backend', async () => {
    const before = backend.seen.length;
    const first = await send('/shop/cached?page=2', { 'x-tenant': 'cache-1' });
    const again = await send('/shop/cached?page=2', { 'x-tenant': 'cache-2' });
    assert.equal(backend.seen.length, before + 1);
    assert.equal(again.body, first.body);
  });

  test('rate-limit-by-key on the tenant header: the fourth call of a tenant in a minute is refused', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await send(`/shop/limited-${i}`, { 'x-tenant': 'limited' })).status);
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    assert.equal((await send('/shop/other', { 'x-tenant': 'another' })).status, 200);
  });
});

describe('an imported document with outbound calls served by a gateway', () => {
  let backend: RecordingBackend;
  let tokens: RecordingBackend;
  let gateway: GatewayProcess;
  const agent = new Agent({ connections: 2 });

  before(async () => {
    backend = await startRecordingBackend(() => ({ headers: { 'content-type': 'text/plain' }, body: 'the backend body' }));
    // The token service fails its first call: retry's condition sees the 503 and the first retry, at once, gets the token.
    tokens = await startRecordingBackend(() => (tokens.seen.length === 1 ? { status: 503, body: 'busy' } : { headers: { 'content-type': 'text/plain' }, body: 'tok-123' }));
    const xml = join(tempDir(), 'served-calls.xml');
    writeFileSync(xml, readFileSync(fixture('served-calls.xml'), 'utf8').replaceAll('TOKEN_PORT', String(tokens.port)));
    gateway = await serveImported(xml, { id: 'shop', path: '/shop', backendPort: backend.port });
  });

  after(() => stopAll(gateway, agent, [backend?.server, tokens?.server]));

  test('send-request inside retry, authentication-basic and set-body do what the APIM document says', async () => {
    const res = await sendTo(gateway.url, '/shop/orders/7', { headers: { 'x-scope': 'write' }, dispatcher: agent });
    assert.equal(res.status, 200, res.body);
    assert.equal(res.body, 'status 200 via shop', 'the client gets the body set-body made');
    assert.equal(tokens.seen.length, 2, 'the 503 was retried once');
    for (const call of tokens.seen) {
      assert.equal(call.method, 'POST');
      assert.equal(call.url, '/token');
      assert.equal(call.body, 'scope=write');
      assert.equal(call.headers['x-client'], 'orders');
    }
    const seen = backend.seen.at(-1)!;
    assert.equal(seen.url, '/orders/7');
    assert.equal(seen.headers.authorization, `Basic ${Buffer.from('orders-client:s3cret-pass').toString('base64')}`);
    assert.equal(seen.headers['x-token'], 'tok-123', 'the stored response, read by an expression');
  });
});

describe('an imported document with the validation policies served by a gateway', () => {
  let backend: RecordingBackend;
  let gateway: GatewayProcess;
  const agent = new Agent({ connections: 2 });
  const answers: Record<string, { status?: number; headers?: Record<string, string> }> = {
    '/missing': { status: 404, headers: { 'x-version': '1' } },
    '/teapot': { status: 418 },
    '/broken': { status: 500 },
    '/leaky': { headers: { 'x-version': '1', 'x-debug': 'stack trace' } },
  };

  before(async () => {
    backend = await startRecordingBackend(({ url }) => ({ headers: { 'content-type': 'text/plain', 'x-version': '1' }, ...answers[url.split('?')[0]!], body: `backend body for ${url}` }));
    gateway = await serveImported(fixture('validation-policy.xml'), { id: 'orders', path: '/orders', backendPort: backend.port });
  });

  after(() => stopAll(gateway, agent, [backend?.server]));

  const send = (path: string, headers: Record<string, string> = {}) => sendTo(gateway.url, path, { headers, dispatcher: agent });

  test('validate-parameters: the declared query parameters pass, an undeclared one is refused before the backend', async () => {
    const ok = await send('/orders/7?page=2&sort=asc', { 'x-tenant': 'acme' });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(backend.seen.at(-1)!.url, '/7?page=2&sort=asc');
    const before = backend.seen.length;
    const refused = await send('/orders/7?page=2&debug=1');
    assert.equal(refused.status, 400);
    assert.match(refused.body, /query parameter debug is not declared/);
    assert.equal(backend.seen.length, before, 'the backend never saw it');
  });

  test('validate-status-code: a declared status passes, one the operation does not declare becomes 502', async () => {
    const missing = await send('/orders/missing');
    assert.equal(missing.status, 404);
    assert.equal(missing.body, 'backend body for /missing');
    for (const path of ['/orders/teapot', '/orders/broken']) {
      const res = await send(path);
      assert.equal(res.status, 502, path);
      assert.doesNotMatch(res.body, /backend body/, 'the backend\'s answer is not passed on');
      assert.equal(res.headers['x-version'], undefined, `${path}: the backend's headers are not passed on`);
    }
  });

  test('validate-headers: declared and standard headers pass, an undeclared header makes the response 502', async () => {
    const ok = await send('/orders/7');
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.headers['x-version'], '1');
    const leaky = await send('/orders/leaky');
    assert.equal(leaky.status, 502);
    assert.equal(leaky.headers['content-type'], 'application/problem+json');
    assert.doesNotMatch(leaky.body, /stack trace|backend body/);
    assert.equal(leaky.headers['x-debug'], undefined, 'the header the policy refused does not reach the client');
  });
});

describe('an imported document with its fragments served by a gateway', () => {
  let backend: RecordingBackend;
  let gateway: GatewayProcess;
  const agent = new Agent({ connections: 2 });

  before(async () => {
    backend = await startRecordingBackend(({ url }) => ({ headers: { 'content-type': 'text/plain' }, body: `backend answer for ${url}` }));
    gateway = await serveImported(fixture('fragment-policy.xml'), { id: 'shop', path: '/shop', backendPort: backend.port }, ['--fragments', fixture('fragments')]);
  });

  after(() => stopAll(gateway, agent, [backend?.server]));

  const send = (path: string, headers: Record<string, string> = {}) => sendTo(gateway.url, path, { headers, dispatcher: agent });

  test('the fragments run where the document includes them, nested ones too', async () => {
    const before = backend.seen.length;
    const missing = await send('/shop/a');
    assert.equal(missing.status, 400, "tenant-check's check-header");
    assert.equal(backend.seen.length, before);

    const acme = await send('/shop/orders', { 'x-tenant': 'acme' });
    assert.equal(acme.status, 200, acme.body);
    const seen = backend.seen.at(-1)!;
    assert.equal(seen.headers['x-client-tag'], '127.0.0.1', 'client-tag, included by tenant-check inside its choose');
    assert.equal(seen.headers['x-api'], 'orders', 'the policy after the include runs too');
    assert.equal(acme.headers['x-stamp'], '200', 'response-stamp in outbound');
    assert.equal(acme.body, 'gateway answer for /orders', "find-and-replace on the response, the section's translation");

    await send('/shop/other', { 'x-tenant': 'beta' });
    assert.equal(backend.seen.at(-1)!.headers['x-client-tag'], undefined, 'only for acme');
  });
});
