// Where policies may send traffic (abi/policy-abi.md: field 14 BACKEND_URL, section 5 HTTP effect, section 6 network).
// BACKEND_URL and the HTTP effect reach only the hosts and ports a grant names; loopback, link-local and unspecified
// addresses and the gateway's own listeners only when the grant names them exactly; a name is resolved once and the
// address checked is the address connected to; HTTP effects in flight are bounded per gateway. Real servers on
// 127.0.0.1, real gateway processes, and modules written by hand in WebAssembly text (not built by our SDK) next to one
// built by it.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { selfSignedCertificate } from '../scripts/lib/certificate.ts';
import { ConfigError } from '../runtime/config/config-error.ts';
import { parseGatewayDocument } from '../runtime/config/parse-document.ts';
import { GatewayEffects } from '../runtime/pipeline/effects.ts';
import { EgressGuard } from '../runtime/network/egress-guard.ts';
import { MemoryCounterStore } from '../runtime/state/counter-store.ts';
import { PolicyConfigError, PolicyFailure, type Grants, type PolicyModule } from '../runtime/policy-host/index.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { buildFixture, makeExchange, newHost, wat, watDescriptor, type TestHost } from './support/policies.ts';
import { freePort } from './support/ports.ts';
import { send, startRecordingBackend, type RecordingBackend } from './support/requests.ts';

// --- modules written by hand ------------------------------------------------------------------------------------

/** on_inbound and on_backend write the configuration's `url` into BACKEND_URL (field 14), whatever it is. */
async function backendSetter(): Promise<Uint8Array> {
  const d = watDescriptor('{"name":"raw-backend-setter","version":"1"}');
  return wat(`(module
    ${d.imports}
    (import "gatehouse:host/v1" "get" (func $get (param i32 i32 i32 i32 i32) (result i32)))
    (import "gatehouse:host/v1" "set" (func $set (param i32 i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    ${d.data}
    (data (i32.const 2048) "url")
    ${d.func}
    (func $route (result i32)
      (local $n i32)
      (local.set $n (call $get (i32.const 12) (i32.const 2048) (i32.const 3) (i32.const 4096) (i32.const 4096)))
      (if (i32.gt_s (local.get $n) (i32.const 0))
        (then (drop (call $set (i32.const 14) (i32.const 0) (i32.const 0) (i32.const 4096) (local.get $n)))))
      (i32.const 0))
    (func (export "on_inbound") (result i32) (call $route))
    (func (export "on_backend") (result i32) (call $route))
  )`);
}

/**
 * Asks for `count` HTTP effects at once (`<base>/000` to `<base>/<count-1>`), then sets the response headers `x-ok` and
 * `x-errors` (how many results were answers and how many `{"error": ...}`) and `x-first-error` (the first error result).
 */
async function fanOut(base: string, count: number): Promise<Uint8Array> {
  const request = `{"url":"${base}/000"}`;
  const digits = 8192 + request.length - 5; // where "000" is
  const d = watDescriptor('{"name":"raw-fan-out","version":"1"}');
  return wat(`(module
    ${d.imports}
    (import "gatehouse:host/v1" "set" (func $set (param i32 i32 i32 i32 i32) (result i32)))
    (import "gatehouse:host/v1" "effect" (func $effect (param i32 i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    ${d.data}
    (data (i32.const 2200) "x-ok")
    (data (i32.const 2208) "x-errors")
    (data (i32.const 2220) "x-first-error")
    (data (i32.const 8192) "${request.replace(/"/g, '\\"')}")
    ${d.func}
    (func $three (param $v i32) (param $at i32)
      (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.div_u (local.get $v) (i32.const 100))))
      (i32.store8 (i32.add (local.get $at) (i32.const 1))
        (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $v) (i32.const 10)) (i32.const 10))))
      (i32.store8 (i32.add (local.get $at) (i32.const 2)) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10)))))
    (func (export "on_inbound") (result i32)
      (local $i i32) (local $n i32) (local $pending i32) (local $ok i32) (local $errors i32) (local $first i32)
      (loop $next
        (call $three (local.get $i) (i32.const ${digits}))
        (local.set $n (call $effect (i32.const 2) (i32.const 8192) (i32.const ${request.length}) (i32.const 16384) (i32.const 32768)))
        (if (i32.eq (local.get $n) (i32.const -1))
          (then (local.set $pending (i32.const 1)))
          (else
            ;; {"error":... or {"status":...: the third byte tells them apart.
            (if (i32.eq (i32.load8_u (i32.const 16386)) (i32.const 101))
              (then
                (local.set $errors (i32.add (local.get $errors) (i32.const 1)))
                (if (i32.eqz (local.get $first))
                  (then
                    (memory.copy (i32.const 49152) (i32.const 16384) (local.get $n))
                    (local.set $first (local.get $n)))))
              (else (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $next (i32.lt_u (local.get $i) (i32.const ${count}))))
      (if (local.get $pending) (then (return (i32.const 0))))
      (call $three (local.get $ok) (i32.const 2100))
      (drop (call $set (i32.const 9) (i32.const 2200) (i32.const 4) (i32.const 2100) (i32.const 3)))
      (call $three (local.get $errors) (i32.const 2100))
      (drop (call $set (i32.const 9) (i32.const 2208) (i32.const 8) (i32.const 2100) (i32.const 3)))
      (if (local.get $first)
        (then (drop (call $set (i32.const 9) (i32.const 2220) (i32.const 13) (i32.const 49152) (local.get $first)))))
      (i32.const 0))
  )`);
}

