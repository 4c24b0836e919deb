// The gateway process's memory and its log's losses on /metrics, so that growth under load (a leak) shows on a
// dashboard, not only as an out-of-memory kill, and so do log lines that never reached the output. Read when metrics
// are rendered; the same under Node and Deno (node:process).

import process from 'node:process';
import type { Logger } from './logger.ts';
import type { MetricsRegistry } from './metrics.ts';

export function registerProcessMetrics(metrics: MetricsRegistry): void {
  metrics.gauge('process_resident_memory_bytes', 'Resident memory of the gateway process, in bytes.', () => process.memoryUsage.rss());
  metrics.gauge('gatehouse_js_heap_used_bytes', 'JavaScript heap in use, in bytes (garbage included until it is collected).', () => process.memoryUsage().heapUsed);
  metrics.gauge(
    'gatehouse_js_external_bytes',
    'Memory outside the JavaScript heap held by JavaScript objects (buffers), in bytes.',
    () => process.memoryUsage().external,
  );
}

/** What the log sink dropped or cut (telemetry/log-sink.ts): lines an operator did not get. */
export function registerLogMetrics(metrics: MetricsRegistry, logger: Logger): void {
  metrics.counterFrom(
    'gatehouse_log_lines_dropped_total',
    'Log lines not written: standard output could not keep up (more than the pending bound waiting), or a write failed.',
    () => logger.sinkStats()?.dropped ?? 0,
  );
  metrics.counterFrom(
    'gatehouse_log_lines_cut_total',
    'Log lines over the line limit, written as a short record with their beginning instead.',
    () => logger.sinkStats()?.cut ?? 0,
  );
}
