// W3C trace context: the parser against the specification's rules and hostile values, then the gateway as its own
// process between a client and a real backend, with a real policy making an outbound call through the HTTP effect:
// what each of them receives, and what the access log says.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import {
  MAX_TRACESTATE_LENGTH,
  MAX_TRACESTATE_MEMBERS,
  parseTraceparent,
  parseTracestate,
  traceContextOf,
  traceparentOf,
} from '../runtime/telemetry/trace-context.ts';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';
import { send, startRecordingBackend, type RecordingBackend, type Seen } from './support/requests.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${PARENT}-01`;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

describe('traceparent', () => {
  test('a valid version-00 value gives its trace, parent and sampled flag', () => {
    assert.deepEqual(parseTraceparent(VALID), { traceId: TRACE, parentId: PARENT, sampled: true });
    assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-00`), { traceId: TRACE, parentId: PARENT, sampled: false });
    // Flags other than sampled are not the gateway's to carry on: bit 0 alone is read.
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-03`)?.sampled, true);
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-02`)?.sampled, false);
    for (const [flags, sampled] of [['0a', false], ['0b', true], ['0e', false], ['ff', true], ['10', false], ['09', true]] as const) {
      assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-${flags}`)?.sampled, sampled, flags);
    }
  });

  test('a later version is read as far as version 00 goes; version ff and a longer 00 are not', () => {
    assert.deepEqual(parseTraceparent(`cc-${TRACE}-${PARENT}-01-what-the-future-adds`), { traceId: TRACE, parentId: PARENT, sampled: true });
    assert.deepEqual(parseTraceparent(`01-${TRACE}-${PARENT}-01`), { traceId: TRACE, parentId: PARENT, sampled: true });
    assert.equal(parseTraceparent(`cc-${TRACE}-${PARENT}-01x`), null, 'a later version\'s extra fields follow a dash');
    assert.equal(parseTraceparent(`ff-${TRACE}-${PARENT}-01`), null);
    assert.equal(parseTraceparent(`${VALID}-extra`), null, 'version 00 has exactly four fields');
  });

  test('malformed values are refused, whatever is wrong', () => {
    const bad = [
      '',
      VALID.toUpperCase(),
      `00-${TRACE.toUpperCase()}-${PARENT}-01`,
      `00-${'0'.repeat(32)}-${PARENT}-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `00-${TRACE}-${PARENT}-1`,
      `00-${TRACE}-${PARENT}-0g`,
      `0-${TRACE}-${PARENT}-01`,
      `00_${TRACE}-${PARENT}-01`,
      `00-${TRACE.slice(1)}-${PARENT}0-01`,
      ` ${VALID}`,
      `${VALID} `,
      `00-${TRACE}-${PARENT}-01`.replace('-', '--').slice(0, 55),
      `zz-${TRACE}-${PARENT}-01`,
      `cc-${TRACE}-${PARENT}-01-${'x'.repeat(10_000)}`,
    ];
    for (const value of bad) assert.equal(parseTraceparent(value), null, JSON.stringify(value.slice(0, 80)));
  });
});

describe('tracestate', () => {
  test('valid members are kept in order; empty ones are skipped; several headers are one list', () => {
    assert.equal(parseTracestate(['congo=t61rcWkgMzE', 'rojo=00f067aa0ba902b7']), 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
    assert.equal(parseTracestate([' congo=t61rcWkgMzE ,, ,rojo=x y']), 'congo=t61rcWkgMzE,rojo=x y');
    assert.equal(parseTracestate(['tenant1@vendor=v', 'a-b_c*d/e=1']), 'tenant1@vendor=v,a-b_c*d/e=1');
    assert.equal(parseTracestate(['', ' ']), null);
    const single = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7';
    assert.equal(parseTracestate([single]), single, 'a valid single value is passed on as it came');
  });

  test('invalid members and repeated keys are dropped, the rest kept', () => {
    const values = ['Upper=1,ok=1,=novalue,nokey,bad=a=b,ok=2,x@toolongsystemid=1,9start=1,v=a\u00e9', 'good=yes'];
    assert.equal(parseTracestate(values), 'ok=1,good=yes');
  });

  test(`at most ${MAX_TRACESTATE_MEMBERS} members, the first kept`, () => {
    const members = Array.from({ length: 40 }, (_, i) => `k${i}=v`);
    const kept = parseTracestate([members.join(',')])!.split(',');
    assert.equal(kept.length, MAX_TRACESTATE_MEMBERS);
    assert.deepEqual(kept, members.slice(0, MAX_TRACESTATE_MEMBERS));
  });

  test(`past ${MAX_TRACESTATE_LENGTH} characters, members longer than 128 go first, then members from the end`, () => {
    const long = `long=${'L'.repeat(200)}`;
    const small = Array.from({ length: 20 }, (_, i) => `s${String(i).padStart(2, '0')}=${'v'.repeat(15)}`);
    // 20 small members of 19 characters and commas: 399 characters, plus the long one is past 512.
    const kept = parseTracestate([[small[0], long, ...small.slice(1)].join(',')])!;
    assert.equal(kept, small.join(','), 'the long member went, the small ones stayed');
    const many = Array.from({ length: 30 }, (_, i) => `m${String(i).padStart(2, '0')}=${'v'.repeat(25)}`);
    const cut = parseTracestate([many.join(',')])!;
    assert.ok(cut.length <= MAX_TRACESTATE_LENGTH, `${cut.length} characters`);
    assert.ok(many.join(',').startsWith(cut), 'members went from the end');
    assert.equal(cut.split(',').length, Math.floor((MAX_TRACESTATE_LENGTH + 1) / 30));
  });

  test('a hostile header costs bounded work and never throws', () => {
    const huge = ['a=1,'.repeat(50_000), `${'k'.repeat(300)}=v`, ','.repeat(100_000)];
    assert.equal(parseTracestate(huge), null, 'nothing past the first 4 KiB of values is read');
    assert.equal(parseTracestate([`${'a'.repeat(300)}=1`, `k=${'v'.repeat(300)}`]), null, 'keys and values have a length limit');
    // 200 invalid members before a valid one, in under 4 KiB: only the first 128 members are looked at.
    assert.equal(parseTracestate([`${'X=1,'.repeat(200)}ok=1`]), null);
    assert.equal(parseTracestate([`${'X=1,'.repeat(100)}ok=1`]), 'ok=1');
  });
});

describe('the trace of a request', () => {
  test('continued from one valid traceparent, with a new span of the gateway; tracestate read only then', () => {
    const trace = traceContextOf([VALID], ['congo=t61rcWkgMzE']);
    assert.equal(trace.traceId, TRACE);
    assert.equal(trace.parentId, PARENT);
    assert.match(trace.spanId, /^[0-9a-f]{16}$/);
    assert.notEqual(trace.spanId, PARENT);
    assert.equal(trace.state, 'congo=t61rcWkgMzE');
    assert.equal(traceparentOf(trace), `00-${TRACE}-${trace.spanId}-01`);
    assert.equal(traceparentOf(traceContextOf([`00-${TRACE}-${PARENT}-00`], undefined)).slice(-3), '-00', 'not sampled stays so');
  });

  test('a new trace without one, with an invalid one, or with two', () => {
    for (const traceparent of [undefined, [], ['nonsense'], [VALID, VALID]]) {
      const trace = traceContextOf(traceparent, ['congo=t61rcWkgMzE']);
      assert.notEqual(trace.traceId, TRACE);
      assert.match(trace.traceId, /^[0-9a-f]{32}$/);
      assert.equal(trace.parentId, null);
      assert.equal(trace.state, null, 'a tracestate without its traceparent means nothing');
      assert.equal(trace.sampled, true);
    }
    const spans = new Set(Array.from({ length: 1000 }, () => traceContextOf(undefined, undefined).spanId));
    assert.equal(spans.size, 1000, 'span ids do not repeat');
  });
});

describe('trace context through the gateway', () => {
  let backend: RecordingBackend;
  let lookup: RecordingBackend;
  let gw: GatewayProcess;

  before(async () => {
    backend = await startRecordingBackend(() => ({ body: 'ok' }));
    lookup = await startRecordingBackend(() => ({ body: 'profile' }));
    const httpCall = join(repoRoot(), 'test', 'fixtures', 'policies', 'http-call');
    const config = writeConfig(
      tempDir(),
      'gateway.yaml',
      `version: 1
apis:
  - id: plain
    pathPrefix: /plain
    backend: { url: "http://127.0.0.1:${backend.port}/plain" }
    policies:
      inbound:
        - policy: set-header
          config: { name: x-trace-id, value: { expr: "traceId" } }
  - id: looked-up
    pathPrefix: /looked-up
    backend: { url: "http://127.0.0.1:${backend.port}/looked-up" }
    policies:
      inbound:
        - source: "${httpCall}"
          config: { url: "http://127.0.0.1:${lookup.port}/profile" }
          grants: { http: { allowedHosts: ["127.0.0.1:${lookup.port}"] } }
        - source: "${httpCall}"
          config: { url: "http://127.0.0.1:${lookup.port}/profile-again" }
          grants: { http: { allowedHosts: ["127.0.0.1:${lookup.port}"] } }
`,
    );
    gw = await startGatewayProcess({ config });
  });

  after(async () => {
    await gw?.stop();
    await Promise.all([backend, lookup].map((b) => new Promise<void>((resolve) => (b ? b.server.close(() => resolve()) : resolve()))));
  });

  /** The request the backend saw for `path`, and its traceparent taken apart. */
  function seenAt(server: RecordingBackend, path: string): { seen: Seen; traceId: string; parentId: string; flags: string } {
    const seen = server.seen.find((s) => s.url === path);
    assert.ok(seen, `${path} reached the server`);
    const m = TRACEPARENT.exec(String(seen.headers.traceparent));
    assert.ok(m, `a version-00 traceparent: ${String(seen.headers.traceparent)}`);
    return { seen, traceId: m[1]!, parentId: m[2]!, flags: m[3]! };
  }

  async function accessLog(requestId: string): Promise<Record<string, unknown>> {
    return gw.waitForLog((l) => l.msg === 'request' && l.requestId === requestId);
  }

  test('a valid traceparent is continued: same trace, the gateway\'s span as the backend\'s parent, tracestate passed on', async () => {
    const res = await send(gw.url, '/plain/continued', {
      headers: { traceparent: VALID, tracestate: 'congo=t61rcWkgMzE,Bad=1,rojo=00f067aa0ba902b7', 'x-request-id': 'continued' },
    });
    assert.equal(res.status, 200);
    const { seen, traceId, parentId, flags } = seenAt(backend, '/plain/continued');
    assert.equal(traceId, TRACE);
    assert.notEqual(parentId, PARENT, 'the backend\'s parent is the gateway\'s span, not the caller\'s');
    assert.notEqual(parentId, '0'.repeat(16));
    assert.equal(flags, '01');
    assert.equal(seen.headers.tracestate, 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7', 'the invalid member dropped');
    assert.equal((await accessLog('continued')).traceId, TRACE);
    assert.equal(seen.headers['x-trace-id'], TRACE, 'expressions read it as traceId');
  });

  test('the sampled flag is carried on as it came', async () => {
    await send(gw.url, '/plain/unsampled', { headers: { traceparent: `00-${TRACE}-${PARENT}-00` } });
    assert.equal(seenAt(backend, '/plain/unsampled').flags, '00');
  });

  test('without a traceparent the gateway starts a trace; the access log names it', async () => {
    const res = await send(gw.url, '/plain/new', { headers: { tracestate: 'congo=t61rcWkgMzE', 'x-request-id': 'started' } });
    assert.equal(res.status, 200);
    const { seen, traceId, flags } = seenAt(backend, '/plain/new');
    assert.notEqual(traceId, '0'.repeat(32));
    assert.equal(flags, '01');
    assert.equal(seen.headers.tracestate, undefined, 'no tracestate without a traceparent to go with it');
    assert.equal((await accessLog('started')).traceId, traceId);
    assert.equal(seen.headers['x-trace-id'], traceId, 'expressions read the trace the gateway started');
  });

  test('invalid and hostile traceparents are replaced by a new trace, and the request is served', async () => {
    const cases: [string, Record<string, string | string[]>][] = [
      ['upper', { traceparent: VALID.toUpperCase() }],
      ['zeros', { traceparent: `00-${'0'.repeat(32)}-${PARENT}-01` }],
      ['ff', { traceparent: `ff-${TRACE}-${PARENT}-01` }],
      ['two', { traceparent: [VALID, VALID] }],
      ['huge', { traceparent: `cc-${TRACE}-${PARENT}-01-${'a'.repeat(8000)}`, tracestate: 'k=v,'.repeat(2000) }],
      ['garbage', { traceparent: '\u00ff\u00fe-ä-', tracestate: '=,=,=' }],
    ];
    for (const [name, headers] of cases) {
      const res = await send(gw.url, `/plain/invalid-${name}`, { headers: headers as Record<string, string> });
      assert.equal(res.status, 200, name);
      const { seen, traceId, parentId } = seenAt(backend, `/plain/invalid-${name}`);
      assert.notEqual(traceId, TRACE, `${name}: a new trace`);
      assert.notEqual(parentId, PARENT, name);
      assert.equal(seen.headers.tracestate, undefined, name);
    }
  });

  test('each outbound call of a policy carries the trace, its own span, neither the caller\'s nor the gateway\'s', async () => {
    const res = await send(gw.url, '/looked-up/x', { headers: { traceparent: VALID, tracestate: 'congo=t61rcWkgMzE' } });
    assert.equal(res.status, 200);
    const toBackend = seenAt(backend, '/looked-up/x');
    const first = seenAt(lookup, '/profile');
    const second = seenAt(lookup, '/profile-again');
    for (const call of [first, second]) {
      assert.equal(call.traceId, TRACE);
      assert.equal(call.flags, '01');
      assert.equal(call.seen.headers.tracestate, 'congo=t61rcWkgMzE');
    }
    const spans = new Set([PARENT, toBackend.parentId, first.parentId, second.parentId]);
    assert.equal(spans.size, 4, 'the caller, the gateway and each outbound call: four spans');
    assert.equal(toBackend.traceId, TRACE);
  });
});
