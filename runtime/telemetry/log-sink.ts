// Where log lines go: standard output, batched, and bounded in memory whatever is logged and however slowly the output
// is read. A log must never take the process down or stall it: past its bounds it drops lines, counts them, and says
// so in the log once writing works again.
//
// Bounds (DEFAULT_LOG_LIMITS):
// - One line: at most maxLineBytes (UTF-8). A longer line is replaced by a short record of the same time and level,
//   `log line cut: longer than the limit`, with the original's `msg`, its size and its first HEAD_CHARS characters:
//   still one JSON object a line, which a cut in the middle of the text would not be.
// - Lines wait in a batch, written once per event-loop turn, or as soon as the batch reaches flushBytes.
// - One write is in flight at a time. While it is (the output is slower than the log), lines wait in the batch up to
//   maxPendingBytes; past that they are dropped and counted. So the process holds at most about twice maxPendingBytes
//   of log, whatever the reader does.
// - A write that fails (the reader is gone: EPIPE) drops its lines, counted the same way; the process goes on.
// When lines were dropped, the next write that goes out carries, after the lines written before the gap, a line
// `log lines dropped` with how many.
//
// The output itself differs by runtime (Deno's process.stdout blocks on a full pipe): the runtime adapter supplies the
// LogWriter (runtime/adapters/).

import { Buffer } from 'node:buffer';
import process from 'node:process';

/** Receives each record as one line of JSON, newline included. */
export type LogSink = ((line: string) => void) & {
  /** What the sink dropped or cut so far, for sinks that bound their output. */
  stats?: () => LogSinkStats;
  /** Resolves once every line given so far is written (or dropped), or after `timeoutMs`, for sinks that batch. */
  drain?: (timeoutMs: number) => Promise<void>;
};

export interface LogSinkStats {
  /** Lines not written: the output could not keep up, or a write failed. */
  dropped: number;
  /** Lines longer than the line limit, written as a short record in their place. */
  cut: number;
}

export interface LogLimits {
  /** A line longer than this (UTF-8 bytes, newline included) is replaced by a short record. */
  maxLineBytes: number;
  /** A batch this large is written at once rather than at the end of the event-loop turn. */
  flushBytes: number;
  /** Lines waiting while a write is in flight, at most; past it, lines are dropped. */
  maxPendingBytes: number;
}

export const DEFAULT_LOG_LIMITS: Readonly<LogLimits> = {
  maxLineBytes: 64 * 1024,
  // The size of a Linux pipe's buffer: a batch this size goes into an empty pipe in one go.
  flushBytes: 64 * 1024,
  maxPendingBytes: 4 * 1024 * 1024,
};

/** How much of a line that is too long its replacement keeps. */
const HEAD_CHARS = 2048;

/** One write at a time goes to a LogWriter. */
export interface LogWriter {
  /** Writes all of `text`; `done` is called once, when it is written (handed to the OS) or with why it was not. */
  write(text: string, done: (error: Error | null) => void): void;
  /**
   * The process is exiting: writes `text` at once if that cannot hang (`busy`: a write is still in flight, so the
   * output is not keeping up). Returns false when it gave up.
   */
  writeAtExit(text: string, busy: boolean): boolean;
}

export class BoundedLogSink {
  private pending: string[] = [];
  private pendingBytes = 0;
  private writing = false;
  private scheduled = false;
  private dropped = 0;
  private cut = 0;
  /** Dropped lines not yet reported in the log, when the first of them was dropped, and the last write error. */
  private unreported = 0;
  private firstUnreportedAt = 0;
  private writeError: string | null = null;
  /** The sink function Loggers are given. */
  readonly sink: LogSink;

  constructor(
    private readonly writer: LogWriter,
    private readonly limits: Readonly<LogLimits> = DEFAULT_LOG_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    const sink = ((line: string) => this.accept(line)) as LogSink;
    sink.stats = () => this.stats();
    sink.drain = (timeoutMs) => this.drain(timeoutMs);
    this.sink = sink;
  }

  /** Waiting for the output to take what was given (drain). */
  private idleWaiters: (() => void)[] = [];

  stats(): LogSinkStats {
    return { dropped: this.dropped, cut: this.cut };
  }

