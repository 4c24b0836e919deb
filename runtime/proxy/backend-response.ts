// One backend response as undici delivers it, through a dispatch handler of our own instead of undici's `request` or
// `stream` wrappers (each wraps the handler again, and `stream` registers half a dozen listeners on the destination
// per request; measured: BENCHMARKS.md). The response head resolves `head`; the body then waits in undici, the
// connection paused, until the gateway decides where it goes:
//   - `sendTo(destination)`: every chunk is written straight into the client's connection (a node:http ServerResponse), with
//     backpressure, no intermediate stream;
//   - iteration (`for await`): for buffering a body a policy reads, and for runtimes that want a web stream (Deno);
//   - `destroy()`: nobody wants it (a policy replaced the body, on-error answered); the backend request is aborted so
//     its connection is not left paused.
// Exactly one of these must happen to every response: a paused body holds its backend connection indefinitely
// (undici does not apply its body timeout while paused).

import type { Dispatcher } from 'undici';
import type { BodySink, HeaderMap, ResponseBody } from '../policy-host/exchange.ts';

type Controller = Dispatcher.DispatchController;

/** Bytes an iterating reader may have queued before the backend connection is paused. */
const QUEUE_HIGH_WATER_BYTES = 64 * 1024;

/** What the response head resolves to. */
export interface BackendHead {
  status: number;
  headers: HeaderMap;
}

const DISCARDED = 'the gateway discarded the backend response';

export class BackendResponse implements Dispatcher.DispatchHandler, ResponseBody {
  /** Resolves with the status and headers (1xx responses skipped); rejects if the backend fails before them. */
  readonly head: Promise<BackendHead>;
  private settleHead!: { resolve: (head: BackendHead) => void; reject: (err: Error) => void };
  private controller: Controller | null = null;
  private headReceived = false;
  private destination: BodySink | null = null;
  private iterating = false;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  /** Body bytes received from the backend (what the client is sent, or what a buffering reader got). */
  bytesReceived = 0;
  trailers: HeaderMap | null = null;
  private ended = false;
  private failure: Error | null = null;
  /** Why the gateway aborted the request itself (destroy): the failure that follows is not the backend's. */
  private abortReason: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(
    /** Header names never passed back to the client (hop-by-hop). */
    private readonly dropped: ReadonlySet<string>,
    /** Told when the backend fails after its response head (the body is cut short). */
    private readonly onBodyFailure?: (error: Error) => void,
  ) {
    this.head = new Promise<BackendHead>((resolve, reject) => {
      this.settleHead = { resolve, reject };
    });
  }

  // --- undici's side ----------------------------------------------------------------------------------------------

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    // Destroyed before undici handed over the controller.
    if (this.abortReason) controller.abort(this.abortReason);
  }

  onResponseStart(controller: Controller, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // 1xx answers (100 Continue, 103 Early Hints) are not the response.
    if (statusCode < 200) return;
    this.headReceived = true;
    const map: HeaderMap = new Map();
    // Headers the backend's Connection names are hop-by-hop too (RFC 9110 7.6.1).
    const connection = headers.connection;
    const named = connection === undefined ? null : new Set(String(connection).split(',').map((s) => s.trim().toLowerCase()));
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined || this.dropped.has(name) || named?.has(name)) continue;
      map.set(name, typeof value === 'string' ? [value] : value);
    }
    // The body waits until someone takes it (policies may run between the head and the body).
    controller.pause();
    this.settleHead.resolve({ status: statusCode, headers: map });
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    const destination = this.destination;
    if (destination) {
      if (!destination.write(chunk)) controller.pause();
      return;
    }
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.queuedBytes >= QUEUE_HIGH_WATER_BYTES) controller.pause();
    this.notify();
  }

  onResponseEnd(_controller: Controller, trailers: Record<string, string | string[] | undefined>): void {
    // Set before the destination is ended: an HTTP/2 client's writer sends them when it has (answerStream).
    for (const name in trailers) {
      const value = trailers[name];
      if (value !== undefined) (this.trailers ??= new Map()).set(name, typeof value === 'string' ? [value] : value);
    }
    this.ended = true;
    if (this.destination) this.destination.end();
    else this.notify();
  }

  onResponseError(_controller: Controller, error: Error): void {
    if (!this.headReceived) {
      this.settleHead.reject(error);
      return;
    }
    this.failure = error;
    // The client sees a truncated response: the head is out, there is no honest way to signal the failure. Unless the
    // gateway aborted it itself, the failure is reported (logs, metrics).
    if (this.abortReason === null) this.onBodyFailure?.(error);
    if (this.destination && !this.destination.destroyed) this.destination.destroy();
    else this.notify();
  }

  // --- the gateway's side -----------------------------------------------------------------------------------------

  /** Writes the body into `destination` as it arrives and ends it; the client going away aborts the backend request. */
  sendTo(destination: BodySink): void {
    this.claim();
    this.destination = destination;
    // What arrived before (the rest of a body whose connection closed while paused: runtime/adapters/deno/backend-connector.ts) goes first.
    for (let chunk = this.queue.shift(); chunk; chunk = this.queue.shift()) destination.write(chunk);
    this.queuedBytes = 0;
    if (this.ended) {
      destination.end();
      return;
    }
    if (this.failure || destination.destroyed) {
      this.destroy();
      destination.destroy();
      return;
    }
    destination.on('drain', () => this.controller?.resume());
    destination.once('close', () => {
      if (!this.ended) this.destroy();
    });
    this.controller?.resume();
  }

  /** Aborts the backend request (its connection is closed); nothing more is delivered. */
  destroy(error?: Error): void {
    if (this.ended || this.failure) return;
    this.abortReason = error ?? new Error(DISCARDED);
    if (!this.headReceived) this.head.catch(() => undefined);
    this.controller?.abort(this.abortReason);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    this.claim();
    this.iterating = true;
    return {
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        for (;;) {
          const chunk = this.queue.shift();
          if (chunk) {
            this.queuedBytes -= chunk.length;
            if (this.queuedBytes < QUEUE_HIGH_WATER_BYTES) this.controller?.resume();
            return { value: chunk, done: false };
          }
          if (this.failure) throw this.failure;
          if (this.ended) return { value: undefined, done: true };
          // Resuming may deliver data (and the end) synchronously, before anyone waits.
          this.controller?.resume();
          if (this.queue.length > 0 || this.ended || this.failure) continue;
          await new Promise<void>((resolve) => {
            this.wake = resolve;
          });
        }
      },
      return: async (): Promise<IteratorResult<Uint8Array>> => {
        this.destroy();
        return { value: undefined, done: true };
      },
    };
  }

  private claim(): void {
    if (this.destination || this.iterating) throw new Error('a backend response body can be consumed once');
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
