// Connections to backends under Deno: undici's connector with one fix Node does not need.
//
// undici pauses its HTTP/1 parser while a response body waits to be read (the gateway pauses every backend response
// at its head while outbound policies run, and again under backpressure from a slow client). When the backend then
// closes the connection, undici finishes the parser from the socket's 'end' handler and asserts it is not paused.
// Node never emits 'end' while the buffered data has not been read, so the assertion holds there; Deno's node:net
// emits it at once, the assertion fails inside an event handler and the process dies (nodejs/undici#5360, fixed in
// undici 8, which needs Node 22). Any backend answering with a body delimited by closing the connection (HTTP/1.0
// servers; a backend refusing an oversized request with `431` and `Connection: close`) would take a Deno gateway down.
//
// The fix does what undici 8 does: before undici's own 'end' handler runs, the paused parser is resumed until it
// has taken everything the socket holds. What it delivers waits in the response's queue (backend-response.ts); the
// connection is ending, so no more can come and nothing is left to hold back.

import type { Socket } from 'node:net';
import { undiciConnector, type ConnectorFactory } from '../../network/connector.ts';

/** The part of undici's HTTP/1 parser used here (lib/dispatcher/client-h1.js). */
interface PausableParser {
  paused: boolean;
  resume(): void;
}

/** undici keeps a socket's parser under a symbol of its own (`Symbol('parser')`), found on the first socket that has one. */
let parserSymbol: symbol | null = null;

function parserOf(socket: Socket): PausableParser | null {
  if (parserSymbol === null) {
    parserSymbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'parser') ?? null;
    if (parserSymbol === null) return null;
  }
  const parser = (socket as unknown as Record<symbol, unknown>)[parserSymbol] as PausableParser | null | undefined;
  return parser && typeof parser.resume === 'function' ? parser : null;
}

/** More resumes than this means the parser does not move: undici's own handling takes over (and may fail). */
const MAX_RESUMES = 10_000;

function resumeBeforeEnd(socket: Socket): void {
  socket.prependListener('end', () => {
    const parser = parserOf(socket);
    for (let i = 0; parser?.paused && !socket.destroyed && i < MAX_RESUMES; i++) parser.resume();
  });
}

/** undici's connector, each socket it opens given the fix above. */
export const denoConnector: ConnectorFactory = (options = {}) => {
  const connect = undiciConnector(options);
  return (options, callback) =>
    connect(options, (...args) => {
      const socket = args[1];
      if (socket) resumeBeforeEnd(socket);
      callback(...args);
    });
};