  private accept(line: string): void {
    let bytes = utf8Length(line);
    if (bytes > this.limits.maxLineBytes) {
      line = this.cutRecord(line, bytes);
      bytes = utf8Length(line);
      this.cut++;
    }
    if (this.pendingBytes + bytes > this.limits.maxPendingBytes) {
      this.drop(1);
      return;
    }
    this.pending.push(line);
    this.pendingBytes += bytes;
    if (this.writing) return;
    if (this.pendingBytes >= this.limits.flushBytes) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushScheduled);
    }
  }

  private readonly flushScheduled = () => {
    this.scheduled = false;
    this.flush();
  };

  private drop(lines: number): void {
    if (this.unreported === 0) this.firstUnreportedAt = this.now();
    this.dropped += lines;
    this.unreported += lines;
  }

  /** Starts writing what waits (and the report of lines dropped), unless a write is in flight. */
  private flush(): void {
    if (this.writing || (this.pending.length === 0 && this.unreported === 0)) return;
    const { text, lines, reported, since } = this.take();
    this.writing = true;
    let settled = false;
    this.writer.write(text, (error) => {
      if (settled) return;
      settled = true;
      this.writing = false;
      if (error) {
        this.writeError = error.message;
        // The report went down with the batch: it is given again, from its first drop.
        if (reported > 0) {
          this.unreported += reported;
          this.firstUnreportedAt = since;
        }
        this.drop(lines);
        // Tried again when a line comes, not at once: a broken output would otherwise be written to in a loop.
        if (this.pending.length > 0) this.schedule();
        else this.wakeIdle();
        return;
      }
      if (reported > 0) this.writeError = null;
      if (this.pending.length > 0 || this.unreported > 0) this.schedule();
      else this.wakeIdle();
    });
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }

  /**
   * Resolves when nothing waits and no write is in flight (what was given is written, or dropped), or after
   * `timeoutMs`: a process about to exit waits for its last lines, but not forever on an output that is not read.
   */
  drain(timeoutMs: number): Promise<void> {
    if (!this.writing && this.pending.length === 0) return Promise.resolve();
    this.flush();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flushScheduled);
  }

  /**
   * The batch to write: the lines waiting, then the report of the lines dropped since the last report (they came
   * after those lines: lines are dropped only while the batch is full or being written).
   */
  private take(): { text: string; lines: number; reported: number; since: number } {
    const lines = this.pending.length;
    let text = this.pending.join('');
    this.pending = [];
    this.pendingBytes = 0;
    const reported = this.unreported;
    const since = this.firstUnreportedAt;
    if (reported > 0) {
      text += this.droppedRecord(reported, since);
      this.unreported = 0;
    }
    return { text, lines, reported, since };
  }

  private droppedRecord(count: number, since: number): string {
    const fields: Record<string, unknown> = {
      time: new Date(this.now()).toISOString(),
      level: 'warn',
      msg: 'log lines dropped',
      dropped: count,
      droppedTotal: this.dropped,
      firstDroppedAt: new Date(since).toISOString(),
      why: this.writeError === null ? 'the log output could not keep up' : 'writing the log failed',
    };
    if (this.writeError !== null) fields.error = this.writeError;
    return `${JSON.stringify(fields)}\n`;
  }

  /** The record written in place of a line over the limit: its time, level and message kept, and its beginning. */
  private cutRecord(line: string, bytes: number): string {
    // Lines of telemetry/logger.ts begin {"time":"…","level":"…","msg":"…"; other lines keep only their head.
    const start = /^\{"time":("[^"\\]{1,40}"),"level":("[a-z]{1,8}"),"msg":("(?:[^"\\]|\\.){0,1024}")/.exec(line.slice(0, 1200));
    const time = start?.[1] ?? JSON.stringify(new Date(this.now()).toISOString());
    const level = start?.[2] ?? '"warn"';
    return (
      `{"time":${time},"level":${level},"msg":"log line cut: longer than the limit","originalMsg":${start?.[3] ?? 'null'}` +
      `,"bytes":${bytes},"limitBytes":${this.limits.maxLineBytes},"head":${JSON.stringify(line.slice(0, HEAD_CHARS))}}\n`
    );
  }

  /** At exit: what waits goes out synchronously when that cannot hang; otherwise it is counted as dropped. */
  flushAtExit(): void {
    if (this.pending.length === 0 && this.unreported === 0) return;
    const busy = this.writing;
    const { text, lines } = this.take();
    if (!this.writer.writeAtExit(text, busy)) this.dropped += lines;
  }
}

function utf8Length(text: string): number {
  // About 0.1 us for an access-log line, against some 100 us of the gateway's own work a request.
  return Buffer.byteLength(text, 'utf8');
}

// --- standard output -------------------------------------------------------------------------------------------

/** The process's standard output (the runtime adapter's writer) as a bounded sink, flushed as far as it can be when the process exits. */
export function stdoutLogSink(writer: LogWriter, limits: Readonly<LogLimits> = DEFAULT_LOG_LIMITS): BoundedLogSink {
  const sink = new BoundedLogSink(writer, limits);
  process.on('exit', () => sink.flushAtExit());
  return sink;
}
