// WebSocket pass-through: the backend's side of an upgrade (the handshake, on a connection of its own), then the
// bytes piped both ways between the client's socket and the backend's until either closes.
//
// The gateway does not decode messages: it passes the bytes as they come, reading only each frame's head
// (websocket-frames.ts) to bound message sizes and to close at a frame boundary with a code of its own. Decoding and
// re-encoding every message (a WebSocket library on each side) would copy and unmask every payload twice.
//
// Connections to backends are opened by the same connectors as the forwarder's pools (the runtime adapter's, through
// the egress guard for a URL a policy reached through a wildcard grant), one per WebSocket: undici's pools cannot hand
// over a connection after a 101.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { buildConnector } from 'undici';
import { BackendError } from '../pipeline/chain.ts';
import type { EgressGuard } from '../network/egress-guard.ts';
import type { Exchange, HeaderMap } from '../policy-host/exchange.ts';
import { backendLocation, hopByHopResponseHeader, toBackendError, upstreamHeaders, type ForwardTarget } from './forward.ts';
import { closeFrame, FrameScanner, type FrameProblem } from './websocket-frames.ts';

/** The largest response head a backend may answer an upgrade with. */
const MAX_HEAD_BYTES = 16 * 1024;
/** A backend refusing an upgrade: its body is passed on up to this size, dropped beyond (most are short problems). */
const MAX_REFUSAL_BODY_BYTES = 64 * 1024;
/** After the gateway sends its close frames, how long the peers get to answer and close before they are cut. */
export const CLOSE_GRACE_MS = 2000;

/** What the backend answered an upgrade with; on 101, its socket and what it sent after its head. */
export interface BackendHandshake {
  status: number;
  headers: HeaderMap;
  body: Uint8Array | null;
  upgraded: { socket: Socket; early: Buffer } | null;
}

export class WebSocketForwarder {
  private readonly direct: buildConnector.connector;
  private readonly checked: buildConnector.connector;

  constructor(egress: EgressGuard) {
    this.direct = egress.direct();
    this.checked = egress.connector();
  }

  /**
   * Sends the exchange's request, as the inbound chain left it, to its backend as an upgrade to WebSocket and reads the
   * answer's head (within `timeoutMs`). A failure is a BackendError, as the forwarder's.
   */
  async handshake(exchange: Exchange, to: ForwardTarget, timeoutMs: number): Promise<BackendHandshake> {
    const { chosen, origin, path } = backendLocation(exchange, to);
    const url = new URL(origin);
    const connect = exchange.backendAccess === 'wildcard' ? this.checked : this.direct;
    let socket: Socket | null = null;
    try {
      socket = await new Promise<Socket>((resolve, reject) =>
        connect({ hostname: url.hostname, host: url.host, protocol: url.protocol, port: url.port }, (err, s) => (err ? reject(err) : resolve(s!))),
      );
      socket.setNoDelay(true);
      const req = exchange.request;
      const lines = [`GET ${path}${req.query ? `?${req.query}` : ''} HTTP/1.1`, `host: ${url.host}`, 'connection: Upgrade', 'upgrade: websocket'];
      for (const [name, value] of Object.entries(upstreamHeaders(exchange))) {
        for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
      }
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      const answer = await readHead(socket, timeoutMs);
      if (chosen && to.backends) to.backends.report(chosen, answer.status < 502 || answer.status > 504);
      if (answer.status === 101) {
        if (!/^websocket$/i.test(answer.headers.get('upgrade')?.[0] ?? '')) {
          throw new BackendError('bad-response', 502, 'backend answered the upgrade with 101 but not to websocket');
        }
        return { status: 101, headers: answer.headers, body: null, upgraded: { socket, early: answer.rest } };
      }
      const body = await readRefusalBody(socket, answer, timeoutMs);
      socket.destroy();
      return { status: answer.status, headers: answer.headers, body, upgraded: null };
    } catch (err) {
      socket?.destroy();
      if (chosen && to.backends && !(err instanceof BackendError)) to.backends.report(chosen, false);
      throw toBackendError(err);
    }
  }
}

interface Head {
  status: number;
  headers: HeaderMap;
  /** Bytes after the head. */
  rest: Buffer;
}

