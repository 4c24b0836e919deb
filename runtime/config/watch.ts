// Watches the configuration file by polling: stat (mtime and size) every interval, and when they moved, a sha256 of
// the content, so that a touch or a save without changes applies nothing. Polling, not fs.watch: editors that save
// by writing a new file and renaming it over the old one break watches, and polling behaves the same on Node and Deno.

import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { Poller } from './poller.ts';

export interface ConfigFileWatcherOptions {
  /** Poll interval in ms. Default 1000. */
  intervalMs?: number;
  /**
   * After a change is seen, the file is read again this many ms later, until two reads agree (at most 5 times), so
   * that a file caught halfway through a non-atomic write is not applied. Default 100; 0 turns it off.
   */
  settleMs?: number;
  /** Called with the new content; never twice at once. A rejection goes to onError. */
  onChange: (text: string) => Promise<void>;
  /** A failed read (retried on the next tick) or a failed onChange. The same read error is reported once in a row. */
  onError?: (err: Error) => void;
  /**
   * The content already applied, when the caller read the file itself before starting the watcher: a change made
   * between that read and the first poll is then noticed. Without it, the first poll only takes note of the content.
   */
  initialText?: string;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** A file whose mtime is this recent may change again within the same timestamp: it is read even if stat looks unchanged. */
const RACY_MS = 2000;

export class ConfigFileWatcher {
  readonly file: string;
  private readonly settleMs: number;
  private readonly onChange: (text: string) => Promise<void>;
  private readonly onError: (err: Error) => void;
  private readonly poller: Poller;
  /** Between start and stop: nothing is applied outside it. */
  private running = false;
  /** The stat seen at the last read. */
  private lastStat: { mtimeMs: number; size: number } | null = null;
  /** Hash of the last content handed to onChange (or noted as the starting point); null before the first. */
  private lastHash: string | null;
  /** The latest content not applied yet. */
  private pending: string | null = null;
  private applying: Promise<void> | null = null;
  /** The code (or message) of the last read error, so that it is reported once while it lasts. */
  private lastErrorMessage: string | null = null;

  constructor(file: string, options: ConfigFileWatcherOptions) {
    this.file = file;
    // Polling goes on while a change is applied, so that the latest content is the one applied next.
    this.poller = new Poller(() => this.check(), options.intervalMs ?? 1000);
    this.settleMs = options.settleMs ?? 100;
    this.onChange = options.onChange;
    this.onError = options.onError ?? (() => undefined);
    this.lastHash = options.initialText === undefined ? null : sha256(options.initialText);
  }

  /** Starts polling (the first poll runs at once). Calling it again does nothing. */
  start(): void {
    this.running = true;
    this.poller.start();
  }

  /** Stops polling; resolves when a change being applied has finished. Nothing is applied after it. */
  async stop(): Promise<void> {
    this.running = false;
    this.pending = null;
    await this.poller.stop();
    await this.applying;
  }

  /** Polls now (e.g. on SIGHUP); resolves once a change found is applied. */
  async poll(): Promise<void> {
    await this.poller.poll();
    await this.applying;
  }

  private async check(): Promise<void> {
    let text: string;
    try {
      const s = await stat(this.file);
      const now = Date.now();
      const same = this.lastStat !== null && s.mtimeMs === this.lastStat.mtimeMs && s.size === this.lastStat.size;
      if (same && now - s.mtimeMs > RACY_MS) {
        this.lastErrorMessage = null;
        return;
      }
      text = await readFile(this.file, 'utf8');
      this.lastStat = { mtimeMs: s.mtimeMs, size: s.size };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      // A missing file is reported once, not every second until it is back.
      const key = (error as NodeJS.ErrnoException).code ?? error.message;
      if (key !== this.lastErrorMessage) this.report(error);
      this.lastErrorMessage = key;
      this.lastStat = null;
      return;
    }
    this.lastErrorMessage = null;
    let hash = sha256(text);
    if (this.lastHash === null) {
      this.lastHash = hash;
      return;
    }
    if (hash === this.lastHash || !this.running) return;
    for (let round = 0; this.settleMs > 0 && round < 5 && this.running; round++) {
      await new Promise((r) => setTimeout(r, this.settleMs));
      let again: string;
      try {
        const s = await stat(this.file);
        again = await readFile(this.file, 'utf8');
        this.lastStat = { mtimeMs: s.mtimeMs, size: s.size };
      } catch {
        return; // gone again: the next tick reports it
      }
      const againHash = sha256(again);
      if (againHash === hash) break;
      text = again;
      hash = againHash;
    }
    if (hash === this.lastHash || !this.running) return;
    this.lastHash = hash;
    this.pending = text;
    this.applying ??= this.applyPending().finally(() => {
      this.applying = null;
    });
  }

  /** onError, which must not break the polling loop by throwing. */
  private report(err: Error): void {
    try {
      this.onError(err);
    } catch {
      // nothing better to do with it
    }
  }

  /** Applies the latest pending content, then whatever arrived meanwhile, one at a time. */
  private async applyPending(): Promise<void> {
    while (this.pending !== null && this.running) {
      const text = this.pending;
      this.pending = null;
      try {
        await this.onChange(text);
      } catch (err) {
        this.report(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }
}
