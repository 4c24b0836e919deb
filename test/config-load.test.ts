// The gateway configuration document read and checked (runtime/config/load.ts): every document that cannot be used is
// refused with each problem named by file, line and path in the document, in plain words. Documents are strings and
// files in a temporary folder, read straight through the loader: nothing here starts a gateway or builds a policy.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  ConfigError,
  defaultDocumentFile,
  gatewaySchema,
  parseGatewayDocument,
  readGatewayDocument,
} from '../runtime/config/load.ts';
import { repoRoot } from '../runtime/platform/paths.ts';
import { messageAt, problemsOf } from './support/config-problems.ts';

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
    const doc = await readGatewayDocument(defaultDocumentFile());
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
    assert.match(at(2, 'colour'), /unknown property \(allowed here: .*version, settings, policies, apis/);
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
    assert.match(at(24, 'apis[1].policies.inbound[0]'), /has "policy" and "module": give exactly one of "policy", "module" or "source"/);
    assert.match(at(26, 'apis[1].policies.inbound[1]'), /needs one of "policy", "module" or "source"/);
    assert.match(at(27, 'apis[1].policies.inbound[2].policy'), /name of a built-in policy/);
    assert.match(at(28, 'apis[1].policies.inbound[2].grants.filesystem.data'), /guest path must be absolute/);
    assert.match(at(28, 'apis[1].policies.inbound[2].grants.http.allowedHosts'), /must not be empty/);
    assert.match(at(28, 'apis[1].policies.inbound[2].grants.wasi'), /must be true or false \(got number 1\)/);
    assert.match(at(28, 'apis[1].policies.inbound[2].grants.network'), /unknown property \(allowed here: wasi, filesystem, http, backend, counters\)/);
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

