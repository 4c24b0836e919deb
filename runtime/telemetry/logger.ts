// Structured logs: one JSON object a line. Sinks are swappable so tests and the CLI can capture lines.

import { stdoutLogSink, type BoundedLogSink, type LogSink, type LogSinkStats, type LogWriter } from './log-sink.ts';

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };
/** Every level, least severe first: what GATEHOUSE_LOG_LEVEL may name. */
export const LEVELS = Object.keys(ORDER) as Level[];

/** The level `text` names, or null when it names none (the entry points refuse such a GATEHOUSE_LOG_LEVEL). */
export function parseLogLevel(text: string): Level | null {
  return Object.hasOwn(ORDER, text) ? (text as Level) : null;
}

export type LogRecord = { time: string; level: Level; msg: string } & Record<string, unknown>;
export type { LogSink, LogSinkStats } from './log-sink.ts';

/**
 * Standard output through the runtime adapter's writer, batched (a write per request line was a measurable share of
 * proxy time) and bounded in bytes: telemetry/log-sink.ts. Set up when the first line is logged, so that processes
 * that never log leave stdout alone.
 */
export function stdoutSink(writer: () => LogWriter): LogSink {
  let stdout: BoundedLogSink | null = null;
  return Object.assign((line: string) => (stdout ??= stdoutLogSink(writer())).sink(line), {
    stats: (): LogSinkStats => stdout?.stats() ?? { dropped: 0, cut: 0 },
    drain: (timeoutMs: number): Promise<void> => stdout?.drain(timeoutMs) ?? Promise.resolve(),
  });
}

/** Lines nobody wants. */
export const discardSink: LogSink = () => undefined;

/**
 * Values no log line may show (the secret named values of the configuration in force): each is replaced by `***` in
 * every line of a logger and its children. A policy may repeat its configuration in a message, and the gateway cannot
 * tell a secret from any other string but by its value.
 */
class SecretMask {
  /** As they appear in a line: raw, and escaped as JSON when that differs. */
  private forms: string[] = [];

  set(values: readonly string[]): void {
    const forms = new Set<string>();
    for (const v of values) {
      forms.add(v);
      forms.add(jsonString(v).slice(1, -1));
    }
    this.forms = [...forms].sort((a, b) => b.length - a.length);
  }

  apply(line: string): string {
    for (const form of this.forms) if (line.includes(form)) line = line.split(form).join('***');
    return line;
  }

  get active(): boolean {
    return this.forms.length > 0;
  }
}

export class Logger {
  /** The child's fields, serialised once. */
  private readonly ownMembers: string;

  constructor(
    private readonly sink: LogSink,
    private readonly minLevel: Level = 'info',
    private readonly fields: Record<string, unknown> = {},
    private readonly mask: SecretMask = new SecretMask(),
  ) {
    this.ownMembers = appendFields('', fields);
  }

  child(fields: Record<string, unknown>): Logger {
    return new Logger(this.sink, this.minLevel, { ...this.fields, ...fields }, this.mask);
  }

  /** From now on, lines of this logger and all its relatives show `***` for each of `values` (replacing the last). */
  maskSecrets(values: readonly string[]): void {
    this.mask.set(values);
  }

  /** `text` masked as a line of this logger would be: for what leaves the gateway by other ways than its log. */
  redact(text: string): string {
    return this.mask.active ? this.mask.apply(text) : text;
  }

  /** What the sink dropped or cut so far; null for a sink that keeps every line (memory, tests). */
  sinkStats(): LogSinkStats | null {
    return this.sink.stats?.() ?? null;
  }

  /** Resolves once the lines logged so far are written (or dropped), or after `timeoutMs`: before the process exits. */
  drain(timeoutMs: number): Promise<void> {
    return this.sink.drain?.(timeoutMs) ?? Promise.resolve();
  }

  enabled(level: Level): boolean {
    return ORDER[level] >= ORDER[this.minLevel];
  }

  log(level: Level, msg: string, fields?: Record<string, unknown>): void {
    if (!this.enabled(level)) return;
    this.logMembers(level, msg, fields ? appendFields('', fields) : '');
  }

