// The gateway process's memory on /metrics, so that growth under load (a leak) shows on a dashboard, not only as an
// out-of-memory kill. Read when metrics are rendered; the same under Node and Deno (node:process).

import process from 'node:process';
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
