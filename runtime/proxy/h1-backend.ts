// An HTTP/1.1 backend reached through connections of the gateway's own: the request head written as one string, the
// response read by a parser that knows only what a proxy needs (a status line, header fields, Content-Length, chunked
// or close-delimited bodies), driving the same dispatch handler undici drives (BackendResponse), so that forwarding,
// retries and the response's way to the client stay one code path.
//
// Why not undici's Pool: its HTTP/1.1 client was the largest package in the gateway's profile, 12.5 µs a request of
// 84 with its wasm parser another 1 µs (`PROFILE_PIN=1 npm run profile:proxy`, no policies). With this client,
// `bench:proxy` pinned, eight rounds against the build before it: 81–93 µs of CPU a request without policies where that
// build took 91–107, and 1.02–1.22 times its throughput (BENCHMARKS.md, issue 17, thirteenth session). undici stays for
// what this client does not do: HTTP/2 backends, the health checks and the policies' HTTP calls. Backend URLs that
// policies choose go through Http1Agent, one Http1Backend an origin.
//
// What the parser takes is strict, since a proxy that reads a response differently from the next hop is the start of
// a desynchronised connection: CR LF line ends only, header names that are tokens, values without control characters
// (tab aside), no folded lines, one Content-Length (repeated only with the same value), Transfer-Encoding only as
// `chunked` and never with Content-Length, a head of at most `maxHeadBytes`. Anything else fails the request as a bad
// response (502) and closes the connection. What the gateway writes is checked as undici checks it: a method that is
// a token, a path of visible characters, header names that are tokens, values without control characters (tab aside)
// or characters past U+00FF.
//
// Connections: at most `connections` open, kept alive between requests (idle ones closed after `keepAliveMs`, or the
// backend's own `Keep-Alive: timeout` less a second), one request at a time on each (no pipelining). A request that
// finds a reused connection closed before a byte of its response arrived (the backend closed it while it was idle, as
// the request went out) is sent once more on a new connection when its method is idempotent and its body can be sent
// again. Timeouts are read by one sweep per backend (every eighth of the timeout, from 5 ms to 1 s) rather than a timer
// a request: time to the response head, then between body chunks, not counted while the gateway holds the body paused.

import type { Socket } from 'node:net';
import { errors, type buildConnector, type Dispatcher } from 'undici';
import { headerKey, isSafeValue, isToken } from '../policy-host/header-text.ts';
import { drainedOrClosed } from './drained.ts';

export interface Http1BackendOptions {
  /** Connections open at most; requests past them wait for one. */
  connections: number;
  /** Time to the response head, and between body chunks, unless a request sets its own. */
  timeoutMs: number;
  /** How long an idle connection is kept. */
  keepAliveMs: number;
  /** The largest response head (status line and fields) read; a larger one is a bad response. */
  maxHeadBytes?: number;
  /** Opens the connections (the runtime adapter's, or the egress guard's). */
  connect: buildConnector.connector;
  /** Told when the last connection closed and no request waits (an agent then forgets the origin). */
  onEmpty?: () => void;
}

const DEFAULT_MAX_HEAD_BYTES = 16 * 1024;
/** A chunk-size line longer than this (extensions included) is refused. */
const MAX_CHUNK_LINE_BYTES = 1024;

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

/** What the gateway may write as a request target: visible characters (RFC 9112 3.2). */
const BAD_PATH = /[^\u0021-\u00ff]/;
const CHUNK_LINE = /^([0-9a-fA-F]{1,13})[ \t]*(?:;[^]*)?$/;

/** Request headers the client writes itself, and their lengths (a cheap first test). */
const FRAMING = new Set(['content-length', 'transfer-encoding']);
const FRAMING_LENGTHS = new Set([14, 17]);

/** The trailers of a response that has none (shared: never written to). */
const NO_TRAILERS: Record<string, string | string[]> = Object.freeze({});

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

const enum Reading {
  Head,
  Length,
  ChunkSize,
  ChunkData,
  ChunkEnd,
  Trailers,
  UntilClose,
  Done,
}

/** A response the backend sent that this parser does not accept; the forwarder answers 502. */
export class BadBackendResponse extends Error {
  readonly code = 'GATEHOUSE_BAD_RESPONSE';
}

