// A small metrics registry that renders Prometheus text: counters here, histograms in histogram.ts.

import { Histogram } from './histogram.ts';
import { labelKey } from './labels.ts';

type Labels = Record<string, string>;

export class Counter {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    this.incKey(labelKey(labels), by);
  }

  /** The rendered label set, to keep and pass to incKey on hot paths (building it sorts and escapes). */
  key(labels: Labels): string {
    return labelKey(labels);
  }

  incKey(key: string, by = 1): void {
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [key, value] of this.values) lines.push(key ? `${this.name}{${key}} ${value}` : `${this.name} ${value}`);
    return lines.join('\n');
  }
}

export class MetricsRegistry {
  private readonly counters = new Map<string, Counter>();
  private readonly histograms = new Map<string, Histogram>();
  private readonly gauges = new Map<string, { help: string; read: () => number }>();
  private readonly countersRead = new Map<string, { help: string; read: () => number }>();
  private readonly gaugeSets = new Map<string, { help: string; read: () => [Labels, number][] }>();

  /** `buckets`: upper bounds in the histogram's unit; latency buckets in ms by default. */
  histogram(name: string, help: string, buckets?: number[]): Histogram {
    let h = this.histograms.get(name);
    if (!h) {
      h = new Histogram(name, help, buckets);
      this.histograms.set(name, h);
    }
    return h;
  }

  /** A value read when metrics are rendered (in-flight requests, healthy backends). */
  gauge(name: string, help: string, read: () => number): void {
    this.gauges.set(name, { help, read });
  }

  /** Values by label set, read when metrics are rendered (each backend's health). */
  gaugeSet(name: string, help: string, read: () => [Labels, number][]): void {
    this.gaugeSets.set(name, { help, read });
  }

  /** A counter kept elsewhere (a total that only grows, such as the log's dropped lines), read when rendered. */
  counterFrom(name: string, help: string, read: () => number): void {
    this.countersRead.set(name, { help, read });
  }

  counter(name: string, help: string): Counter {
    let c = this.counters.get(name);
    if (!c) {
      c = new Counter(name, help);
      this.counters.set(name, c);
    }
    return c;
  }

  render(): string {
    const parts = [...this.counters.values()].map((c) => c.render());
    for (const h of this.histograms.values()) parts.push(h.render());
    for (const [name, c] of this.countersRead) parts.push(`# HELP ${name} ${c.help}\n# TYPE ${name} counter\n${name} ${c.read()}`);
    for (const [name, g] of this.gauges) parts.push(`# HELP ${name} ${g.help}\n# TYPE ${name} gauge\n${name} ${g.read()}`);
    for (const [name, g] of this.gaugeSets) {
      const lines = [`# HELP ${name} ${g.help}`, `# TYPE ${name} gauge`];
      for (const [labels, value] of g.read()) lines.push(`${name}{${labelKey(labels)}} ${value}`);
      parts.push(lines.join('\n'));
    }
    return parts.join('\n') + '\n';
  }
}