  /**
   * log() with the fields already serialised as JSON members (`,"a":1,"b":"x"`), for the access log: a record a
   * request, formatted by code that knows its shape (runtime/gateway/access-log.ts).
   */
  logMembers(level: Level, msg: string, members: string): void {
    if (!this.enabled(level)) return;
    const line = `{"time":"${isoNow()}","level":"${level}","msg":${jsonString(msg)}${this.ownMembers}${members}}\n`;
    this.sink(this.mask.active ? this.mask.apply(line) : line);
  }

  trace(msg: string, fields?: Record<string, unknown>): void { this.log('trace', msg, fields); }
  debug(msg: string, fields?: Record<string, unknown>): void { this.log('debug', msg, fields); }
  info(msg: string, fields?: Record<string, unknown>): void { this.log('info', msg, fields); }
  warn(msg: string, fields?: Record<string, unknown>): void { this.log('warn', msg, fields); }
  error(msg: string, fields?: Record<string, unknown>): void { this.log('error', msg, fields); }
}

/** Collects records in memory, parsed back from the lines (the SDK's offline test runner and the tests read them). */
export function memorySink(records: LogRecord[]): LogSink {
  return (line) => records.push(JSON.parse(line) as LogRecord);
}

// --- serialising -------------------------------------------------------------------------------------------------
// The access log writes a line per request, so records are serialised by hand: building one merged object and handing
// it to JSON.stringify cost about 16 us a request in the gateway (measured: BENCHMARKS.md). The output is what
// JSON.stringify writes for plain data (undefined fields left out); a name given twice appears twice, and readers of
// JSON keep the last.

let isoMs = -1;
let isoText = '';

/** The current time as ISO 8601, formatted once per millisecond. */
function isoNow(): string {
  const ms = Date.now();
  if (ms !== isoMs) {
    isoMs = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
}

/** Characters a JSON string must escape, and lone surrogates (escaped by well-formed JSON.stringify). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;
const MAX_DEPTH = 16;

function appendFields(line: string, fields: Record<string, unknown>): string {
  for (const name in fields) {
    const value = fields[name];
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol') continue;
    line = appendJson(NEEDS_ESCAPE.test(name) ? `${line},${JSON.stringify(name)}:` : `${line},"${name}":`, value, 0);
  }
  return line;
}

/** A string as a JSON string literal. */
export function jsonString(value: string): string {
  return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`;
}

function appendJson(line: string, value: unknown, depth: number): string {
  switch (typeof value) {
    case 'string':
      return line + jsonString(value);
    case 'number':
      return line + (Number.isFinite(value) ? String(value) : 'null');
    case 'boolean':
      return line + (value ? 'true' : 'false');
    case 'bigint':
      return `${line}"${value}"`;
    case 'object':
      break;
    default:
      return line + 'null';
  }
  if (value === null) return line + 'null';
  if (depth >= MAX_DEPTH) return line + '"[too deep]"';
  if (Array.isArray(value)) {
    line += '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) line += ',';
      const item: unknown = value[i];
      line = item === undefined || typeof item === 'function' || typeof item === 'symbol' ? line + 'null' : appendJson(line, item, depth + 1);
    }
    return line + ']';
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    // Dates, errors and other classes: what JSON.stringify makes of them (an Error has no enumerable fields).
    if (value instanceof Error) return appendJson(line, { name: value.name, message: value.message }, depth + 1);
    try {
      return line + (JSON.stringify(value) ?? 'null');
    } catch {
      return line + '"[unserialisable]"';
    }
  }
  let first = true;
  line += '{';
  for (const name in value as Record<string, unknown>) {
    const item = (value as Record<string, unknown>)[name];
    if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
    line += first ? '' : ',';
    first = false;
    line = appendJson(NEEDS_ESCAPE.test(name) ? `${line}${JSON.stringify(name)}:` : `${line}"${name}":`, item, depth + 1);
  }
  return line + '}';
}
