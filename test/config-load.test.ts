// The gateway configuration document read and checked (runtime/config/parse-document.ts, with the schema and the
// semantic checks it runs): every document that cannot be used is refused with each problem named by file, line and
// path in the document, in plain words. Documents are strings and files in a temporary folder, read straight through
// the loader: nothing here starts a gateway or builds a policy.

import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError } from '../runtime/config/config-error.ts';
import { formatPath, problemWhere } from '../runtime/config/document-paths.ts';
import { parseGatewayDocument, readGatewayDocument } from '../runtime/config/parse-document.ts';
import { gatewaySchema } from '../runtime/config/schema-problems.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { messageAt, problemsOf } from './support/config-problems.ts';
import { gatewayAssets } from '../runtime/assets/repository.ts';

const work = mkdtempSync(join(tmpdir(), 'gatehouse-config-load-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** The ConfigError `promise` rejects with. */
async function refusal(promise: Promise<unknown>): Promise<ConfigError> {
  const err = await promise.then(
    () => assert.fail('accepted'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
  return err;
}

describe('configuration document', () => {
  test('the embedded default validates', async () => {
    const doc = await readGatewayDocument(gatewayAssets().defaultDocument.source);
    assert.equal(doc.version, 1);
    assert.equal(doc.apis.length, 1);
    const api = doc.apis[0]!;
    assert.equal(api.id, 'echo');
    assert.equal(api.pathPrefix, '/echo');
    assert.deepEqual(api.backend, { url: 'builtin:echo' });
    assert.deepEqual(api.policies?.inbound, [
      { policy: 'check-header', config: { name: 'x-api-key', values: ['demo-key'], failedCheckHttpCode: 401 } },
    ]);
    assert.deepEqual(api.policies?.outbound, [
      { policy: 'set-header', config: { name: 'x-gatehouse-policy', value: 'set-header' } },
    ]);
  });

  test('a full document in JSON, with $schema, pools, hosts, operations and every policy field', () => {
    const doc = parseGatewayDocument(
      JSON.stringify({
        $schema: '../runtime/config/gateway.schema.json',
        version: 1,
        settings: { maxRequestBodyBytes: 1024, backendTimeoutMs: 500 },
        policies: { 'on-error': [{ policy: 'set-header', config: { name: 'x-e', value: '1' } }] },
        apis: [
          {
            id: 'orders',
            pathPrefix: '/',
            hosts: ['api.example.com', '*.example.org', '[::1]'],
            backend: { pool: { urls: ['http://10.0.0.1:80/v1', 'https://b.example'], ejectAfterFailures: 2, ejectForMs: 5 }, timeoutMs: 9 },
            operations: [
              { id: 'get_order-1', method: 'GET', urlTemplate: '/orders/{orderId}/lines/{line}' },
              { id: 'any', method: '*', urlTemplate: '/' },
              {
                id: 'search',
                method: 'M-SEARCH',
                urlTemplate: '/search',
                policies: {
                  inbound: [
                    {
                      module: 'x.wasm',
                      config: {},
                      grants: { wasi: true, filesystem: { '/data': 'data' }, http: { allowedHosts: ['*.example.com'] }, counters: true },
                      limits: { cpuMs: 0.5, memoryBytes: 1048576, outputBytes: 10 },
                      failOpen: true,
                    },
                  ],
                },
              },
            ],
          },
          { id: 'same-prefix-other-host', pathPrefix: '/', hosts: ['other.example.com'], backend: { url: 'builtin:echo' } },
        ],
      }),
      'gw.json',
    );
    assert.equal(doc.apis[0]!.operations!.length, 3);
  });

  test('a document with many mistakes reports every one, with its line and path', () => {
    const problems = problemsOf(`version: 2
colour: blue
apis:
  - id: Orders_1
    pathPrefix: /orders/
    backend:
      url: ftp://example.com
      pool: { urls: ["http://a.example", "http://a.example/"] }
    operations:
      - id: get
        method: get
        urlTemplate: /orders/{id}/items/{id}
      - id: get
        method: GET
        urlTemplate: /x/{a}{b}/c{
      - id: third
        method: POST
        urlTemplate: /x/{}/{9}/{ok}
  - id: two
    pathPrefix: /orders
    backend: {}
    policies:
      inbound:
        - policy: check-header
          module: x.wasm
        - config: {}
        - policy: Not_A_Name
          grants: { filesystem: { data: /srv }, http: { allowedHosts: [] }, wasi: 1, network: true }
          limits: { cpuMs: 0, memoryBytes: 1e12 }
  - id: two
    pathPrefix: /orders
    backend: { url: "http://user:pw@example.com/a?b=1" }
    hosts: [a.example, A.example, "bad host"]
    operations:
      - { id: op, method: GET, urlTemplate: orders }
  - id: four
    pathPrefix: /shop
    hosts: [shop.example]
    backend: { url: http://shop.example }
  - id: five
    pathPrefix: /shop
    hosts: [SHOP.example, www.example]
    backend: { url: http://shop.example, timeoutMs: -1 }
`);
    const at = (line: number, path: string) => messageAt(problems, `gw.yaml:${line}: ${path}`);
    assert.match(at(1, 'version'), /must be 1 \(got 2\)/);
    assert.match(at(2, 'colour'), /unknown property \(allowed here: .*version, settings, policies, fragments, apis/);
    assert.match(at(4, 'apis[0].id'), /lowercase letters, digits and dashes.*got "Orders_1"/);
    assert.match(at(5, 'apis[0].pathPrefix'), /must not end with "\/" \(write "\/orders"\)/);
    assert.match(at(6, 'apis[0].backend'), /has "url" and "pool": give exactly one of "url" or "pool"/);
    assert.match(at(7, 'apis[0].backend.url'), /absolute http:\/\/ or https:\/\/ URL, or builtin:echo \(got "ftp:/);
    assert.match(at(8, 'apis[0].backend.pool.urls[1]'), /duplicate URL \(also urls\[0\]\)/);
    assert.match(at(11, 'apis[0].operations[0].method'), /HTTP method in upper case/);
    assert.match(at(12, 'apis[0].operations[0].urlTemplate'), /duplicate parameter name "id"/);
    assert.match(at(13, 'apis[0].operations[1].id'), /duplicate operation id "get" in this API \(also operations\[0\]\)/);
    const template = at(15, 'apis[0].operations[1].urlTemplate');
    assert.match(template, /a parameter must be a whole segment, like \/\{id\}\/ \(not "\{a\}\{b\}"\)/);
    assert.match(template, /unbalanced braces in segment "c\{"/);
    const third = at(18, 'apis[0].operations[2].urlTemplate');
    assert.match(third, /empty parameter name/);
    assert.match(third, /parameter name "9" must be/);
    assert.match(at(20, 'apis[1].pathPrefix'), /same pathPrefix as apis\[0\] \(Orders_1\) and neither has hosts/);
    assert.match(at(21, 'apis[1].backend'), /needs one of "url" or "pool"/);
    assert.match(at(24, 'apis[1].policies.inbound[0]'), /has "policy" and "module": give exactly one of "policy", "module", "source", "choose", "set-variable", "include-fragment", "send-request", "send-one-way-request", "retry", "wait", "set-body", "trace", "cache-lookup", "cache-store", "cache-lookup-value", "cache-store-value" or "cache-remove-value"/);
    assert.match(at(26, 'apis[1].policies.inbound[1]'), /needs one of "policy", "module", "source", "choose", "set-variable", "include-fragment", "send-request", "send-one-way-request", "retry", "wait", "set-body", "trace", "cache-lookup", "cache-store", "cache-lookup-value", "cache-store-value" or "cache-remove-value"/);
    assert.match(at(27, 'apis[1].policies.inbound[2].policy'), /name of a built-in policy/);
    assert.match(at(28, 'apis[1].policies.inbound[2].grants.filesystem.data'), /guest path must be absolute/);
    assert.match(at(28, 'apis[1].policies.inbound[2].grants.http.allowedHosts'), /must not be empty/);
    assert.match(at(28, 'apis[1].policies.inbound[2].grants.wasi'), /must be true or false \(got number 1\)/);
    assert.match(at(28, 'apis[1].policies.inbound[2].grants.network'), /unknown property \(allowed here: wasi, filesystem, http, backend, counters, openidConfig\)/);
    assert.match(at(29, 'apis[1].policies.inbound[2].limits.cpuMs'), /must be > 0/);
    assert.match(at(29, 'apis[1].policies.inbound[2].limits.memoryBytes'), /must be <= 1073741824/);
    assert.match(at(30, 'apis[2].id'), /duplicate API id "two" \(also apis\[1\]\)/);
    const url = at(32, 'apis[2].backend.url');
    assert.match(url, /must not hold credentials/);
    assert.match(url, /must not have a query/);
    assert.match(at(33, 'apis[2].hosts[2]'), /host name/);
    assert.match(at(35, 'apis[2].operations[0].urlTemplate'), /must start with "\/" \(got "orders"\)/);
    assert.match(at(42, 'apis[4].hosts'), /same pathPrefix as apis\[3\] \(four\), and both answer to shop\.example/);
    assert.match(at(43, 'apis[4].backend.timeoutMs'), /must be >= 1/);
    // Nothing else: each mistake once, in plain words.
    assert.equal(problems.length, 32, problems.map((p) => `${p.where}: ${p.message}`).join('\n'));
    assert.ok(problems.every((p) => !p.message.includes('must match pattern')));
    // In the order of the document.
    const lines = problems.map((p) => Number(/^gw\.yaml:(\d+):/.exec(p.where)![1]));
    assert.deepEqual(lines, [...lines].sort((a, b) => a - b));
  });

  test('apis[2] and apis[1] with the same prefix and hosts, operations that shadow each other, a template in a prefix', () => {
    const problems = problemsOf(`version: 1
apis:
  - { id: a, pathPrefix: /p, hosts: [x.example, y.example], backend: { url: builtin:echo } }
  - { id: b, pathPrefix: /p, hosts: [Y.EXAMPLE], backend: { url: builtin:echo } }
  - { id: c, pathPrefix: /p, backend: { url: builtin:echo } }
  - id: d
    pathPrefix: /q/{id}//r
    backend: { url: builtin:echo }
    operations:
      - { id: one, method: GET, urlTemplate: "/o/{id}" }
      - { id: two, method: GET, urlTemplate: "/o/{other}/" }
      - { id: three, method: POST, urlTemplate: "/o/{id}" }
`);
    assert.match(messageAt(problems, 'gw.yaml:4: apis[1].hosts'), /same pathPrefix as apis\[0\] \(a\), and both answer to y\.example/);
    const prefix = messageAt(problems, 'gw.yaml:7: apis[3].pathPrefix');
    assert.match(prefix, /literal/);
    assert.match(prefix, /empty segments/);
    assert.match(messageAt(problems, 'gw.yaml:11: apis[3].operations[1].urlTemplate'), /same method and URL template as operations\[0\]/);
    // A host-less API next to ones with hosts is fine: the router prefers the ones bound to the request's host.
    assert.equal(problems.length, 4, problems.map((p) => `${p.where}: ${p.message}`).join('\n'));
  });

  test('backend.protocol: h2 and http/1.1 are taken, anything else refused at its line', () => {
    const problems = problemsOf(`version: 1
apis:
  - { id: a, pathPrefix: /a, backend: { url: "http://10.0.0.1", protocol: h2 } }
  - { id: b, pathPrefix: /b, backend: { url: "http://10.0.0.1", protocol: http/1.1 } }
  - { id: c, pathPrefix: /c, backend: { url: "http://10.0.0.1", protocol: grpc } }
`);
    assert.equal(problems.length, 1, problems.map((p) => `${p.where}: ${p.message}`).join('\n'));
    assert.equal(messageAt(problems, 'gw.yaml:5: apis[2].backend.protocol'), 'must be one of "http/1.1", "h2" (got "grpc")');
  });

  test('WebSocket, retry and health-check keys: each bad value at its line and path', () => {
    const problems = problemsOf(`version: 1
settings: { webSocket: { maxConnections: 0 } }
apis:
  - id: a
    pathPrefix: /a
    backend:
      pool:
        urls: [http://10.0.0.1, http://10.0.0.2]
        healthCheck: { intervalMs: 5, expectedStatus: [200, 700] }
      retry: { count: 9, on: [reset, sometimes, 302], backoffMs: 2000 }
    webSocket: { idleTimeoutMs: 10, maxMessageBytes: 4, pingMs: 1 }
    operations:
      - { id: o, method: GET, urlTemplate: /o, webSocket: "yes" }
`);
    assert.match(messageAt(problems, 'gw.yaml:2: settings.webSocket.maxConnections'), />= 1/);
    assert.equal(messageAt(problems, 'gw.yaml:9: apis[0].backend.pool.healthCheck.path'), 'is required');
    assert.match(messageAt(problems, 'gw.yaml:9: apis[0].backend.pool.healthCheck.intervalMs'), />= 100/);
    assert.equal(messageAt(problems, 'gw.yaml:9: apis[0].backend.pool.healthCheck.expectedStatus[1]'), 'must be <= 599 (got 700)');
    assert.match(messageAt(problems, 'gw.yaml:10: apis[0].backend.retry.count'), /<= 5/);
    assert.equal(messageAt(problems, 'gw.yaml:10: apis[0].backend.retry.on[1]'), 'must be one of "connect-failure", "reset", "timeout" (got "sometimes")');
    assert.equal(messageAt(problems, 'gw.yaml:10: apis[0].backend.retry.on[2]'), 'must be >= 400 (got 302)');
    assert.match(messageAt(problems, 'gw.yaml:10: apis[0].backend.retry.backoffMs'), /more than maxBackoffMs \(1000, its default\)/);
    assert.match(messageAt(problems, 'gw.yaml:11: apis[0].webSocket.idleTimeoutMs'), />= 1000/);
    assert.match(messageAt(problems, 'gw.yaml:11: apis[0].webSocket.maxMessageBytes'), />= 125/);
    assert.match(messageAt(problems, 'gw.yaml:11: apis[0].webSocket.pingMs'), /unknown property \(allowed here: idleTimeoutMs, maxConnections, maxMessageBytes\)/);
    assert.equal(problems.length, 12, problems.map((p) => `${p.where}: ${p.message}`).join('\n'));
    assert.equal(messageAt(problems, 'gw.yaml:13: apis[0].operations[0].webSocket'), 'must be true or false (got string "yes")');
  });

  test('YAML syntax errors and duplicate keys name the line and column', () => {
    const problems = problemsOf('version: 1\napis:\n  - id: a\n    backend: { url: builtin:echo\n  - id: b\n');
    assert.equal(problems.length, 1);
    assert.match(problems[0]!.where, /^gw\.yaml:5:\d+$/);
    assert.match(problems[0]!.message, /Flow map/);

    const dup = problemsOf('version: 1\napis: []\nversion: 1\n');
    assert.deepEqual(dup, [{ where: 'gw.yaml:3:1', message: 'duplicate key' }]);

    const empty = problemsOf('# nothing yet\n');
    assert.deepEqual(empty, [{ where: 'gw.yaml: (document)', message: 'the document is empty (it needs at least `version: 1` and `apis`)' }]);
  });

  test('JSON syntax errors name the line and column; duplicate keys too; JSON files are not read as YAML', () => {
    assert.deepEqual(problemsOf('{\n  "version": 1,\n  "apis": [1, 2,]\n}\n', 'gw.json'), [
      { where: 'gw.json:3:17', message: 'not valid JSON: trailing comma before "]"' },
    ]);
    assert.deepEqual(problemsOf('{\n  "version": 1\n  "apis": []\n}', 'gw.json'), [
      { where: 'gw.json:3:3', message: 'not valid JSON: expected "," or "}" after a property value, found "\\""' },
    ]);
    assert.deepEqual(problemsOf('{"version": 1, "apis": [', 'gw.json'), [
      { where: 'gw.json:1:25', message: 'not valid JSON: unexpected end of input' },
    ]);
    assert.deepEqual(problemsOf('version: 1\napis: []\n', 'gw.json'), [
      { where: 'gw.json:1:1', message: 'not valid JSON: unexpected "v"' },
    ]);
    assert.deepEqual(problemsOf('{"version": 1,\n "apis": [],\n "apis": []}', 'gw.json'), [
      { where: 'gw.json:3:2', message: 'duplicate key' },
    ]);
    // Validation problems in JSON documents have lines too.
    assert.deepEqual(problemsOf('{\n  "version": 1,\n  "apis": [\n    {"id": "a", "pathPrefix": "/a", "backend": {"url": 7}}\n  ]\n}', 'gw.json'), [
      { where: 'gw.json:4: apis[0].backend.url', message: 'must be a string (got number 7)' },
    ]);
  });

  test('YAML anchors, aliases and merge keys', () => {
    const doc = parseGatewayDocument(
      `version: 1
apis:
  - id: a
    pathPrefix: /a
    backend: &echo { url: builtin:echo }
    policies:
      inbound:
        - &key { policy: check-header, config: { name: x-api-key } }
  - id: b
    pathPrefix: /b
    backend: *echo
    policies:
      inbound:
        - <<: *key
          failOpen: true
`,
      'gw.yaml',
    );
    assert.deepEqual(doc.apis[1]!.backend, { url: 'builtin:echo' });
    assert.deepEqual(doc.apis[1]!.policies!.inbound, [{ policy: 'check-header', config: { name: 'x-api-key' }, failOpen: true }]);
    // Each place has its own copy: filling in one policy's configuration defaults does not change another's.
    assert.notEqual(doc.apis[0]!.backend, doc.apis[1]!.backend);
    assert.notEqual(doc.apis[0]!.policies!.inbound![0]!.config, doc.apis[1]!.policies!.inbound![0]!.config);
  });

  test('the example of docs/configuration.md validates', () => {
    const markdown = readFileSync(join(repoRoot(), 'docs', 'configuration.md'), 'utf8');
    const example = /```yaml\n([\s\S]*?)```/.exec(markdown)![1]!;
    const doc = parseGatewayDocument(example, 'configuration.md');
    assert.deepEqual(doc.apis.map((a) => a.id), ['shop', 'echo']);
  });

  test('a file that cannot be read is a ConfigError naming it and why', async () => {
    const missing = join(work, 'missing.yaml');
    const err = await refusal(readGatewayDocument(missing));
    assert.deepEqual(err.problems, [{ where: missing, message: 'cannot read the configuration: no such file' }]);
    assert.equal(err.message.split('\n')[0], `cannot read ${missing} (1 problem):`);
    const folder = await refusal(readGatewayDocument(work));
    assert.deepEqual(folder.problems, [{ where: work, message: 'cannot read the configuration: is a directory' }]);
    const file = join(work, 'plain.yaml');
    writeFileSync(file, 'version: 1\napis: []\n');
    const underFile = join(file, 'gw.yaml');
    const other = await refusal(readGatewayDocument(underFile));
    assert.equal(other.problems.length, 1);
    assert.equal(other.problems[0]!.where, underFile);
    assert.match(other.problems[0]!.message, /^cannot read the configuration: ENOTDIR: not a directory/);
  });

  test('a file is read as the document it holds, and its problems are named by its path', async () => {
    const file = join(work, 'read.yaml');
    writeFileSync(file, 'version: 1\napis:\n  - { id: a, pathPrefix: /a, backend: { url: builtin:echo } }\n');
    assert.deepEqual((await readGatewayDocument(file)).apis.map((a) => a.id), ['a']);
    writeFileSync(file, 'version: 1\napis:\n  - { id: a, pathPrefix: a, backend: { url: builtin:echo } }\n');
    const err = await refusal(readGatewayDocument(file));
    assert.deepEqual(err.problems, [{ where: `${file}:3: apis[0].pathPrefix`, message: 'must start with "/" (got "a")' }]);
  });

  test('the published schema has a description on every property (its own, or its definition\'s)', () => {
    const missing: string[] = [];
    const definitions = (gatewaySchema as { definitions: Record<string, { description?: string }> }).definitions;
    const described = (sub: Record<string, unknown>) =>
      typeof sub.description === 'string' ||
      (typeof sub.$ref === 'string' && typeof definitions[sub.$ref.replace('#/definitions/', '')]?.description === 'string');
    const walk = (node: unknown, at: string) => {
      if (typeof node !== 'object' || node === null) return;
      const n = node as Record<string, unknown>;
      if (n.properties && typeof n.properties === 'object') {
        for (const [key, sub] of Object.entries(n.properties as Record<string, Record<string, unknown>>)) {
          if (!described(sub)) missing.push(`${at}.${key}`);
        }
      }
      for (const [key, sub] of Object.entries(n)) walk(sub, `${at}.${key}`);
    };
    walk(gatewaySchema, '#');
    assert.deepEqual(missing, []);
  });
});


/** One valid API, as a line of `apis`. */
const API = '  - { id: a, pathPrefix: /a, backend: { url: builtin:echo } }\n';
const listed = (problems: { where: string; message: string }[]) => problems.map((p) => `${p.where}: ${p.message}`);

/** The ConfigError parsing `text` throws. */
function refused(text: string, name = 'gw.yaml'): ConfigError {
  try {
    parseGatewayDocument(text, name);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('the document was accepted');
}

describe('the words of each problem', () => {
  test('a value of the wrong type is named by what it is, and a long value is cut short', () => {
    assert.deepEqual(
      listed(problemsOf(`version: 1
apis:
  - { id: a, pathPrefix: /a, backend: { url: [1] } }
  - { id: b, pathPrefix: /b, backend: { url: { x: 1 } } }
  - { id: c, pathPrefix: /c, backend: { url: null } }
  - { id: d, pathPrefix: /d, backend: { url: true } }
  - { id: e, pathPrefix: /e, backend: { url: "ftp://${'x'.repeat(52)}" } }
  - { id: f, pathPrefix: /f, backend: { url: "ftp://${'x'.repeat(53)}" } }
`)),
      [
        'gw.yaml:3: apis[0].backend.url: must be a string (got a list)',
        'gw.yaml:4: apis[1].backend.url: must be a string (got a map)',
        'gw.yaml:5: apis[2].backend.url: must be a string (got null)',
        'gw.yaml:6: apis[3].backend.url: must be a string (got boolean true)',
        // 60 characters with the quotes: shown whole; 61: cut to 57 and "...".
        `gw.yaml:7: apis[4].backend.url: must be an absolute http:// or https:// URL, or builtin:echo (got "ftp://${'x'.repeat(52)}")`,
        `gw.yaml:8: apis[5].backend.url: must be an absolute http:// or https:// URL, or builtin:echo (got "ftp://${'x'.repeat(50)}...)`,
      ],
    );
  });

  test('named values: a bad name, a value of another type (not repeated), too long, a bad date, a missing value', () => {
    assert.deepEqual(
      listed(problemsOf(`version: 1
namedValues:
  "bad name!": { value: x }
  n1: { value: 12345678 }
  n2: { value: "${'v'.repeat(4097)}" }
  n3: { value: x, previous: { value: y, until: tomorrow } }
  n4: { }
apis:
${API}`)),
      [
        'gw.yaml:3: namedValues["bad name!"]: a named value name is letters, digits, ".", "_" and "-", at most 256 characters',
        'gw.yaml:4: namedValues.n1.value: must be a string (got number)',
        'gw.yaml:5: namedValues.n2.value: must be at most 4096 characters (got 4097)',
        'gw.yaml:6: namedValues.n3.previous.until: must match pattern "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?Z$" (got "tomorrow")',
        'gw.yaml:7: namedValues.n4.value: is required',
      ],
    );
  });

  test('repeated hosts, limits, operation ids, templates across lines, empty paths, guest paths and egress hosts', () => {
    assert.deepEqual(
      listed(problemsOf(`version: 1
apis:
  - id: a
    pathPrefix: /a
    hosts: [a.example, b.example, a.example]
    backend: { url: builtin:echo, timeoutMs: 0 }
    operations:
      - { id: "bad id", method: GET, urlTemplate: /x }
      - { id: ok, method: GET, urlTemplate: "/x{\\n  y" }
    policies:
      inbound:
        - module: ""
          grants: { http: { allowedHosts: ["http://x.example/"] }, filesystem: { "/a~b": 5, "/c/d": "", "data": "/srv" } }
        - source: ""
  - { id: b, pathPrefix: /b, hosts: [], backend: { pool: { urls: [] } } }
  - { id: c, pathPrefix: /c }
`)),
      [
        'gw.yaml:5: apis[0].hosts[2]: duplicate of item 0',
        'gw.yaml:6: apis[0].backend.timeoutMs: must be >= 1 (got 0)',
        'gw.yaml:8: apis[0].operations[0].id: must be letters, digits, "_" and "-", starting with a letter or digit, at most 64 characters (got "bad id")',
        // A message is one line: the segment's line break is shown as a space.
        'gw.yaml:9: apis[0].operations[1].urlTemplate: unbalanced braces in segment "x{ y"',
        'gw.yaml:12: apis[0].policies.inbound[0].module: must not be empty',
        'gw.yaml:13: apis[0].policies.inbound[0].grants.filesystem.data: the guest path must be absolute (start with "/")',
        'gw.yaml:13: apis[0].policies.inbound[0].grants.filesystem["/a~b"]: must be a string (got number 5)',
        'gw.yaml:13: apis[0].policies.inbound[0].grants.filesystem["/c/d"]: must not be empty',
        'gw.yaml:13: apis[0].policies.inbound[0].grants.http.allowedHosts[0]: must be a host and port, like "orders.internal:8443" or "*.svc.example.com:443", without a scheme or path (got "http://x.example/")',
        'gw.yaml:14: apis[0].policies.inbound[1].source: must not be empty',
        'gw.yaml:15: apis[1].hosts: must not be empty',
        'gw.yaml:15: apis[1].backend.pool.urls: must not be empty',
        'gw.yaml:16: apis[2].backend: is required',
      ],
    );
  });

  test('path prefixes and backend URLs: each rule by itself', () => {
    assert.deepEqual(
      listed(problemsOf(`version: 1
apis:
  - { id: a, pathPrefix: "/a b?#", backend: { url: "http://example.com/a#f" } }
  - { id: b, pathPrefix: /b/./c, backend: { url: "http://u@example.com" } }
  - { id: c, pathPrefix: "/c/", backend: { url: "http://[::1" } }
  - { id: d, pathPrefix: "//", backend: { url: "http://example.com/?" } }
  - { id: e, pathPrefix: "/e/../f", backend: { url: "https://:pw@example.com" } }
  - { id: f, pathPrefix: "/", backend: { url: "http://example.com/ok" } }
  - { id: g, pathPrefix: "/g{x}", backend: { url: "http://example.com:8080/ok/" } }
`)),
      [
        'gw.yaml:3: apis[0].pathPrefix: must be a path only, without "?" or "#"',
        'gw.yaml:3: apis[0].pathPrefix: must not contain white space (percent-encode it)',
        'gw.yaml:3: apis[0].backend.url: must not have a fragment',
        'gw.yaml:4: apis[1].pathPrefix: must not contain "." or ".." segments',
        'gw.yaml:4: apis[1].backend.url: must not hold credentials (they would not be sent; set an Authorization header with a policy)',
        'gw.yaml:5: apis[2].pathPrefix: must not end with "/" (write "/c")',
        'gw.yaml:5: apis[2].backend.url: is not a valid URL',
        'gw.yaml:6: apis[3].pathPrefix: must not end with "/" (write "/")',
        "gw.yaml:6: apis[3].backend.url: must not have a query (the request's own query is sent)",
        'gw.yaml:7: apis[4].pathPrefix: must not contain "." or ".." segments',
        'gw.yaml:7: apis[4].backend.url: must not hold credentials (they would not be sent; set an Authorization header with a policy)',
        'gw.yaml:9: apis[6].pathPrefix: must be literal: URL template parameters belong in operations',
      ],
    );
  });

  test('a pool: URLs checked each, duplicates found by their normal form, ones the schema refuses not compared', () => {
    assert.deepEqual(
      listed(problemsOf(`version: 1
apis:
  - id: a
    pathPrefix: /a
    backend:
      pool:
        urls:
          - http://a.example/x
          - http://A.example/x/
          - builtin:echo
          - builtin:echo
          - ftp://x
          - ftp://x
          - 5
          - http://u:p@b.example
          - http://u:p@b.example
          - http://a.example/y
          - http://a.example/x//
          - http://a.example/z?
          - http://a.example/z?
          - http://a.example/w#
`)),
      [
        'gw.yaml:9: apis[0].backend.pool.urls[1]: duplicate URL (also urls[0])',
        'gw.yaml:11: apis[0].backend.pool.urls[3]: duplicate URL (also urls[2])',
        'gw.yaml:12: apis[0].backend.pool.urls[4]: must be an absolute http:// or https:// URL, or builtin:echo (got "ftp://x")',
        'gw.yaml:13: apis[0].backend.pool.urls[5]: must be an absolute http:// or https:// URL, or builtin:echo (got "ftp://x")',
        'gw.yaml:14: apis[0].backend.pool.urls[6]: must be a string (got number 5)',
        'gw.yaml:15: apis[0].backend.pool.urls[7]: must not hold credentials (they would not be sent; set an Authorization header with a policy)',
        'gw.yaml:16: apis[0].backend.pool.urls[8]: must not hold credentials (they would not be sent; set an Authorization header with a policy)',
        // Trailing slashes are not part of the backend (the forwarder drops them); an empty query or fragment is one.
        'gw.yaml:18: apis[0].backend.pool.urls[10]: duplicate URL (also urls[0])',
        "gw.yaml:19: apis[0].backend.pool.urls[11]: must not have a query (the request's own query is sent)",
        "gw.yaml:20: apis[0].backend.pool.urls[12]: must not have a query (the request's own query is sent)",
        'gw.yaml:21: apis[0].backend.pool.urls[13]: must not have a fragment',
      ],
    );
  });

  test('the error says how many problems, one a line, with the path of each', () => {
    const one = refused(`version: 1\napis:\n  - { id: a, pathPrefix: a, backend: { url: builtin:echo } }\n`);
    assert.equal(one.message, 'gw.yaml is not a valid gateway configuration (1 problem):\n  gw.yaml:3: apis[0].pathPrefix: must start with "/" (got "a")');
    assert.deepEqual(one.located.map((p) => p.path), [['apis', 0, 'pathPrefix']]);
    const two = refused('version: 2\napis: {}\n');
    assert.equal(
      two.message,
      'gw.yaml is not a valid gateway configuration (2 problems):\n  gw.yaml:1: version: must be 1 (got 2)\n  gw.yaml:2: apis: must be a list (got a map)',
    );
    assert.deepEqual(two.located.map((p) => p.path), [['version'], ['apis']]);
    // Syntax problems have no path in the document.
    assert.deepEqual(refused('version: 1\nversion: 1\napis: []\n').located.map((p) => p.path), [undefined]);
  });

  test('past 100 problems, the rest are counted, not listed', () => {
    const unknown = refused(`version: 1\n${Array.from({ length: 103 }, (_, i) => `k${i}: 1\n`).join('')}apis:\n${API}`);
    assert.equal(unknown.problems.length, 101);
    assert.deepEqual(unknown.problems[0], { where: 'gw.yaml:2: k0', message: 'unknown property (allowed here: $schema, version, settings, policies, fragments, apis, namedValues)' });
    assert.deepEqual(unknown.problems[99]!.where, 'gw.yaml:101: k99');
    assert.deepEqual(unknown.problems[100], { where: 'gw.yaml: (document)', message: 'and 3 more problems, not listed' });
    const duplicates = refused(`version: 1\n${'apis: []\n'.repeat(103)}`);
    assert.equal(duplicates.message.split('\n')[0], 'gw.yaml is not valid YAML (101 problems):');
    assert.deepEqual(duplicates.problems[99], { where: 'gw.yaml:102:1', message: 'duplicate key' });
    assert.deepEqual(duplicates.problems[100], { where: 'gw.yaml: (document)', message: 'and 2 more problems, not listed' });
  });
});

describe('documents that are not what they claim', () => {
  test('a byte-order mark is skipped, in YAML and in JSON', () => {
    assert.deepEqual(parseGatewayDocument('\ufeffversion: 1\napis: []\n', 'gw.yaml'), { version: 1, apis: [] });
    assert.deepEqual(parseGatewayDocument('\ufeff{"version": 1, "apis": []}', 'gw.json'), { version: 1, apis: [] });
    assert.deepEqual(parseGatewayDocument('{"version": 1, "apis": []}', 'GW.JSON'), { version: 1, apis: [] });
  });

  test('YAML errors and warnings: the first line of the message, its position given once, in the place', () => {
    const unclosed = refused('version: 1\napis:\n  - id: a\n    backend: { url: builtin:echo\n  - id: b\n');
    assert.equal(
      unclosed.message,
      'gw.yaml is not valid YAML (1 problem):\n  gw.yaml:5:3: Flow map in block collection must be sufficiently indented and end with a }',
    );
    // An error at the start of an empty line (the parser's excerpt is the line before): the position is cut all the same.
    assert.deepEqual(problemsOf('version: 1\napis: [\n'), [
      { where: 'gw.yaml:3:1', message: 'Flow sequence in block collection must be sufficiently indented and end with a ]' },
    ]);
    // A warning (a tag nobody resolves) refuses the document too.
    assert.deepEqual(problemsOf('version: 1\napis: !foo []\n'), [{ where: 'gw.yaml:2:7', message: 'Unresolved tag: !foo' }]);
  });

  test('positions of two digits and more are taken out of a YAML message too', () => {
    const comments = Array.from({ length: 11 }, (_, i) => `# ${i}\n`).join('');
    const deep = `${comments}version: 1\napis: []\nx:\n  y:\n    z:\n      w:\n        v:\n          u: { a: 1\n          t: 2\n`;
    const problems = problemsOf(deep);
    assert.ok(problems.length > 0);
    for (const p of problems) {
      assert.equal(p.where, 'gw.yaml:20:11');
      assert.equal(p.message, 'Flow map in block collection must be sufficiently indented and end with a }');
    }
  });

  test('a name is read as JSON only when it ends with .json; a JSON syntax error says so in its first line', () => {
    assert.deepEqual(parseGatewayDocument('version: 1\napis: []\n', 'gw.json.yaml'), { version: 1, apis: [] });
    assert.equal(refused('{', 'gw.json').message.split('\n')[0], 'gw.json is not valid JSON (1 problem):');
  });

  test('a merge of something that is not a map cannot be read: said so for the whole document', () => {
    const err = refused('version: 1\napis: []\na: &a 1\nb:\n  <<: *a\n');
    assert.equal(
      err.message,
      'gw.yaml is not a valid gateway configuration (1 problem):\n  gw.yaml: (document): cannot be read: Merge sources must be maps or map aliases',
    );
  });

  test('named values are put in only once the document is otherwise valid', () => {
    const doc = (version: number, name: string) =>
      `version: ${version}\nnamedValues: { k: { value: x-key } }\napis:\n  - { id: a, pathPrefix: /a, backend: { url: builtin:echo }, policies: { inbound: [{ policy: check-header, config: { name: "${name}" } }] } }\n`;
    assert.deepEqual(parseGatewayDocument(doc(1, '{{k}}'), 'gw.yaml').apis[0]!.policies!.inbound![0]!.config, { name: 'x-key' });
    assert.deepEqual(listed(problemsOf(doc(1, '{{missing}}'))), [
      'gw.yaml:4: apis[0].policies.inbound[0].config.name: refers to named value "missing", which is not defined',
    ]);
    assert.deepEqual(listed(problemsOf(doc(2, '{{missing}}'))), ['gw.yaml:1: version: must be 1 (got 2)']);
  });

  test('an empty document, in YAML or JSON, is refused saying what it needs', () => {
    const needs = 'the document is empty (it needs at least `version: 1` and `apis`)';
    assert.deepEqual(problemsOf(''), [{ where: 'gw.yaml: (document)', message: needs }]);
    assert.deepEqual(problemsOf('null', 'gw.json'), [{ where: 'gw.json:1: (document)', message: needs }]);
  });

  test('bytes that are not UTF-8 are refused at their line and column', () => {
    const first = refused('\ufffdversion: 1\n');
    assert.equal(first.message.split('\n')[0], 'gw.yaml is not UTF-8 (1 problem):');
    const message = 'bytes that are not UTF-8 (read as U+FFFD): a configuration document must be UTF-8';
    assert.deepEqual(first.problems, [{ where: 'gw.yaml:1:1', message }]);
    assert.deepEqual(problemsOf('version: 1\napis:\n  - id: a\ufffd\n'), [{ where: 'gw.yaml:3:10', message }]);
    assert.deepEqual(problemsOf('\nversion: 1\ufffd\n'), [{ where: 'gw.yaml:2:11', message }]);
    // No line break after it: the count of lines stops all the same.
    assert.deepEqual(problemsOf('version: 1\napis: \ufffd'), [{ where: 'gw.yaml:2:7', message }]);
  });

  test('a document above 2 MiB is refused by its size in bytes, before it is parsed', () => {
    const max = 2 * 1024 * 1024;
    // A comment fills the document: the cheapest text to parse.
    const padded = (bytes: number, fill: string) => {
      const head = 'version: 1\napis: []\n# ';
      return head + fill.repeat(Math.floor((bytes - head.length) / Buffer.byteLength(fill)));
    };
    assert.equal(parseGatewayDocument(padded(max, 'x'), 'gw.yaml').version, 1);
    const tooLarge = (text: string) => {
      const err = refused(text);
      assert.equal(err.message.split('\n')[0], 'gw.yaml is too large (1 problem):');
      return err.problems;
    };
    assert.deepEqual(tooLarge(padded(max + 1, 'x')), [
      { where: 'gw.yaml: (document)', message: `is ${max + 1} bytes long; a configuration document may be at most ${max} bytes (2 MiB)` },
    ]);
    // Three bytes a character: fewer characters than bytes, still too many bytes.
    const wide = padded(max + 3, '\u20ac');
    const bytes = Buffer.byteLength(wide);
    assert.ok(wide.length < max && bytes > max);
    assert.match(tooLarge(wide)[0]!.message, new RegExp(`^is ${bytes} bytes long`));
  });

  test('YAML nested too deeply, in the text or through aliases, is refused; so is JSON', () => {
    const deepYaml = Array.from({ length: 66 }, (_, i) => `${'  '.repeat(i)}k:\n`).join('');
    const yaml = refused(`version: 1\napis: []\nx:\n${deepYaml.replace(/^/gm, '  ')}`);
    assert.equal(yaml.message.split('\n')[0], 'gw.yaml is not a valid gateway configuration (1 problem):');
    assert.match(yaml.problems[0]!.where, /^gw\.yaml:\d+:\d+$/);
    assert.equal(yaml.problems[0]!.message, 'nested too deeply (at most 64 levels of maps and lists)');
    const forty = (inner: string) => `${'['.repeat(40)}${inner}${']'.repeat(40)}`;
    const aliased = refused(`version: 1\napis: []\nx: &x ${forty('1')}\ny: ${forty('*x')}\n`);
    assert.equal(aliased.message.split('\n')[0], 'gw.yaml is not a valid gateway configuration (1 problem):');
    assert.deepEqual(aliased.problems, [
      { where: 'gw.yaml: (document)', message: 'nested too deeply (at most 64 levels of maps and lists, aliases expanded)' },
    ]);
    assert.deepEqual(problemsOf(`${'['.repeat(100)}${']'.repeat(100)}`, 'gw.json'), aliased.problems.map((p) => ({ ...p, where: 'gw.json: (document)' })));
    // JSON that is not valid is scanned again for where it breaks: that scan bounds its nesting too, counting each
    // map and list where it opens and where it closes, so that many shallow ones side by side are not deep.
    assert.deepEqual(problemsOf('['.repeat(100_000), 'gw.json'), [{ where: 'gw.json:1:65', message: 'not valid JSON: nested too deeply (at most 64 levels of maps and lists)' }]);
    assert.deepEqual(problemsOf(`${'{"a":'.repeat(65)}1`, 'gw.json'), [{ where: 'gw.json:1:321', message: 'not valid JSON: nested too deeply (at most 64 levels of maps and lists)' }]);
    const siblings = `[${Array(100).fill('[[], {}, {"a": [1]}, {"b": {}}]').join(', ')}, x]`;
    assert.deepEqual(problemsOf(siblings, 'gw.json'), [{ where: `gw.json:1:${siblings.length - 1}`, message: 'not valid JSON: unexpected "x"' }]);
    // The YAML parser recurses into flow collections: it runs out of stack before the nesting is checked.
    const flow = refused(`version: 1\napis: []\nx: ${'['.repeat(2000)}\n`);
    assert.equal(flow.problems[0]!.message, 'nested too deeply (at most 64 levels)');
  });

  test('an alias expanded more than 100 times is refused without expanding it', () => {
    const bomb = ['version: 1', 'apis: []', 'a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (const n of ['b', 'c', 'd', 'e', 'f', 'g']) bomb.push(`${n}: &${n} [${Array(10).fill(`*${String.fromCharCode(n.charCodeAt(0) - 1)}`).join(', ')}]`);
    assert.equal(
      refused(`${bomb.join('\n')}\n`).message,
      'gw.yaml is not a valid gateway configuration (1 problem):\n  gw.yaml: (document): aliases are expanded more than 100 times (a document that multiplies itself through aliases)',
    );
  });
});

describe('JSON syntax errors: each at its line and column', () => {
  const at = (text: string) => {
    const problems = problemsOf(text, 'gw.json');
    assert.equal(problems.length, 1);
    return `${problems[0]!.where} ${problems[0]!.message}`;
  };
  test('strings', () => {
    assert.equal(at('{"a":"x\ty"}'), 'gw.json:1:8 not valid JSON: control character in a string (write it as an escape, e.g. \\n)');
    assert.equal(at('{"a":"\\u12G4"}'), 'gw.json:1:8 not valid JSON: bad \\u escape: four hex digits expected');
    assert.equal(at('{"a":"\\x"}'), 'gw.json:1:8 not valid JSON: bad escape \\x');
    assert.equal(at('{"a":"abc'), 'gw.json:1:6 not valid JSON: unterminated string');
    assert.equal(at('{"a":"\\'), 'gw.json:1:8 not valid JSON: bad escape \\');
  });
  test('maps and lists', () => {
    assert.equal(at('{,}'), 'gw.json:1:2 not valid JSON: expected a property name in double quotes, found ","');
    assert.equal(at('{"a":1,}'), 'gw.json:1:8 not valid JSON: trailing comma before "}"');
    assert.equal(at('{"a" 1}'), 'gw.json:1:6 not valid JSON: expected ":" after the property name, found "1"');
    assert.equal(at('{"a"'), 'gw.json:1:5 not valid JSON: expected ":" after the property name, found end of input');
    assert.equal(at('[1 2]'), 'gw.json:1:4 not valid JSON: expected "," or "]" after an array element, found "2"');
    assert.equal(at('{} x'), 'gw.json:1:4 not valid JSON: unexpected "x" after the document');
    assert.equal(at('{"a":1}}'), 'gw.json:1:8 not valid JSON: unexpected "}" after the document');
  });
  test('what is valid before the error is read past: escapes, literals, numbers, empty maps and lists, white space', () => {
    assert.equal(
      at('{"a":"\\n\\u00e9\\"\\/\\b\\f\\r\\t\\\\","b":[true,false,null,-1.5e+3,0,{},[],{"c":[]}],\r\n\t"c": x}'),
      'gw.json:2:7 not valid JSON: unexpected "x"',
    );
    assert.equal(at(`[${'1'.repeat(500)}, x]`), 'gw.json:1:504 not valid JSON: unexpected "x"');
  });
  test('nesting: 64 levels are read, the 65th is refused, and 20,000 do not overflow the stack', () => {
    assert.equal(at(`${'['.repeat(64)}${']'.repeat(64)} x`), 'gw.json:1:130 not valid JSON: unexpected "x" after the document');
    assert.equal(at(`${'{"a":'.repeat(64)}1${'}'.repeat(64)} x`), 'gw.json:1:387 not valid JSON: unexpected "x" after the document');
    const tooDeep = 'not valid JSON: nested too deeply (at most 64 levels of maps and lists)';
    assert.equal(at(`${'['.repeat(65)}${']'.repeat(65)} x`), `gw.json:1:65 ${tooDeep}`);
    assert.equal(at('['.repeat(20_000)), `gw.json:1:65 ${tooDeep}`);
  });
});

describe('places', () => {
  test('formatPath: names, indexes, and names that need quotes', () => {
    assert.equal(formatPath([]), '(document)');
    assert.equal(formatPath(['apis', 0, 'policies', 'on-error', 1]), 'apis[0].policies.on-error[1]');
    assert.equal(formatPath([0, 'a']), '[0].a');
    assert.equal(formatPath(['/data', '$x_1', '9a', 'a b', 'x/', 'é']), '["/data"].$x_1["9a"]["a b"]["x/"]["é"]');
  });

  test('problemWhere: with the line for a parsed document, without for one built in code', () => {
    const doc = parseGatewayDocument(`version: 1\napis:\n${API}  - id: b\n    pathPrefix: /b\n    backend: { url: builtin:echo }\n`, 'gw.yaml');
    assert.equal(problemWhere(doc, 'gw.yaml', ['apis', 1, 'pathPrefix']), 'gw.yaml:5: apis[1].pathPrefix');
    assert.equal(problemWhere(doc, 'gw.yaml', ['apis', 1, 'backend', 'url']), 'gw.yaml:6: apis[1].backend.url');
    // A place that does not exist is reported at its closest parent's line.
    assert.equal(problemWhere(doc, 'gw.yaml', ['apis', 1, 'operations', 0]), 'gw.yaml:4: apis[1].operations[0]');
    assert.equal(problemWhere(doc, 'gw.yaml', ['apis', 0]), 'gw.yaml:3: apis[0]');
    assert.equal(problemWhere({ version: 1, apis: [] }, 'code', ['apis', 0]), 'code: apis[0]');
    assert.equal(problemWhere(null, 'code', ['version']), 'code: version');
    assert.equal(problemWhere('text', 'code', []), 'code: (document)');
  });
});

describe('what the schema cannot say, on documents the schema also refuses', () => {
  test('a document that is not a map, and APIs, backends and operations that are not maps, are refused without crashing a check', () => {
    assert.deepEqual(listed(problemsOf('just a string\n')), ['gw.yaml:1: (document): must be a map (got string "just a string")']);
    assert.deepEqual(
      listed(problemsOf(`version: 1
apis:
  - null
  - 5
  - { id: a, pathPrefix: /a, backend: null }
  - { id: b, pathPrefix: /b, backend: 5 }
  - id: c
    pathPrefix: /c
    backend: { url: builtin:echo }
    operations: [null]
`)),
      [
        'gw.yaml:3: apis[0]: must be a map (got null)',
        'gw.yaml:4: apis[1]: must be a map (got number 5)',
        'gw.yaml:5: apis[2].backend: needs one of "url" or "pool"',
        'gw.yaml:5: apis[2].backend: must be a map (got null)',
        'gw.yaml:6: apis[3].backend: needs one of "url" or "pool"',
        'gw.yaml:6: apis[3].backend: must be a map (got number 5)',
        'gw.yaml:10: apis[4].operations[0]: must be a map (got null)',
      ],
    );
  });

  test('routes: prefixes compared without their trailing "/", hosts without case; an API without an id is named by its place', () => {
    assert.deepEqual(
      listed(problemsOf(`version: 1
apis:
  - { id: 5, pathPrefix: /p, backend: { url: builtin:echo } }
  - { id: b, pathPrefix: /p/, backend: { url: builtin:echo } }
  - { id: c, pathPrefix: x, backend: { url: builtin:echo } }
  - { id: d, pathPrefix: x, backend: { url: builtin:echo } }
  - { id: e, pathPrefix: /h, hosts: [x.example, y.example], backend: { url: builtin:echo } }
  - { id: f, pathPrefix: /h, hosts: [z.example, 5], backend: { url: builtin:echo } }
  - { id: g, pathPrefix: /h, hosts: [X.example, y.example, z.example, w.example], backend: { url: "http://example.com/#" } }
`)),
      [
        'gw.yaml:3: apis[0].id: must be a string (got number 5)',
        'gw.yaml:4: apis[1].pathPrefix: must not end with "/" (write "/p")',
        'gw.yaml:4: apis[1].pathPrefix: same pathPrefix as apis[0] and neither has hosts: a request could go to either (give them different prefixes or hosts)',
        // Prefixes the schema refuses are not compared.
        'gw.yaml:5: apis[2].pathPrefix: must start with "/" (got "x")',
        'gw.yaml:6: apis[3].pathPrefix: must start with "/" (got "x")',
        'gw.yaml:8: apis[5].hosts[1]: must be a string (got number 5)',
        // One problem for each API it shares hosts with, naming them all.
        'gw.yaml:9: apis[6].hosts: same pathPrefix as apis[4] (e), and both answer to x.example, y.example: a request could go to either',
        'gw.yaml:9: apis[6].hosts: same pathPrefix as apis[5] (f), and both answer to z.example: a request could go to either',
        'gw.yaml:9: apis[6].backend.url: must not have a fragment',
      ],
    );
  });

  test('URL templates: queries, braces, parameter names, empty segments; operations compared only when both are sound', () => {
    assert.deepEqual(
      listed(problemsOf(`version: 1
apis:
  - id: a
    pathPrefix: /a
    backend: { url: builtin:echo }
    operations:
      - { id: o1, method: GET, urlTemplate: "/x?y" }
      - { id: o2, method: GET, urlTemplate: "/}{" }
      - { id: o3, method: GET, urlTemplate: "/{{a}}" }
      - { id: o4, method: GET, urlTemplate: "/{-a}/{a-b}/{_c}" }
      - { id: o5, method: GET, urlTemplate: "/a//b" }
      - { id: o6, method: GET, urlTemplate: "/a/b/" }
      - { id: o7, method: GET, urlTemplate: x }
      - { id: o8, method: GET, urlTemplate: /x }
      - { id: o9, method: 5, urlTemplate: /m }
      - { id: o10, method: 5, urlTemplate: /m }
      - { id: o11, method: GET, urlTemplate: "/x?y" }
`)),
      [
        'gw.yaml:7: apis[0].operations[0].urlTemplate: must be a path only, without "?" or "#" (queries are not matched)',
        'gw.yaml:8: apis[0].operations[1].urlTemplate: unbalanced braces in segment "}{"',
        'gw.yaml:9: apis[0].operations[2].urlTemplate: unbalanced braces in segment "{{a}}"',
        'gw.yaml:10: apis[0].operations[3].urlTemplate: parameter name "-a" must be letters, digits, "_" and "-", not starting with a digit or "-"',
        'gw.yaml:12: apis[0].operations[5].urlTemplate: same method and URL template as operations[4]: this operation would never be reached',
        'gw.yaml:13: apis[0].operations[6].urlTemplate: must start with "/" (got "x")',
        'gw.yaml:15: apis[0].operations[8].method: must be a string (got number 5)',
        'gw.yaml:16: apis[0].operations[9].method: must be a string (got number 5)',
        'gw.yaml:17: apis[0].operations[10].urlTemplate: must be a path only, without "?" or "#" (queries are not matched)',
      ],
    );
  });

  test('each pattern is explained in words, and a policy entry names the fields it has or needs', () => {
    assert.deepEqual(
      listed(problemsOf(`version: 1
apis:
  - { id: a, pathPrefix: /a, hosts: ["bad host"], backend: { url: builtin:echo }, operations: [{ id: o, method: get, urlTemplate: /x }], policies: { inbound: [{ policy: Bad }] } }
  - { id: Bad, pathPrefix: /b, backend: { url: builtin:echo }, policies: { inbound: [{ policy: x, module: y, source: z }, {}] } }
`)),
      [
        'gw.yaml:3: apis[0].hosts[0]: must be a host name (api.example.com), a wildcard (*.example.com) or an IP address, without port (got "bad host")',
        'gw.yaml:3: apis[0].operations[0].method: must be an HTTP method in upper case (GET, POST, ...) or "*" (got "get")',
        'gw.yaml:3: apis[0].policies.inbound[0].policy: must be the name of a built-in policy (lowercase letters, digits and dashes) (got "Bad")',
        'gw.yaml:4: apis[1].id: must be lowercase letters, digits and dashes, starting with a letter or digit, at most 64 characters (got "Bad")',
        'gw.yaml:4: apis[1].policies.inbound[0]: has "policy" and "module" and "source": give exactly one of "policy", "module", "source", "choose", "set-variable", "include-fragment", "send-request", "send-one-way-request", "retry", "wait", "set-body", "trace", "cache-lookup", "cache-store", "cache-lookup-value", "cache-store-value" or "cache-remove-value"',
        'gw.yaml:4: apis[1].policies.inbound[1]: needs one of "policy", "module", "source", "choose", "set-variable", "include-fragment", "send-request", "send-one-way-request", "retry", "wait", "set-body", "trace", "cache-lookup", "cache-store", "cache-lookup-value", "cache-store-value" or "cache-remove-value"',
      ],
    );
  });
});