// --- servers ------------------------------------------------------------------------------------------------------

interface CountingServer {
  server: Server;
  port: number;
  /** Requests received. */
  requests: number;
  /** The most connections open at once, and the most requests waiting for their answer at once. */
  maxConnections: number;
  maxRequests: number;
  close(): Promise<void>;
}

/** Answers `ok` to every request after `holdMs`, counting connections and requests open at once. */
async function startCountingServer(holdMs: number): Promise<CountingServer> {
  let connections = 0;
  let requests = 0;
  const state = { requests: 0, maxConnections: 0, maxRequests: 0 };
  const server = createServer((_req, res) => {
    state.requests++;
    requests++;
    state.maxRequests = Math.max(state.maxRequests, requests);
    setTimeout(() => {
      requests--;
      res.end('ok');
    }, holdMs);
  });
  server.on('connection', (socket) => {
    connections++;
    state.maxConnections = Math.max(state.maxConnections, connections);
    socket.on('close', () => connections--);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return Object.assign(state, {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  }) as CountingServer;
}

/** The first IPv4 address of this machine that is not loopback (the gateway's data plane listens on all of them). */
function localNonLoopbackIPv4(): string | null {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return null;
}

// --- in the policy host -----------------------------------------------------------------------------------------

let t: TestHost;
let setter: PolicyModule;
let httpCall: PolicyModule;
let bound = 0;

before(async () => {
  t = newHost();
  setter = await t.host.load(await backendSetter());
  httpCall = await t.host.load(await buildFixture('http-call'));
});

/** Runs the hand-written module that writes `url` into BACKEND_URL, with `grants`; resolves with the exchange. */
async function writeBackend(url: string, grants?: Grants) {
  const exchange = makeExchange();
  await t.host.bind({ id: `backend/${bound++}`, phase: 'inbound', module: setter, config: { url }, grants }).run('inbound', exchange);
  return exchange;
}

/** The same, expecting the call to fail for want of a capability; resolves with the failure. */
async function backendRefused(url: string, grants?: Grants): Promise<PolicyFailure> {
  const outcome = await writeBackend(url, grants).then(
    (exchange) => exchange.backendUrl,
    (e: unknown) => e,
  );
  assert.ok(outcome instanceof PolicyFailure, `${url} with ${JSON.stringify(grants)}: expected a failure, the backend became ${String(outcome)}`);
  assert.equal(outcome.reason, 'capability', outcome.message);
  return outcome;
}

/** Calls `url` through the HTTP effect (the SDK-built http-call fixture); resolves with the exchange. */
async function callHttp(url: string, grants: Grants) {
  const exchange = makeExchange();
  await t.host.bind({ id: `http/${bound++}`, phase: 'inbound', module: httpCall, config: { url }, grants }).run('inbound', exchange);
  return exchange;
}

async function httpRefused(url: string, grants: Grants): Promise<PolicyFailure> {
  const outcome = await callHttp(url, grants).then(
    (exchange) => exchange.request.headers.get('x-lookup-status')?.[0] ?? `answered ${exchange.response.status}`,
    (e: unknown) => e,
  );
  assert.ok(outcome instanceof PolicyFailure, `${url} with ${JSON.stringify(grants)}: expected a failure, got ${String(outcome)}`);
  assert.equal(outcome.reason, 'capability', outcome.message);
  return outcome;
}

const body = (exchange: { response: { body: Uint8Array | null } }) => new TextDecoder().decode(exchange.response.body ?? new Uint8Array(0));

/** Every way to write an address that only an exact grant entry may reach, with what it is. */
const SPECIAL = (port: number): [string, RegExp][] => [
  [`http://127.0.0.1:${port}/`, /127\.0\.0\.1.*loopback/],
  [`http://127.9.8.7:${port}/`, /127\.9\.8\.7.*loopback/],
  [`http://2130706433:${port}/`, /127\.0\.0\.1.*loopback/],
  [`http://0x7f000001:${port}/`, /127\.0\.0\.1.*loopback/],
  [`http://0177.0.0.1:${port}/`, /127\.0\.0\.1.*loopback/],
  [`http://0x7f.1:${port}/`, /127\.0\.0\.1.*loopback/],
  [`http://127.1:${port}/`, /127\.0\.0\.1.*loopback/],
  [`http://[::1]:${port}/`, /\[::1\].*loopback/],
  [`http://[0:0:0:0:0:0:0:1]:${port}/`, /\[::1\].*loopback/],
  [`http://[::ffff:127.0.0.1]:${port}/`, /\[::ffff:7f00:1\].*loopback/],
  [`http://[::ffff:7f00:2]:${port}/`, /loopback/],
  [`http://[::127.0.0.1]:${port}/`, /loopback/],
  [`http://0.0.0.0:${port}/`, /0\.0\.0\.0.*unspecified/],
  [`http://0:${port}/`, /0\.0\.0\.0.*unspecified/],
  [`http://[::]:${port}/`, /\[::\].*unspecified/],
  [`http://[::ffff:0.0.0.0]:${port}/`, /unspecified/],
  [`http://169.254.169.254:${port}/`, /169\.254\.169\.254.*link-local/],
  [`http://[::ffff:169.254.0.1]:${port}/`, /link-local/],
  [`http://[fe80::1]:${port}/`, /\[fe80::1\].*link-local/],
  [`http://[febf:ffff::1]:${port}/`, /link-local/],
];

describe('BACKEND_URL needs the backend grant (a module written by hand)', () => {
  test('without a grant, writing another backend fails the call, naming the policy, the host:port and the grant it needs', async () => {
    const err = await backendRefused('https://orders-v2.internal:8443/api');
    assert.match(err.message, /raw-backend-setter/);
    assert.match(err.message, /orders-v2\.internal:8443/);
    assert.match(err.message, /"backend" grant/);
    assert.match(err.message, /grants\.backend\.allowedHosts/);
  });

  test("writing back the API's own backend URL needs no grant", async () => {
    const exchange = await writeBackend('http://127.0.0.1:1');
    assert.equal(exchange.backendUrl, 'http://127.0.0.1:1');
  });

  test('an entry with a port allows that port only; one without allows the scheme default (80 for http, 443 for https)', async () => {
    const withPort = { backend: { allowedHosts: ['orders-v2.internal:8443'] } };
    assert.equal((await writeBackend('https://orders-v2.internal:8443/api', withPort)).backendUrl, 'https://orders-v2.internal:8443/api');
    assert.match((await backendRefused('https://orders-v2.internal:9443/api', withPort)).message, /orders-v2\.internal:9443.*does not name it/);
    await backendRefused('https://orders-v2.internal/api', withPort);
    const noPort = { backend: { allowedHosts: ['orders-v2.internal'] } };
    await writeBackend('https://orders-v2.internal/api', noPort);
    await writeBackend('http://orders-v2.internal/api', noPort);
    await writeBackend('https://orders-v2.internal:443/api', noPort);
    await backendRefused('http://orders-v2.internal:443/api', noPort);
    await backendRefused('https://orders-v2.internal:8443/api', noPort);
  });

  test('*.example.com:443 allows the names below example.com on that port, not example.com itself nor another host', async () => {
    const grants = { backend: { allowedHosts: ['*.svc.example.com:443'] } };
    await writeBackend('https://orders.svc.example.com/v1', grants);
    await writeBackend('https://a.b.svc.example.com/v1', grants);
    await backendRefused('https://svc.example.com/v1', grants);
    await backendRefused('https://orders.svc.example.com:8443/v1', grants);
    await backendRefused('https://evilsvc.example.com/v1', grants);
    await backendRefused('https://orders.svc.example.com.evil.test/v1', grants);
  });

  test('loopback, link-local and unspecified addresses, in every spelling, are refused through a wildcard entry', async () => {
    const grants = { backend: { allowedHosts: ['*:8082'] } };
    await writeBackend('http://10.1.2.3:8082/', grants); // an ordinary address: the wildcard admits it
    for (const [url, what] of SPECIAL(8082)) {
      const err = await backendRefused(url, grants);
      assert.match(err.message, what, url);
      assert.match(err.message, /names it exactly/, url);
    }
  });

  test('an exact entry names a loopback address: that address and port only', async () => {
    const grants = { backend: { allowedHosts: ['127.0.0.1:8082', '[::1]:8082'] } };
    assert.equal((await writeBackend('http://127.0.0.1:8082/metrics', grants)).backendUrl, 'http://127.0.0.1:8082/metrics');
    await writeBackend('http://0x7f.0.0.1:8082/', grants); // the same address, however it is spelt
    await writeBackend('http://[0::1]:8082/', grants);
    await backendRefused('http://127.0.0.2:8082/', grants);
    await backendRefused('http://127.0.0.1:8083/', grants);
    await backendRefused('http://[::ffff:127.0.0.1]:8082/', grants);
  });
});

describe('grant entries are checked when a policy is bound', () => {
  test('each bad entry is named with its place and what is wrong, for the http and backend grants alike', () => {
    const err = (() => {
      try {
        t.host.bind({
          id: 'grants/bad',
          phase: 'inbound',
          module: setter,
          grants: {
            backend: { allowedHosts: ['orders.internal:8443', 'example.com:99999', 'api.example.com:*', 'https://x.example.com', '::1:80'] },
            http: { allowedHosts: ['*.example.com:0', 'a.*.example.com', '0177.0.0.1:80', 'host:', '*.10.0.0.1'] },
          } as Grants,
        });
      } catch (e) {
        return e;
      }
      return null;
    })();
    assert.ok(err instanceof PolicyConfigError, String(err));
    const text = err.problems.join('\n');
    assert.match(text, /grants\.backend\.allowedHosts\[1\]: "example\.com:99999" has a port outside 1-65535/);
    assert.match(text, /grants\.backend\.allowedHosts\[2\]: "api\.example\.com:\*" .*name each port/);
    assert.match(text, /grants\.backend\.allowedHosts\[3\]: "https:\/\/x\.example\.com" .*without a scheme/);
    assert.match(text, /grants\.backend\.allowedHosts\[4\]: "::1:80" .*brackets/);
    assert.match(text, /grants\.http\.allowedHosts\[0\]: "\*\.example\.com:0" has a port outside 1-65535/);
    assert.match(text, /grants\.http\.allowedHosts\[1\]: "a\.\*\.example\.com" .*wildcard/);
    assert.match(text, /grants\.http\.allowedHosts\[2\]: "0177\.0\.0\.1:80" .*127\.0\.0\.1/);
    assert.match(text, /grants\.http\.allowedHosts\[3\]: "host:" .*empty port/);
    assert.match(text, /grants\.http\.allowedHosts\[4\]: "\*\.10\.0\.0\.1" .*wildcard/);
    assert.doesNotMatch(text, /allowedHosts\[0\]: "orders/);
  });

  test('a configuration document with grants.backend is read; one with an entry that has a scheme or a path is refused at its place', () => {
    const doc = (hosts: string) => `
version: 1
apis:
  - id: a
    pathPrefix: /a
    backend: { url: "http://127.0.0.1:1" }
    policies:
      inbound:
        - module: x.wasm
          grants: { backend: { allowedHosts: [${hosts}] } }
`;
    parseGatewayDocument(doc('"orders.internal:8443", "*.svc.example.com:443"'), 'gw.yaml');
    const err = (() => {
      try {
        parseGatewayDocument(doc('"orders.internal:8443", "https://orders.internal/api"'), 'gw.yaml');
      } catch (e) {
        return e;
      }
      return null;
    })();
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, /gw\.yaml:10: apis\[0\]\.policies\.inbound\[0\]\.grants\.backend\.allowedHosts\[1\]: .*host and port/);
  });
});

describe('the HTTP effect reaches only what its grant names', () => {
  let lookup: RecordingBackend;
  before(async () => {
    lookup = await startRecordingBackend(({ url }) => ({ body: `answer for ${url}` }));
  });
  after(() => new Promise<void>((r) => lookup.server.close(() => r())));

  test('the granted host and port answers; another port of the same host fails the call', async () => {
    const grants = { http: { allowedHosts: [`127.0.0.1:${lookup.port}`] } };
    const ok = await callHttp(`http://127.0.0.1:${lookup.port}/users/7`, grants);
    assert.equal(ok.request.headers.get('x-lookup-body')?.[0], 'answer for /users/7');
    const err = await httpRefused(`http://127.0.0.1:${lookup.port + 1}/users/7`, grants);
    assert.match(err.message, new RegExp(`may not call 127\\.0\\.0\\.1:${lookup.port + 1}`));
    // Without a port, an entry allows port 80 only.
    await httpRefused(`http://127.0.0.1:${lookup.port}/users/7`, { http: { allowedHosts: ['127.0.0.1'] } });
  });

  test('loopback, link-local and unspecified addresses, in every spelling, are refused through a wildcard entry', async () => {
    const before = lookup.seen.length;
    for (const [url, what] of SPECIAL(lookup.port)) {
      assert.match((await httpRefused(url, { http: { allowedHosts: [`*:${lookup.port}`] } })).message, what, url);
    }
    assert.equal(lookup.seen.length, before, 'nothing reached the server');
  });

  test('a name that resolves to 127.0.0.1 (localhost) is refused through a wildcard entry, and reached when named exactly', async () => {
    const before = lookup.seen.length;
    const err = await httpRefused(`http://localhost:${lookup.port}/x`, { http: { allowedHosts: [`*:${lookup.port}`] } });
    assert.match(err.message, /localhost/);
    assert.match(err.message, /127\.0\.0\.1/);
    assert.match(err.message, /loopback/);
    assert.equal(lookup.seen.length, before, 'the connection was refused before it was made');
    const ok = await callHttp(`http://localhost:${lookup.port}/named`, { http: { allowedHosts: [`localhost:${lookup.port}`] } });
    assert.equal(ok.request.headers.get('x-lookup-body')?.[0], 'answer for /named');
    assert.equal(lookup.seen.at(-1)?.headers.host, `localhost:${lookup.port}`, 'the Host is the name, not the address');
  });

  test('HTTP effects of concurrent requests: at most 64 in flight in the gateway, the rest get an error result naming the limit', async () => {
    const counting = await startCountingServer(300);
    try {
      const { host } = newHost();
      const grants = { http: { allowedHosts: [`127.0.0.1:${counting.port}`] } };
      // One call may ask for 16 effects (MAX_EFFECTS_PER_CALL); 200 from one call fail it before any is sent.
      const greedy = host.bind({ id: 'fan-out/200', phase: 'inbound', module: await host.load(await fanOut(`http://127.0.0.1:${counting.port}/e`, 200)), grants });
      await assert.rejects(greedy.run('inbound', makeExchange()), /asked for more than 16 effects in one call/);
      assert.equal(counting.requests, 0);
      // Twelve requests of 16 effects at once: 192 asked for.
      const binding = host.bind({ id: 'fan-out/16', phase: 'inbound', module: await host.load(await fanOut(`http://127.0.0.1:${counting.port}/e`, 16)), grants });
      await binding.warm();
      const exchanges = Array.from({ length: 12 }, () => makeExchange());
      await Promise.all(exchanges.map((exchange) => binding.run('inbound', exchange)));
      assert.ok(counting.maxConnections <= 64, `${counting.maxConnections} connections at once`);
      assert.ok(counting.maxRequests <= 64, `${counting.maxRequests} requests at once`);
      const count = (name: string) => exchanges.reduce((n, e) => n + Number(e.response.headers.get(name)?.[0]), 0);
      const ok = count('x-ok');
      const errors = count('x-errors');
      assert.equal(ok + errors, 192);
      assert.equal(ok, counting.requests);
      assert.ok(errors >= 128, `${errors} effects refused`);
      const first = exchanges.map((e) => e.response.headers.get('x-first-error')?.[0]).find((v) => v !== undefined);
      const error = (JSON.parse(first ?? '{}') as { error?: string }).error ?? '';
      assert.match(error, /64 HTTP effects in flight/);
      assert.match(error, /GATEHOUSE_POLICY_HTTP_IN_FLIGHT/);
    } finally {
      await counting.close();
    }
  });

  test('a response larger than 1 MiB is refused without being read: at its head when it declares its length, else as soon as it passes 1 MiB', async () => {
    let written = 0;
    let declaredBodyStarted = false;
    const server = createServer((req, res) => {
      if (req.url === '/declared') {
        res.writeHead(200, { 'content-length': String(8 << 20) });
        res.flushHeaders();
        // The body comes late: a host that waits for it before refusing is seen.
        setTimeout(() => {
          declaredBodyStarted = true;
          res.end(Buffer.alloc(8 << 20, 0x61));
        }, 1500).unref();
        return;
      }
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      const pump = () => {
        while (!res.destroyed && written < 256 << 20) {
          written += chunk.byteLength;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const grants = { http: { allowedHosts: [`127.0.0.1:${port}`] } };
      const declared = await callHttp(`http://127.0.0.1:${port}/declared`, grants);
      assert.equal(declared.response.status, 502);
      assert.match(body(declared), /larger than 1048576 bytes/);
      assert.equal(declaredBodyStarted, false, 'refused at the head, before the body was sent');
      const endless = await callHttp(`http://127.0.0.1:${port}/endless`, grants);
      assert.equal(endless.response.status, 502);
      assert.match(body(endless), /larger than 1048576 bytes/);
      assert.ok(written < 32 << 20, `${written} bytes were sent before the host stopped reading`);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('a name a wildcard admitted is resolved once, checked, and connected to on the address checked', () => {
  // A resolver standing in for DNS, so that a name can answer what a rebinding attacker's would: the machine's own
  // non-loopback address (where the test servers listen), then 127.0.0.1.
  const ownAddress = localNonLoopbackIPv4();
  const skip = ownAddress === null && 'no non-loopback IPv4 address here';

  test('the Host stays the name; when the name resolves to 127.0.0.1 the next time (DNS rebinding), the new connection is refused', { skip }, async () => {
    const answers = [[ownAddress!], ['127.0.0.1']];
    const guard = new EgressGuard({ resolve: async () => answers.shift() ?? ['127.0.0.1'] });
    const hosts: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      hosts.push(req.headers.host);
      // Closed after each answer: the next effect connects, and so resolves, again.
      res.setHeader('connection', 'close');
      res.end('pinned');
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const { host } = newHost(new GatewayEffects({ counters: new MemoryCounterStore(), egress: guard }));
      const module = await host.load(await buildFixture('http-call'));
      const binding = host.bind({
        id: 'rebinding/0',
        phase: 'inbound',
        module,
        config: { url: `http://orders.test:${port}/a` },
        grants: { http: { allowedHosts: [`*.test:${port}`] } },
      });
      const first = makeExchange();
      await binding.run('inbound', first);
      assert.equal(first.request.headers.get('x-lookup-body')?.[0], 'pinned');
      assert.deepEqual(hosts, [`orders.test:${port}`]);
      const err = await binding.run('inbound', makeExchange()).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof PolicyFailure, String(err));
      assert.equal(err.reason, 'capability');
      assert.match(err.message, /orders\.test resolved to 127\.0\.0\.1, a loopback address/);
      assert.equal(hosts.length, 1, 'the second connection was not made');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('the HTTP effect through *.example.com: names below it (any depth, any case) are resolved and reached; evilexample.com, example.com.evil.net and example.com are refused unresolved', { skip }, async () => {
    const resolved: string[] = [];
    const guard = new EgressGuard({
      resolve: async (name: string) => {
        resolved.push(name);
        return [ownAddress!];
      },
    });
    // Closed after each answer: every call connects, and so resolves, again.
    const server = createServer((req, res) => {
      res.setHeader('connection', 'close');
      res.end(`reached ${req.headers.host}`);
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const { host } = newHost(new GatewayEffects({ counters: new MemoryCounterStore(), egress: guard }));
      const module = await host.load(await buildFixture('http-call'));
      /** Runs the http-call fixture on `name` with the grant `*.example.com:<port>`: the exchange, or what the call threw. */
      const call = async (name: string) => {
        const exchange = makeExchange();
        const grants = { http: { allowedHosts: [`*.example.com:${port}`] } };
        const binding = host.bind({ id: `wildcard/${bound++}`, phase: 'inbound', module, config: { url: `http://${name}:${port}/` }, grants });
        return binding.run('inbound', exchange).then(
          () => exchange,
          (e: unknown) => e,
        );
      };
      // URLs lower-case their host, so the entry matches names in any case.
      for (const name of ['a.example.com', 'a.b.example.com', 'A.Example.COM']) {
        const exchange = await call(name);
        assert.ok(!(exchange instanceof Error), `${name}: ${String(exchange)}`);
        assert.equal((exchange as ReturnType<typeof makeExchange>).request.headers.get('x-lookup-body')?.[0], `reached ${name.toLowerCase()}:${port}`, name);
      }
      // A final dot makes another name (abi/policy-abi.md), outside the entry like the others.
      for (const name of ['evilexample.com', 'example.com.evil.net', 'example.com', 'a.example.co', 'a.example.com.']) {
        const err = await call(name);
        assert.ok(err instanceof PolicyFailure, `${name}: expected a failure, got ${String(err)}`);
        assert.equal(err.reason, 'capability', err.message);
        assert.match(err.message, /does not name it/, name);
      }
      assert.deepEqual(resolved, ['a.example.com', 'a.b.example.com', 'a.example.com'], 'only the names the entry admits are resolved');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('TLS: the certificate is checked against the name while the connection goes to the checked address', { skip }, async () => {
    const cert = selfSignedCertificate(tempDir(), 'orders-test', 'DNS:orders.test');
    const server = createHttpsServer({ cert: cert.cert, key: cert.key }, (req, res) => res.end(`tls ${req.headers.host}`));
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const port = (server.address() as AddressInfo).port;
    const guard = new EgressGuard({ resolve: async () => [ownAddress!] });
    const agent = new Agent({ connect: guard.connector({ ca: cert.cert }) });
    try {
      const res = await request(`https://orders.test:${port}/`, { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), `tls orders.test:${port}`);
      // The server name is the URL's name, not the address: a name the certificate does not hold fails.
      await assert.rejects(request(`https://other.test:${port}/`, { dispatcher: agent }), /other\.test|altname|certificate/i);
      // The same machine, but this port is one of the gateway's own: refused once registered.
      guard.addOwnListener(port);
      await assert.rejects(request(`https://again.test:${port}/`, { dispatcher: agent }), /one of this gateway's own listeners/);
    } finally {
      await agent.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

// --- through real gateway processes -----------------------------------------------------------------------------

/** Sends a request to a gateway with a fresh connection, and reads the whole answer. */
const get = (gateway: GatewayProcess, path: string) => send(gateway.url, path, { headers: { connection: 'close' } });

describe('a gateway with policies that were given no grant', () => {
  let dir: string;
  let main: RecordingBackend;
  let counting: CountingServer;
  let adminPort: number;
  let gateway: GatewayProcess;

  before(async () => {
    dir = tempDir();
    main = await startRecordingBackend(() => ({ body: 'main' }));
    counting = await startCountingServer(300);
    adminPort = await freePort();
    writeFileSync(join(dir, 'backend-setter.wasm'), await backendSetter());
    writeFileSync(join(dir, 'fan-out.wasm'), await fanOut(`http://127.0.0.1:${counting.port}/e`, 16));
    const config = writeConfig(
      dir,
      'gw.yaml',
      `
version: 1
apis:
  - id: nogrant
    pathPrefix: /nogrant
    backend: { url: "http://127.0.0.1:${main.port}" }
    policies:
      inbound:
        - module: ./backend-setter.wasm
          config: { url: "http://127.0.0.1:${adminPort}/metrics" }
  - id: fanout
    pathPrefix: /fanout
    backend: { url: "http://127.0.0.1:${main.port}" }
    policies:
      inbound:
        - module: ./fan-out.wasm
          grants: { http: { allowedHosts: ["127.0.0.1:${counting.port}"] } }
`,
    );
    gateway = await startGatewayProcess({
      config,
      env: { GATEHOUSE_ADMIN_PORT: String(adminPort), GATEHOUSE_POLICY_HTTP_IN_FLIGHT: '10' },
    });
  });

  after(async () => {
    await gateway?.stop();
    await counting?.close();
    await new Promise<void>((r) => (main ? main.server.close(() => r()) : r()));
  });

  test("BACKEND_URL to the gateway's own admin listener: the client does not get /metrics, and the log says what grant is missing", async () => {
    const res = await get(gateway, '/nogrant');
    assert.doesNotMatch(res.body, /# HELP|gatehouse_/, 'the admin listener answered the data-plane client');
    assert.equal(res.status, 500, res.body);
    assert.match(res.body, /failed \(capability\)/);
    const line = await gateway.waitForLog((l) => l.msg === 'policy call failed' && l.reason === 'capability');
    assert.match(String(line.error), new RegExp(`127\\.0\\.0\\.1:${adminPort}`));
    assert.match(String(line.error), /"backend" grant/);
    assert.equal(main.seen.length, 0, "the API's backend was not called either");
  });

  test('16 HTTP effects from one request with GATEHOUSE_POLICY_HTTP_IN_FLIGHT=10: at most 10 connections at once', async () => {
    const res = await get(gateway, '/fanout/x');
    assert.equal(res.status, 200, res.body);
    assert.ok(counting.maxConnections <= 10, `${counting.maxConnections} connections at once`);
    assert.ok(counting.maxRequests <= 10, `${counting.maxRequests} requests at once`);
    const ok = Number(res.headers['x-ok']);
    const errors = Number(res.headers['x-errors']);
    assert.equal(ok + errors, 16);
    assert.ok(errors >= 6, `${errors} effects refused`);
    assert.match(String(res.headers['x-first-error']), /10 HTTP effects in flight/);
  });
});

describe('a gateway with backend grants', () => {
  let dir: string;
  let main: RecordingBackend;
  let other: RecordingBackend;
  let adminPort: number;
  let httpPort: number;
  let gateway: GatewayProcess;
  const ownAddress = localNonLoopbackIPv4();

  const api = (id: string, url: string, grants?: string) => `
  - id: ${id}
    pathPrefix: /${id}
    backend: { url: "http://127.0.0.1:${main.port}" }
    policies:
      inbound:
        - module: ./backend-setter.wasm
          config: { url: "${url}" }${grants ? `\n          grants: { backend: { allowedHosts: [${grants}] } }` : ''}`;

  before(async () => {
    dir = tempDir();
    main = await startRecordingBackend(() => ({ body: 'main' }));
    other = await startRecordingBackend(({ url }) => ({ body: `other ${url}` }));
    adminPort = await freePort();
    httpPort = await freePort();
    const unused = await freePort();
    writeFileSync(join(dir, 'backend-setter.wasm'), await backendSetter());
    const apis = [
      api('granted', `http://127.0.0.1:${other.port}/v2`, `"127.0.0.1:${other.port}"`),
      api('wrong-port', `http://127.0.0.1:${unused}/v2`, `"127.0.0.1:${other.port}"`),
      api('wildcard-literal', `http://127.0.0.1:${adminPort}/metrics`, `"*:${adminPort}"`),
      api('wildcard-name', `http://localhost:${adminPort}/metrics`, `"*:${adminPort}"`),
      api('exact-loopback', `http://127.0.0.1:${adminPort}/metrics`, `"127.0.0.1:${adminPort}"`),
      api('exact-name', `http://localhost:${other.port}/named`, `"localhost:${other.port}"`),
      api('api-own', `http://127.0.0.1:${main.port}`),
      ...(ownAddress ? [api('own-listener', `http://${ownAddress}:${httpPort}/loop`, `"*:${httpPort}"`)] : []),
      `
  - id: builtin
    pathPrefix: /builtin
    backend: { url: "http://127.0.0.1:${main.port}" }
    policies:
      inbound:
        - policy: set-backend-service
          config: { baseUrl: "http://127.0.0.1:${other.port}/b" }`,
    ];
    const config = writeConfig(dir, 'gw.yaml', `version: 1\napis:${apis.join('')}\n`);
    gateway = await startGatewayProcess({
      config,
      env: { GATEHOUSE_ADMIN_PORT: String(adminPort), GATEHOUSE_HTTP_PORT: String(httpPort) },
    });
  });

  after(async () => {
    await gateway?.stop();
    for (const backend of [main, other]) await new Promise<void>((r) => (backend ? backend.server.close(() => r()) : r()));
  });

  test('a host and port the grant names: the request goes there', async () => {
    const res = await get(gateway, '/granted/orders/7');
    assert.equal(res.status, 200, res.body);
    assert.equal(res.body, 'other /v2/orders/7');
  });

  test('another port of the granted host: the call fails (capability), nothing is sent', async () => {
    const before = main.seen.length + other.seen.length;
    const res = await get(gateway, '/wrong-port/orders/7');
    assert.equal(res.status, 500, res.body);
    assert.match(res.body, /failed \(capability\)/);
    assert.equal(main.seen.length + other.seen.length, before);
  });

  test('a wildcard entry does not reach the loopback admin listener, by address or by a name that resolves to it', async () => {
    const literal = await get(gateway, '/wildcard-literal');
    assert.doesNotMatch(literal.body, /# HELP|gatehouse_/);
    assert.equal(literal.status, 500, literal.body);
    const named = await get(gateway, '/wildcard-name');
    assert.doesNotMatch(named.body, /# HELP|gatehouse_/);
    assert.equal(named.status, 502, named.body);
    assert.match(named.body, /backend failed \(refused\)/);
  });

  test('an exact entry reaches the loopback address it names (here the admin listener), and a name it names', async () => {
    const metrics = await get(gateway, '/exact-loopback');
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /# HELP gatehouse_/);
    const named = await get(gateway, '/exact-name');
    assert.equal(named.status, 200, named.body);
    assert.equal(named.body, 'other /named');
  });

  test("writing the API's own backend URL needs no grant", async () => {
    const res = await get(gateway, '/api-own/x');
    assert.equal(res.status, 200, res.body);
    assert.equal(res.body, 'main');
  });

  test("the gateway's own data-plane port on this machine's non-loopback address is refused through a wildcard entry", { skip: ownAddress === null && 'no non-loopback IPv4 address here' }, async () => {
    const res = await get(gateway, '/own-listener');
    assert.equal(res.status, 502, res.body);
    assert.match(res.body, /backend failed \(refused\)/);
    const line = await gateway.waitForLog((l) => JSON.stringify(l).includes(`${ownAddress}:${httpPort}`) && JSON.stringify(l).includes('own listener'));
    assert.ok(line);
  });

  test('the built-in set-backend-service reaches its own baseUrl without a grant written for it', async () => {
    const res = await get(gateway, '/builtin/orders/7');
    assert.equal(res.status, 200, res.body);
    assert.equal(res.body, 'other /b/orders/7');
  });
});