/** Reads an HTTP/1.1 response head from `socket` (the socket is left paused with its listeners removed). */
function readHead(socket: Socket, timeoutMs: number): Promise<Head> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    const done = (err: Error | null, head?: Head) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.pause();
      if (err) reject(err);
      else resolve(head!);
    };
    const onData = (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buffered.length > MAX_HEAD_BYTES) done(new BackendError('bad-response', 502, `backend response head larger than ${MAX_HEAD_BYTES} bytes`));
        return;
      }
      const parsed = parseHead(buffered.subarray(0, end).toString('latin1'));
      if (parsed === null) return done(new BackendError('bad-response', 502, 'backend answered the upgrade with a malformed response head'));
      done(null, { ...parsed, rest: buffered.subarray(end + 4) });
    };
    const onError = (err: Error) => done(err);
    const onEnd = () => done(Object.assign(new Error('backend closed the connection'), { code: 'ECONNRESET' }));
    const timer = setTimeout(() => done(new BackendError('timeout', 504, 'backend did not answer in time')), timeoutMs);
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.resume();
  });
}

function parseHead(text: string): { status: number; headers: HeaderMap } | null {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0]!);
  if (!status) return null;
  const headers: HeaderMap = new Map();
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i]!.indexOf(':');
    if (colon <= 0) return null;
    const name = lines[i]!.slice(0, colon).trim().toLowerCase();
    const value = lines[i]!.slice(colon + 1).trim();
    const existing = headers.get(name);
    if (existing) existing.push(value);
    else headers.set(name, [value]);
  }
  return { status: Number(status[1]), headers };
}

/** The body of a backend's refusal when it is short and delimited by its length; null otherwise (and the length dropped). */
async function readRefusalBody(socket: Socket, answer: Head, timeoutMs: number): Promise<Uint8Array | null> {
  const length = Number(answer.headers.get('content-length')?.[0] ?? NaN);
  for (const name of [...answer.headers.keys()]) if (hopByHopResponseHeader(name)) answer.headers.delete(name);
  answer.headers.delete('content-length');
  if (!Number.isSafeInteger(length) || length <= 0 || length > MAX_REFUSAL_BODY_BYTES) return null;
  let body = answer.rest;
  if (body.length < length) {
    body = await new Promise<Buffer>((resolve) => {
      const chunks = [body];
      let size = body.length;
      const finish = () => {
        clearTimeout(timer);
        socket.removeAllListeners('data');
        resolve(Buffer.concat(chunks));
      };
      const timer = setTimeout(finish, timeoutMs);
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= length) finish();
      });
      socket.once('end', finish);
      socket.once('error', finish);
      socket.resume();
    });
  }
  return body.subarray(0, length);
}

// --- the tunnel ------------------------------------------------------------------------------------------------------

export interface TunnelLimits {
  /** No byte either way for this long: both sides get close 1001 and the connection goes. */
  idleTimeoutMs: number;
  /** The largest message either side may send (its frames' payloads together); past it, close 1009. */
  maxMessageBytes: number;
}

export interface TunnelEnd {
  durationMs: number;
  /** Bytes from the client to the backend, and back. */
  toBackend: number;
  toClient: number;
  /** Why the gateway closed it (idle timeout, message too large, shutdown), or null when a peer closed it. */
  closedBy: string | null;
}

export interface TunnelReport {
  bytes(direction: 'toBackend' | 'toClient', n: number): void;
  ended(end: TunnelEnd): void;
}

/** One direction of the tunnel: bytes from `src` written to `dst`, their frame heads read on the way. */
class Pipe {
  bytes = 0;
  /** A close frame waiting for the next frame boundary; then nothing more from src is passed on. */
  private pending: Buffer | null = null;
  stopped = false;

  constructor(
    readonly src: Duplex,
    readonly dst: Duplex,
    private readonly scanner: FrameScanner,
    private readonly direction: 'toBackend' | 'toClient',
    private readonly tunnel: Tunnel,
  ) {}

  start(early: Buffer): void {
    this.src.on('data', (chunk: Buffer) => this.data(chunk));
    this.dst.on('drain', () => this.src.resume());
    if (early.length > 0) this.data(early);
    this.src.resume();
  }

  private data(chunk: Buffer): void {
    if (this.stopped) return;
    const scanned = this.scanner.scan(chunk, this.pending !== null);
    if (typeof scanned !== 'number') return this.tunnel.refuse(this, scanned);
    const passed = scanned < 0 ? chunk : chunk.subarray(0, scanned);
    this.bytes += passed.length;
    this.tunnel.report.bytes(this.direction, passed.length);
    const more = this.dst.write(passed);
    if (this.pending !== null && scanned >= 0) this.sendClose(this.pending);
    else if (!more) this.src.pause();
  }

  /** Sends `frame` to dst at the next frame boundary (now, if between frames) and passes nothing more from src. */
  closeWith(frame: Buffer): void {
    if (this.stopped || this.pending) return;
    if (this.scanner.atBoundary) this.sendClose(frame);
    else this.pending = frame;
  }