export class Http1Backend {
  private readonly url: URL;
  private readonly hostname: string;
  private readonly hostHeader: string;
  private readonly maxHead: number;
  /** Idle connections, the most recently used last. */
  private readonly idle: Connection[] = [];
  private readonly busy = new Set<Connection>();
  private readonly waiting: Call[] = [];
  private open = 0;
  private closing = false;
  private closed: (() => void) | null = null;
  /** The sweep's count, the clock of the deadlines. */
  tick = 0;
  readonly tickMs: number;
  private sweeper: ReturnType<typeof setInterval> | null = null;
  private lastHint = '';
  private lastHintTicks = Infinity;

  constructor(
    origin: string,
    private readonly options: Http1BackendOptions,
  ) {
    this.url = new URL(origin);
    const hostname = this.url.hostname;
    this.hostname = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    this.hostHeader = this.url.host;
    this.maxHead = options.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES;
    this.tickMs = Math.min(1000, Math.max(5, Math.floor(options.timeoutMs / 8)));
  }

  /** Sends one request; `handler` hears of it as undici's dispatch handlers do. */
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const call = new Call(this, handler, options);
    handler.onRequestStart?.(call, {});
    if (call.settled) return true;
    if (this.closing) {
      call.fail(new errors.ClientClosedError());
      return true;
    }
    try {
      call.head = requestHead(options, this.hostHeader);
    } catch (err) {
      call.fail(err as Error);
      this.checkClosed();
      return true;
    }
    this.assign(call, false);
    return true;
  }

  /** Puts `call` on an idle connection, a new one, or in the queue. `fresh`: never on a reused connection. */
  private assign(call: Call, fresh: boolean): void {
    const conn = fresh ? undefined : this.idle.pop();
    if (conn) this.start(conn, call);
    else if (this.open < this.options.connections || fresh) this.connect(call);
    else this.waiting.push(call);
  }

  private connect(call: Call): void {
    this.open++;
    this.ensureSweeper();
    const { protocol, port } = this.url;
    this.options.connect({ hostname: this.hostname, host: this.hostHeader, protocol, port }, (err, socket) => {
      if (err !== null) {
        this.open--;
        call.fail(err);
        this.next(null);
        return;
      }
      const conn = new Connection(this, socket);
      if (call.settled) this.next(conn);
      else this.start(conn, call);
    });
  }

  private start(conn: Connection, call: Call): void {
    conn.call = call;
    call.conn = conn;
    this.busy.add(conn);
    call.armHead();
    call.send(conn);
  }

  /** A connection is free (or gone: null): it takes the next waiting request, or waits itself. */
  next(conn: Connection | null): void {
    if (conn !== null) {
      conn.call = null;
      this.busy.delete(conn);
      conn.idleSince = this.tick;
    }
    for (let call = this.waiting.shift(); call; call = this.waiting.shift()) {
      if (call.settled) continue;
      if (conn !== null) this.start(conn, call);
      else this.assign(call, false);
      return;
    }
    if (conn === null) return this.checkClosed();
    if (this.closing) conn.close();
    else this.idle.push(conn);
  }

  /** A connection closed: it is forgotten, and a waiting request may open another. */
  gone(conn: Connection): void {
    this.open--;
    this.busy.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    this.next(null);
  }

  /** Sends `call` again on a new connection (a reused one closed under it). */
  retry(call: Call): void {
    this.assign(call, true);
  }

  private ensureSweeper(): void {
    if (this.sweeper !== null) return;
    this.sweeper = setInterval(() => this.sweep(), this.tickMs);
    this.sweeper.unref?.();
  }

  private sweep(): void {
    const tick = ++this.tick;
    for (const conn of this.busy) conn.call?.checkDeadline(tick);
    const keep = Math.ceil(this.options.keepAliveMs / this.tickMs);
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i]!;
      if (tick - conn.idleSince >= Math.min(keep, conn.keepAliveTicks)) conn.close();
    }
    if (this.open === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /**
   * How many ticks a connection may stay idle after a response with this `Keep-Alive` header: its `timeout` less a
   * second. A backend sends the same header with every response, so the last one read is remembered.
   */
  keepAliveTicksOf(hint: string | string[]): number {
    const text = typeof hint === 'string' ? hint : hint.join(',');
    if (text !== this.lastHint) {
      const seconds = /(?:^|[,;\s])timeout\s*=\s*(\d+)/i.exec(text);
      this.lastHint = text;
      this.lastHintTicks = seconds ? Math.floor((Number(seconds[1]) * 1000 - 1000) / this.tickMs) : Infinity;
    }
    return this.lastHintTicks;
  }

  /** Ticks for `ms`, one more so that a deadline is never early. */
  ticksFor(ms: number): number {
    return Math.ceil(ms / this.tickMs) + 1;
  }

  get defaultTimeoutMs(): number {
    return this.options.timeoutMs;
  }

  get maxHeadBytes(): number {
    return this.maxHead;
  }

  private checkClosed(): void {
    if (this.open !== 0 || this.waiting.length !== 0) return;
    this.options.onEmpty?.();
    if (this.closed !== null) {
      const done = this.closed;
      this.closed = null;
      done();
    }
  }

  /** Lets the requests under way and waiting finish, closes every connection, and resolves when they are closed. */
  async close(): Promise<void> {
    this.closing = true;
    for (const conn of this.idle.splice(0)) conn.close();
    if (this.open === 0 && this.waiting.length === 0) return;
    await new Promise<void>((resolve) => {
      this.closed = resolve;
      this.checkClosed();
    });
  }

  /** Closes every connection at once; the requests under way and waiting fail. */
  async destroy(): Promise<void> {
    this.closing = true;
    const failure = new errors.ClientDestroyedError();
    for (const call of this.waiting.splice(0)) call.fail(failure);
    for (const conn of [...this.busy]) conn.call?.fail(failure);
    for (const conn of this.idle.splice(0)) conn.close();
  }
}

