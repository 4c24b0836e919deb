// The part of the `ws` package (8.x) the tests and benchmarks use: the package ships no types, and @types/ws would be
// one more package to keep in step for a dozen members.

declare module 'ws' {
  import type { EventEmitter } from 'node:events';
  import type { IncomingMessage, Server as HttpServer } from 'node:http';
  import type { Duplex } from 'node:stream';

  type Data = Buffer | ArrayBuffer | Buffer[];

  export default class WebSocket extends EventEmitter {
    static readonly OPEN: 1;
    constructor(address: string, options?: { headers?: Record<string, string>; maxPayload?: number; perMessageDeflate?: boolean; protocolVersion?: number });
    readonly readyState: 0 | 1 | 2 | 3;
    readonly bufferedAmount: number;
    send(data: string | Buffer | Uint8Array, options?: { binary?: boolean }, cb?: (err?: Error) => void): void;
    send(data: string | Buffer | Uint8Array, cb?: (err?: Error) => void): void;
    close(code?: number, reason?: string): void;
    terminate(): void;
    ping(): void;
    on(event: 'message', listener: (data: Data, isBinary: boolean) => void): this;
    on(event: 'close', listener: (code: number, reason: Buffer) => void): this;
    on(event: 'unexpected-response', listener: (req: unknown, res: IncomingMessage) => void): this;
    on(event: 'upgrade', listener: (res: IncomingMessage) => void): this;
    on(event: 'open', listener: () => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    once(event: 'message', listener: (data: Data, isBinary: boolean) => void): this;
    once(event: 'close', listener: (code: number, reason: Buffer) => void): this;
    once(event: 'unexpected-response', listener: (req: unknown, res: IncomingMessage) => void): this;
    once(event: 'open', listener: () => void): this;
    once(event: 'error', listener: (err: Error) => void): this;
  }

  export class WebSocketServer extends EventEmitter {
    constructor(options: { port?: number; host?: string; server?: HttpServer; noServer?: boolean; maxPayload?: number; perMessageDeflate?: boolean });
    readonly clients: Set<WebSocket>;
    address(): { port: number };
    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, cb: (ws: WebSocket, req: IncomingMessage) => void): void;
    on(event: 'connection', listener: (ws: WebSocket, req: IncomingMessage) => void): this;
    on(event: 'listening', listener: () => void): this;
    close(cb?: (err?: Error) => void): void;
  }
}
