// Metrics that policies emit (host function `metric`, the emit-metric policy): sums by name and dimensions, rendered as
// one Prometheus counter family, `gatehouse_policy_metric_total{metric="…", <dimensions>}`, and handed to upstream
// telemetry (Application Insights custom metrics) when that is configured.
//
// Policies choose names and dimension values, so the number of series is capped: past MAX_SERIES new series are dropped
// and counted, rather than let one policy grow the gateway's memory and every scrape without bound. The count of drops
// is by metric name, which a policy chooses too: past MAX_DROPPED_NAMES names, drops are counted under `(other)`.

import { Status } from '../../abi/index.ts';
import { labelKey } from './labels.ts';
import type { Counter, MetricsRegistry } from './metrics.ts';

export interface MetricEmission {
  name: string;
  value: number;
  dimensions: [string, string][];
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,99}$/;
export const MAX_DIMENSIONS = 10;
const MAX_DIMENSION_VALUE = 256;
const MAX_SERIES = 1000;
const MAX_DROPPED_NAMES = 100;
/** The name drops are counted under past MAX_DROPPED_NAMES: no metric can have it (NAME refuses parentheses). */
export const OTHER_DROPPED = '(other)';

/** Status of an emission a policy asks for: OK, or INVALID_VALUE with what is wrong. */
export function checkEmission(e: MetricEmission): { status: number; problem?: string } {
  if (!NAME.test(e.name)) return { status: Status.INVALID_VALUE, problem: `metric name ${JSON.stringify(e.name)}` };
  if (!Number.isFinite(e.value) || e.value < 0) return { status: Status.INVALID_VALUE, problem: `value ${e.value}` };
  if (e.dimensions.length > MAX_DIMENSIONS) return { status: Status.INVALID_VALUE, problem: `${e.dimensions.length} dimensions` };
  const seen = new Set<string>();
  for (const [name, value] of e.dimensions) {
    if (!NAME.test(name) || name === 'metric' || seen.has(name)) {
      return { status: Status.INVALID_VALUE, problem: `dimension name ${JSON.stringify(name)}` };
    }
    seen.add(name);
    if (value.length > MAX_DIMENSION_VALUE) return { status: Status.INVALID_VALUE, problem: `dimension ${name} value too long` };
  }
  return { status: Status.OK };
}

export class CustomMetrics {
  private readonly sums: Counter;
  private readonly dropped: Counter;
  private readonly series = new Set<string>();
  private readonly droppedNames = new Set<string>();
  /** Upstream telemetry: gets each value recorded here (not those dropped past the cap). */
  upstream: { metric(e: MetricEmission): void } | null = null;

  constructor(registry: MetricsRegistry, private readonly maxSeries = MAX_SERIES) {
    this.sums = registry.counter('gatehouse_policy_metric_total', 'Values emitted by policies (emit-metric), summed by metric and dimensions.');
    this.dropped = registry.counter(
      'gatehouse_policy_metric_dropped_total',
      `Policy metric values dropped because their series would pass the cap of ${maxSeries}, by metric (past ${MAX_DROPPED_NAMES} names, under "${OTHER_DROPPED}").`,
    );
  }

  /** Adds a checked emission (the call that made it succeeded). */
  record(e: MetricEmission): void {
    const key = labelKey({ metric: e.name, ...Object.fromEntries(e.dimensions) });
    if (!this.series.has(key)) {
      if (this.series.size >= this.maxSeries) {
        this.countDropped(e.name);
        return;
      }
      this.series.add(key);
    }
    this.sums.incKey(key, e.value);
    this.upstream?.metric(e);
  }

  private countDropped(name: string): void {
    if (!this.droppedNames.has(name)) {
      if (this.droppedNames.size >= MAX_DROPPED_NAMES) {
        this.dropped.inc({ metric: OTHER_DROPPED });
        return;
      }
      this.droppedNames.add(name);
    }
    this.dropped.inc({ metric: name });
  }
}