/**
 * Connections to any origin, each origin an Http1Backend of its own made on its first request and forgotten when its
 * last connection closes: the backend URLs policies choose (set-backend-service), which no API's pool serves.
 */
export class Http1Agent {
  private readonly origins = new Map<string, Http1Backend>();
  private closing = false;

  constructor(private readonly options: Omit<Http1BackendOptions, 'onEmpty'>) {}

  /** Sends one request to `options.origin`; `handler` hears of it as undici's dispatch handlers do. */
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const origin = String(options.origin);
    let backend = this.origins.get(origin);
    if (backend === undefined) {
      if (this.closing) {
        handler.onResponseError?.(NO_CONTROLLER, new errors.ClientClosedError());
        return true;
      }
      const made: Http1Backend = new Http1Backend(origin, {
        ...this.options,
        onEmpty: () => {
          if (this.origins.get(origin) === made) this.origins.delete(origin);
        },
      });
      backend = made;
      this.origins.set(origin, backend);
    }
    return backend.dispatch(options, handler);
  }

  /** Origins with a connection open or a request waiting. */
  get size(): number {
    return this.origins.size;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.origins.values()].map((b) => b.close()));
  }

  async destroy(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.origins.values()].map((b) => b.destroy()));
  }
}

/** The controller handed with a request refused before it had one of its own (nothing to pause or abort). */
const NO_CONTROLLER: Dispatcher.DispatchController = {
  aborted: false,
  paused: false,
  reason: null,
  abort: () => undefined,
  pause: () => undefined,
  resume: () => undefined,
};

/** The request head, checked as undici checks it; the body's framing is added when it is sent. */
function requestHead(options: Dispatcher.DispatchOptions, host: string): string {
  const { method, path } = options;
  if (!isToken(method)) throw new errors.InvalidArgumentError('invalid request method');
  if (path.length === 0 || BAD_PATH.test(path)) throw new errors.InvalidArgumentError('invalid request path');
  let head = `${method} ${path} HTTP/1.1\r\n`;
  let hasHost = false;
  const headers = (options.headers ?? {}) as Record<string, string | string[] | undefined>;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (!isToken(name)) throw new errors.InvalidArgumentError(`invalid header name ${JSON.stringify(name)}`);
    if (name.length === 4 && name.toLowerCase() === 'host') hasHost = true;
    // The body's framing is this client's to write.
    if (FRAMING_LENGTHS.has(name.length) && FRAMING.has(name.toLowerCase())) throw new errors.InvalidArgumentError(`${name} is set by the client`);
    if (typeof value === 'string') {
      if (!isSafeValue(value)) throw new errors.InvalidArgumentError(`invalid ${name} header`);
      head += `${name}: ${value}\r\n`;
    } else {
      for (const v of value) {
        if (!isSafeValue(v)) throw new errors.InvalidArgumentError(`invalid ${name} header`);
        head += `${name}: ${v}\r\n`;
      }
    }
  }
  return hasHost ? head : `${head}host: ${host}\r\n`;
}

