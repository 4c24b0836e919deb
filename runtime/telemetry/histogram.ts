// Latency histograms in Prometheus text (cumulative buckets, _sum, _count), by label set.

import { labelKey } from './labels.ts';

type Labels = Record<string, string>;

/** Milliseconds; the same bounds Azure API Management's gateway uses for its OpenTelemetry histograms. */
export const LATENCY_BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

interface Series {
  labels: string;
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram {
  private readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: number[] = LATENCY_BUCKETS_MS,
  ) {}

  observe(labels: Labels, value: number): void {
    this.observeKey(labelKey(labels), value);
  }

  /** With a label set rendered once by `labelKey` (hot paths). */
  observeKey(key: string, value: number): void {
    let s = this.series.get(key);
    if (!s) {
      s = { labels: key, counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.series.values()) {
      const sep = s.labels ? ',' : '';
      this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{${s.labels}${sep}le="${b}"} ${s.counts[i]}`));
      lines.push(`${this.name}_bucket{${s.labels}${sep}le="+Inf"} ${s.count}`);
      lines.push(`${this.name}_sum{${s.labels}} ${s.sum}`);
      lines.push(`${this.name}_count{${s.labels}} ${s.count}`);
    }
    return lines.join('\n');
  }
}
