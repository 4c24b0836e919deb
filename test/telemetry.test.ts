// The logger's hand-written JSON serialisation (the access log's hot path) against what JSON.parse reads back.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { accessLogMembers } from '../runtime/gateway/access-log.ts';
import { Logger } from '../runtime/telemetry/logger.ts';
import { CustomMetrics, OTHER_DROPPED } from '../runtime/telemetry/custom-metrics.ts';
import { MetricsRegistry } from '../runtime/telemetry/metrics.ts';

function capture(fields: Record<string, unknown> = {}): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger((line) => lines.push(line), 'debug', fields), lines };
}

describe('structured logs', () => {
  test('each record is one line of JSON that reads back as the fields given (undefined ones left out)', () => {
    const { logger, lines } = capture({ policy: 'p"1' });
    const fields = {
      text: 'quote " backslash \\ newline \n tab \t nul \u0000 line-separator \u2028 é 😀',
      lone: 'a\ud800b',
      n: 1.5,
      big: 12345678901234567890,
      notFinite: Infinity,
      yes: true,
      nothing: null,
      skipped: undefined,
      list: [1, undefined, 'x', { deep: [[]] }],
      when: new Date(0),
      err: new Error('boom'),
      'odd"name': 1,
    };
    logger.info('hello\nworld', fields);
    logger.debug('second');
    assert.equal(lines.length, 2);
    for (const line of lines) {
      assert.ok(line.endsWith('\n'));
      assert.equal(line.indexOf('\n'), line.length - 1, 'a record must not span lines');
    }
    const record = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.match(String(record.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(record.level, 'info');
    assert.equal(record.msg, 'hello\nworld');
    assert.equal(record.policy, 'p"1');
    const { err, ...plain } = fields;
    const expected = JSON.parse(JSON.stringify(plain)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(expected)) assert.deepEqual(record[name], value, name);
    assert.equal('skipped' in record, false);
    assert.deepEqual(record.err, { name: 'Error', message: err.message });
    // A lone surrogate is escaped, so the line is valid UTF-8 when written.
    assert.ok(lines[0]!.includes('\\ud800'));
  });

  test('a level below the logger minimum writes nothing', () => {
    const lines: string[] = [];
    new Logger((line) => lines.push(line), 'warn').info('quiet');
    assert.equal(lines.length, 0);
  });

  test('access log members read back as the request record', () => {
    const { logger, lines } = capture();
    const record = {
      requestId: 'id-"1"',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      method: 'GET',
      path: '/a\u0001b',
      api: 'shop',
      operation: 'get-order',
      status: 502,
      durationMs: 1.23456,
      backendMs: null,
      // The same binding id in two phases, a name that needs escaping, and every outcome.
      policies: [
        { binding: 'api:shop/inbound/0', phase: 'inbound' as const, ms: 0.004, outcome: 'continue' as const },
        { binding: 'api:shop/inbound/0', phase: 'outbound' as const, ms: 12, outcome: 'respond' as const },
        { binding: 'api:"shop"/backend/1', phase: 'backend' as const, ms: 0, outcome: 'failed' as const },
        { binding: 'api:shop/outbound/0', phase: 'outbound' as const, ms: 0.5, outcome: 'failed-open' as const },
        { binding: 'api:shop/on-error/0', phase: 'on-error' as const, ms: 0.001, outcome: 'skipped' as const },
      ],
      error: { source: 'backend' as const, reason: 'unreachable', message: 'backend unreachable (ECONNREFUSED)', policy: '', status: 502 },
      client: '127.0.0.1',
      protocol: 'HTTP/2',
    };
    logger.logMembers('info', 'request', accessLogMembers(record));
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(line.msg, 'request');
    assert.equal(line.requestId, record.requestId);
    assert.equal(line.traceId, record.traceId);
    assert.equal(line.path, record.path);
    assert.equal(line.durationMs, 1.235);
    assert.equal(line.backendMs, null);
    assert.deepEqual(line.policies, record.policies);
    assert.deepEqual(line.error, { source: 'backend', reason: 'unreachable', message: record.error.message });
    assert.equal(line.protocol, 'HTTP/2');
  });
});

describe('policy metrics', () => {
  test('past the series cap values are dropped and counted, and the count by name has a cap of its own', () => {
    const registry = new MetricsRegistry();
    const metrics = new CustomMetrics(registry, 10);
    for (let i = 0; i < 10; i++) metrics.record({ name: 'calls', value: 1, dimensions: [['tenant', `t${i}`]] });
    metrics.record({ name: 'calls', value: 1, dimensions: [['tenant', 'one-too-many']] });
    // A policy naming a new metric for each request (a name made from request data): each is dropped, and the
    // counter of drops grows by at most 100 series, not one a request.
    const names = 5000;
    for (let i = 0; i < names; i++) metrics.record({ name: `m_${i}`, value: 1, dimensions: [] });
    const text = registry.render();
    const dropped = text.split('\n').filter((l) => l.startsWith('gatehouse_policy_metric_dropped_total{'));
    assert.equal(dropped.length, 101, 'the first 100 names ("calls" and 99 others), and the rest together');
    assert.ok(dropped.includes(`gatehouse_policy_metric_dropped_total{metric="${OTHER_DROPPED}"} ${names - 99}`), dropped.slice(-3).join('\n'));
    assert.ok(dropped.includes('gatehouse_policy_metric_dropped_total{metric="m_0"} 1'));
    assert.ok(dropped.includes('gatehouse_policy_metric_dropped_total{metric="calls"} 1'));
    const total = dropped.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    assert.equal(total, names + 1, 'every dropped value is counted');
    assert.equal(text.split('\n').filter((l) => l.startsWith('gatehouse_policy_metric_total{')).length, 10);
  });
});