class Connection {
  call: Call | null = null;
  /** Bytes received and not yet taken by the parser. */
  buffer: Buffer | null = null;
  /** Responses completed on it: above 0, it was reused. */
  served = 0;
  idleSince = 0;
  keepAliveTicks = Infinity;
  ended = false;
  failure: Error | null = null;
  private gone = false;

  constructor(
    readonly backend: Http1Backend,
    readonly socket: Socket,
  ) {
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.received(chunk));
    socket.on('end', () => this.ending(null));
    socket.on('error', (err: Error) => this.ending(err));
    socket.on('close', () => {
      this.ending(null);
      this.forget();
    });
  }

  private received(chunk: Buffer): void {
    const call = this.call;
    if (call === null) {
      // Bytes nobody asked for: the connection cannot be trusted with another request.
      this.close();
      return;
    }
    this.buffer = this.buffer === null ? chunk : Buffer.concat([this.buffer, chunk]);
    call.read();
  }

  private ending(err: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = err;
    if (this.call) this.call.read();
    else this.close();
  }

  /** Takes `n` bytes from the front of the buffer. */
  take(n: number): Buffer {
    const b = this.buffer!;
    if (n >= b.length) {
      this.buffer = null;
      return b;
    }
    this.buffer = b.subarray(n);
    return b.subarray(0, n);
  }

  close(): void {
    if (!this.socket.destroyed) this.socket.destroy();
    this.forget();
  }

  private forget(): void {
    if (this.gone) return;
    this.gone = true;
    this.backend.gone(this);
  }
}

/** One request on its way: the controller undici's handler is given, and the response's parser. */
class Call implements Dispatcher.DispatchController {
  conn: Connection | null = null;
  head = '';
  settled = false;
  private completed = false;
  private failure: Error | null = null;
  private isPaused = false;
  private reading = Reading.Head;
  private remaining = 0;
  private headReceived = false;
  private anyReceived = false;
  private keepAlive = true;
  private bodySent = false;
  private retried = false;
  private inRead = false;
  private deadline = Infinity;
  private trailers: Record<string, string | string[]> = NO_TRAILERS;
  private readonly noBody: boolean;

  constructor(
    private readonly backend: Http1Backend,
    private readonly handler: Dispatcher.DispatchHandler,
    private readonly options: Dispatcher.DispatchOptions,
  ) {
    this.noBody = options.method === 'HEAD';
  }

  // --- the controller -----------------------------------------------------------------------------------------------