  private sendClose(frame: Buffer): void {
    this.pending = null;
    this.stopped = true;
    if (!this.dst.destroyed) this.dst.write(frame);
    // What src still sends (its answering close frame) is read and dropped, so that it can finish its close.
    this.src.resume();
  }
}

/** A WebSocket connection through the gateway: the client's socket and the backend's, piped both ways. */
export class Tunnel {
  private readonly started = performance.now();
  private readonly up: Pipe;
  private readonly down: Pipe;
  private closedBy: string | null = null;
  private ended = false;
  private cutTimer: ReturnType<typeof setTimeout> | null = null;
  /** Resolves when both sockets are closed. */
  readonly done: Promise<void>;

  constructor(
    private readonly client: Duplex,
    private readonly backend: Socket,
    limits: TunnelLimits,
    readonly report: TunnelReport,
  ) {
    this.up = new Pipe(client, backend, new FrameScanner(limits.maxMessageBytes, true), 'toBackend', this);
    this.down = new Pipe(backend, client, new FrameScanner(limits.maxMessageBytes, false), 'toClient', this);
    let clientClosed = false;
    let backendClosed = false;
    this.done = new Promise<void>((resolve) => {
      const closed = () => {
        if (!clientClosed || !backendClosed || this.ended) return;
        this.ended = true;
        if (this.cutTimer) clearTimeout(this.cutTimer);
        report.ended({ durationMs: performance.now() - this.started, toBackend: this.up.bytes, toClient: this.down.bytes, closedBy: this.closedBy });
        resolve();
      };
      client.once('close', () => {
        clientClosed = true;
        // The client gone, its backend connection has no one to answer to.
        if (!backend.destroyed) backend.end();
        this.cutSoon();
        closed();
      });
      backend.once('close', () => {
        backendClosed = true;
        if (!(client as Socket).destroyed) client.end();
        this.cutSoon();
        closed();
      });
    });
    // A half-close is passed on; errors (a reset) end both.
    client.on('end', () => backend.end());
    backend.on('end', () => client.end());
    client.on('error', () => backend.destroy());
    backend.on('error', () => client.destroy());
    (client as Socket).setTimeout?.(limits.idleTimeoutMs, () => this.close(1001, 'idle timeout'));
  }

  /** Writes the 101 head to the client, then passes bytes both ways (`clientHead`: what the client sent after its request). */
  start(head101: string, clientHead: Buffer, backendEarly: Buffer): void {
    this.client.write(head101);
    this.down.start(backendEarly);
    this.up.start(clientHead);
  }

  /**
   * The gateway closes the connection: a close frame with `code` to both sides at their next frame boundary, then
   * CLOSE_GRACE_MS for them to answer and close before both sockets are cut.
   */
  close(code: number, reason: string): void {
    if (this.closedBy !== null || this.ended) return;
    this.closedBy = reason;
    this.down.closeWith(closeFrame(code, reason, false));
    this.up.closeWith(closeFrame(code, reason, true));
    this.cutSoon();
  }

  /** A pipe met a frame it refuses: its sender gets `problem`'s code, the other side 1001. */
  refuse(pipe: Pipe, problem: FrameProblem): void {
    if (this.closedBy !== null) return;
    this.closedBy = problem.reason;
    pipe.stopped = true;
    const fromClient = pipe === this.up;
    // The refused frame's sender is told why; the other side only that the gateway goes away. Where the refused
    // frame's direction stands mid-frame, its receiver cannot be sent a frame: its socket is ended.
    (fromClient ? this.down : this.up).closeWith(closeFrame(problem.code, problem.reason, !fromClient));
    pipe.dst.end();
    this.cutSoon();
  }

  /** Both sockets destroyed after the grace period, whatever the peers do. */
  private cutSoon(): void {
    if (this.cutTimer || this.ended) return;
    this.cutTimer = setTimeout(() => {
      this.client.destroy();
      this.backend.destroy();
    }, CLOSE_GRACE_MS);
  }
}

/** The 101 head the client gets: the backend's headers as the chain left them, hop-by-hop ones replaced. */
export function switchingProtocolsHead(headers: HeaderMap): string {
  const lines = ['HTTP/1.1 101 Switching Protocols', 'connection: Upgrade', 'upgrade: websocket'];
  for (const [name, values] of headers) {
    if (hopByHopResponseHeader(name) || name === 'content-length') continue;
    for (const v of values) lines.push(`${name}: ${v}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}