  get aborted(): boolean {
    return this.settled && !this.completed;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  get reason(): Error | null {
    return this.failure;
  }

  pause(): void {
    if (this.settled || this.isPaused) return;
    this.isPaused = true;
    this.conn?.socket.pause();
  }

  resume(): void {
    if (this.settled || !this.isPaused) return;
    this.isPaused = false;
    const conn = this.conn;
    if (conn === null) return;
    conn.socket.resume();
    this.armBody();
    this.read();
  }

  abort(reason: Error): void {
    this.fail(reason);
  }

  // --- sending ------------------------------------------------------------------------------------------------------

  armHead(): void {
    this.deadline = this.backend.tick + this.backend.ticksFor(this.options.headersTimeout ?? this.backend.defaultTimeoutMs);
  }

  private armBody(): void {
    this.deadline = this.backend.tick + this.backend.ticksFor(this.options.bodyTimeout ?? this.backend.defaultTimeoutMs);
  }

  checkDeadline(tick: number): void {
    if (this.isPaused || this.settled || tick < this.deadline) return;
    this.fail(this.headReceived ? new errors.BodyTimeoutError() : new errors.HeadersTimeoutError());
  }

  send(conn: Connection): void {
    const body = this.options.body as Uint8Array | string | AsyncIterable<Uint8Array> | null | undefined;
    const socket = conn.socket;
    if (body == null) {
      this.bodySent = true;
      socket.write(`${this.head}\r\n`, 'latin1');
      return;
    }
    if (typeof body === 'string' || body instanceof Uint8Array) {
      const bytes = typeof body === 'string' ? Buffer.from(body) : body;
      this.bodySent = true;
      socket.cork();
      socket.write(`${this.head}content-length: ${bytes.byteLength}\r\n\r\n`, 'latin1');
      socket.write(bytes);
      socket.uncork();
      return;
    }
    socket.write(`${this.head}transfer-encoding: chunked\r\n\r\n`, 'latin1');
    void this.sendChunked(conn, body).then(
      () => (this.bodySent = true),
      (err: Error) => this.fail(err),
    );
  }

  /**
   * Writes a streamed body chunked, with backpressure. It stops pulling, without ending the stream, when the response
   * ended or failed first: what is left of a client's body is the HTTP server's to drain or cut.
   */
  private async sendChunked(conn: Connection, body: AsyncIterable<Uint8Array>): Promise<void> {
    const socket = conn.socket;
    const chunks = body[Symbol.asyncIterator]();
    for (;;) {
      const { value: chunk, done } = await chunks.next();
      if (this.settled || this.conn !== conn || socket.destroyed) return;
      if (done) break;
      if (chunk.byteLength === 0) continue;
      socket.cork();
      socket.write(`${chunk.byteLength.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      const more = socket.write(CRLF);
      socket.uncork();
      if (!more) await drainedOrClosed(socket);
    }
    socket.write('0\r\n\r\n', 'latin1');
  }

  // --- reading ------------------------------------------------------------------------------------------------------

  /** Parses what the connection holds, as far as it can and the handler lets it. */
  read(): void {
    const conn = this.conn;
    if (conn === null || this.inRead) return;
    this.inRead = true;
    try {
      while (!this.settled && !this.isPaused && conn.buffer !== null) {
        this.anyReceived = true;
        if (!this.step(conn)) break;
      }
    } catch (err) {
      this.fail(err as Error);
    } finally {
      this.inRead = false;
    }
    if (this.settled || this.isPaused || !conn.ended || this.conn !== conn) return;
    if (conn.buffer === null && this.reading === Reading.UntilClose) {
      this.keepAlive = false;
      this.finish(conn);
      return;
    }
    const failure = conn.failure ?? new errors.SocketError('the backend closed the connection before its response was complete');
    if (!this.anyReceived && conn.served > 0 && !this.retried && this.replayable()) {
      this.retried = true;
      this.conn = null;
      conn.close();
      this.backend.retry(this);
      return;
    }
    this.fail(failure);
  }

  private replayable(): boolean {
    const body = this.options.body;
    return IDEMPOTENT.has(this.options.method) && (body == null || typeof body === 'string' || body instanceof Uint8Array);
  }

  /** One step of the parser; false when it needs more bytes. */
  private step(conn: Connection): boolean {
    const buffer = conn.buffer!;
    switch (this.reading) {
      case Reading.Head: {
        const end = buffer.indexOf(HEAD_END);
        if (end < 0) {
          if (buffer.length > this.backend.maxHeadBytes) throw new BadBackendResponse(`response head over ${this.backend.maxHeadBytes} bytes`);
          return false;
        }
        if (end > this.backend.maxHeadBytes) throw new BadBackendResponse(`response head over ${this.backend.maxHeadBytes} bytes`);
        const text = buffer.toString('latin1', 0, end);
        conn.take(end + 4);
        this.responseHead(conn, text);
        return true;
      }
      case Reading.Length:
      case Reading.ChunkData: {
        const chunk = conn.take(this.remaining);
        this.remaining -= chunk.length;
        if (this.remaining === 0) {
          if (this.reading === Reading.ChunkData) this.reading = Reading.ChunkEnd;
          else this.reading = Reading.Done;
        }
        this.armBody();
        this.handler.onResponseData?.(this, chunk);
        if (this.reading === Reading.Done && !this.settled) this.finish(conn);
        return true;
      }
      case Reading.ChunkEnd: {
        if (buffer.length < 2) return false;
        if (buffer[0] !== 13 || buffer[1] !== 10) throw new BadBackendResponse('a chunk not followed by CR LF');
        conn.take(2);
        this.reading = Reading.ChunkSize;
        return true;
      }
      case Reading.ChunkSize: {
        const end = buffer.indexOf(CRLF);
        if (end < 0 || end > MAX_CHUNK_LINE_BYTES) {
          if (end > MAX_CHUNK_LINE_BYTES || buffer.length > MAX_CHUNK_LINE_BYTES) throw new BadBackendResponse('a chunk-size line too long');
          return false;
        }
        const line = buffer.toString('latin1', 0, end);
        const match = CHUNK_LINE.exec(line);
        if (match === null || !isSafeValue(line)) throw new BadBackendResponse('an invalid chunk-size line');
        conn.take(end + 2);
        this.remaining = parseInt(match[1]!, 16);
        this.reading = this.remaining === 0 ? Reading.Trailers : Reading.ChunkData;
        return true;
      }
      case Reading.Trailers: {
        if (buffer.length >= 2 && buffer[0] === 13 && buffer[1] === 10) {
          conn.take(2);
          this.finish(conn);
          return true;
        }
        const end = buffer.indexOf(HEAD_END);
        if (end < 0) {
          if (buffer.length > this.backend.maxHeadBytes) throw new BadBackendResponse(`trailers over ${this.backend.maxHeadBytes} bytes`);
          return false;
        }
        const lines = buffer.toString('latin1', 0, end).split('\r\n');
        conn.take(end + 4);
        this.trailers = fields(lines, 0);
        this.finish(conn);
        return true;
      }
      case Reading.UntilClose: {
        const chunk = conn.take(buffer.length);
        this.armBody();
        this.handler.onResponseData?.(this, chunk);
        return true;
      }
      default:
        // Bytes after a complete response, before the connection was freed: not trusted.
        throw new BadBackendResponse('bytes after the end of a response');
    }
  }

  private responseHead(conn: Connection, text: string): void {
    const lines = text.split('\r\n');
    const line = lines[0]!;
    const code = statusOf(line);
    if (code === 0) throw new BadBackendResponse(`an invalid status line: ${JSON.stringify(line.slice(0, 64))}`);
    const reason = line.length > 13 ? line.slice(13) : '';
    if (!isSafeValue(reason)) throw new BadBackendResponse('a control character in the status line');
    const headers = fields(lines, 1);
    if (code < 200) {
      // 100 Continue and 103 Early Hints come before the response; 101 answers an upgrade the gateway never asked for.
      if (code === 101) throw new BadBackendResponse('101 Switching Protocols to a request that did not ask to upgrade');
      return;
    }
    this.headReceived = true;
    this.keepAlive = keepsAlive(line.charCodeAt(7) === 0x31, headers.connection);
    const hint = headers['keep-alive'];
    if (hint !== undefined) conn.keepAliveTicks = this.backend.keepAliveTicksOf(hint);
    this.reading = this.framing(code, headers);
    this.armBody();
    this.handler.onResponseStart?.(this, code, headers, reason);
    if (this.reading === Reading.Done && !this.settled) this.finish(conn);
  }

  /** How the body ends: RFC 9112 6.3. */
  private framing(code: number, headers: Record<string, string | string[]>): Reading {
    const coding = headers['transfer-encoding'];
    const length = headers['content-length'];
    if (coding !== undefined && length !== undefined) throw new BadBackendResponse('both Transfer-Encoding and Content-Length');
    if (this.noBody || code === 204 || code === 304) return Reading.Done;
    if (coding !== undefined) {
      if (typeof coding !== 'string' || coding.trim().toLowerCase() !== 'chunked') {
        throw new BadBackendResponse(`Transfer-Encoding ${JSON.stringify(String(coding))}: only chunked is read`);
      }
      return Reading.ChunkSize;
    }
    if (length !== undefined) {
      this.remaining = Number(typeof length === 'string' && isLength(length) ? length : oneLength(length));
      return this.remaining === 0 ? Reading.Done : Reading.Length;
    }
    this.keepAlive = false;
    return Reading.UntilClose;
  }

  private finish(conn: Connection): void {
    if (this.settled) return;
    this.settled = true;
    this.completed = true;
    this.reading = Reading.Done;
    conn.served++;
    // Paused at a head with no body, the connection would not read the next response.
    if (this.isPaused) {
      this.isPaused = false;
      conn.socket.resume();
    }
    const reusable = this.keepAlive && this.bodySent && conn.buffer === null && !conn.ended && conn.keepAliveTicks > 0;
    this.conn = null;
    if (reusable) this.backend.next(conn);
    else conn.close();
    this.handler.onResponseEnd?.(this, this.trailers);
  }

  /** Ends the request with `err`: the handler hears of it once, and the connection is closed. */
  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.failure = err;
    const conn = this.conn;
    this.conn = null;
    conn?.close();
    this.handler.onResponseError?.(this, err);
  }
}

/** Header fields from `lines[from..]`, names in lower case; a field repeated gives an array. */
function fields(lines: string[], from: number): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = from; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new BadBackendResponse(`a header line without a name: ${JSON.stringify(line.slice(0, 64))}`);
    const key = headerKey(line.slice(0, colon));
    if (key === null) throw new BadBackendResponse(`an invalid header name: ${JSON.stringify(line.slice(0, Math.min(colon, 64)))}`);
    const value = withoutOws(line, colon + 1);
    if (!isSafeValue(value)) throw new BadBackendResponse(`a control character in the ${key} header`);
    const prior = out[key];
    if (prior === undefined) out[key] = value;
    else if (typeof prior === 'string') out[key] = [prior, value];
    else prior.push(value);
  }
  return out;
}

/** `line` from `from` without the optional whitespace (space, tab) around a field value. */
function withoutOws(line: string, from: number): string {
  let start = from;
  let end = line.length;
  while (start < end && (line.charCodeAt(start) === 32 || line.charCodeAt(start) === 9)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 32 || line.charCodeAt(end - 1) === 9)) end--;
  return line.slice(start, end);
}

/** The status code of an HTTP/1.0 or 1.1 status line ("HTTP/1.1 200 OK", the reason optional), or 0 when it is not one. */
function statusOf(line: string): number {
  if (line.length < 12 || !line.startsWith('HTTP/1.')) return 0;
  const minor = line.charCodeAt(7);
  if ((minor !== 0x30 && minor !== 0x31) || line.charCodeAt(8) !== 0x20) return 0;
  if (line.length > 12 && line.charCodeAt(12) !== 0x20) return 0;
  const a = line.charCodeAt(9) - 0x30;
  const b = line.charCodeAt(10) - 0x30;
  const c = line.charCodeAt(11) - 0x30;
  if (a < 1 || a > 9 || b < 0 || b > 9 || c < 0 || c > 9) return 0;
  return a * 100 + b * 10 + c;
}

/** The one length of a Content-Length repeated or given as a list (copies of one length only), or a bad response. */
function oneLength(length: string | string[]): string {
  const values = (typeof length === 'string' ? [length] : length).flatMap((v) => v.split(','));
  const first = values[0]!.trim();
  if (!isLength(first) || values.some((v) => v.trim() !== first)) throw new BadBackendResponse(`an invalid Content-Length: ${JSON.stringify(String(length))}`);
  return first;
}

/** 1 to 15 decimal digits: a Content-Length this client reads. */
function isLength(text: string): boolean {
  if (text.length === 0 || text.length > 15) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** Whether a connection stays open after a response (RFC 9112 9.3): HTTP/1.1 unless it says close, 1.0 if it says keep-alive. */
function keepsAlive(http11: boolean, connection: string | string[] | undefined): boolean {
  if (connection === undefined) return http11;
  const tokens = (typeof connection === 'string' ? connection : connection.join(',')).toLowerCase();
  // The two common answers, without the regular expressions.
  if (tokens === 'keep-alive') return true;
  if (tokens === 'close') return false;
  return http11 ? !/(?:^|,)\s*close\s*(?:,|$)/.test(tokens) : /(?:^|,)\s*keep-alive\s*(?:,|$)/.test(tokens);
}
