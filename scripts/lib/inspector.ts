// A client of a process's inspector (the Chrome DevTools protocol over WebSocket), for the scripts that profile a
// gateway from outside while load runs against it: the process is started with `--inspect=127.0.0.1:<port>`.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'undici';

export interface InspectorSession {
  /** Sends one protocol command; resolves with its result, rejects with its error. */
  send(method: string, params?: object): Promise<unknown>;
  close(): void;
}

/** Connects to the first target of the inspector listening on `port`. */
export async function connectInspector(port: number): Promise<InspectorSession> {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  if (!targets[0]) throw new Error(`no inspector target on port ${port}`);
  const socket = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve());
    socket.addEventListener('error', () => reject(new Error(`cannot connect to the inspector on port ${port}`)));
  });
  const pending = new Map<number, (message: { result?: unknown; error?: { message: string } }) => void>();
  let lastId = 0;
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
    if (message.id !== undefined) pending.get(message.id)?.(message);
  });
  return {
    send: (method, params = {}) =>
      new Promise<unknown>((resolve, reject) => {
        const id = ++lastId;
        pending.set(id, (message) => {
          pending.delete(id);
          if (message.error) reject(new Error(`${method}: ${message.error.message}`));
          else resolve(message.result);
        });
        socket.send(JSON.stringify({ id, method, params }));
      }),
    close: () => socket.close(),
  };
}

export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

/**
 * Where a frame is, as `function source-file:line`. The build bundles the runtime into shared chunks whose modules are
 * headed by a `// <source path>` comment; a frame in a chunk is named by the source file of the module it lies in.
 */
export function frameSite(frame: CallFrame): string {
  const name = frame.functionName || '(anonymous)';
  const file = sourceFileOf(frame);
  return file === null ? name : `${name} ${file}`;
}

/** The frame's file as the repository names it (`runtime/...ts`, `undici/lib/...js`, `node:...`); null when it has none. */
export function sourceFileOf(frame: CallFrame): string | null {
  if (!frame.url) return null;
  if (!frame.url.startsWith('file:') || !frame.url.includes('/dist/')) return `${frame.url.replace(/^.*\/node_modules\//, '')}:${frame.lineNumber + 1}`;
  const lines = chunkLines(frame.url);
  for (let i = Math.min(frame.lineNumber, lines.length - 1); i >= 0; i--) {
    const m = /^\/\/ ((?:runtime|sdk|scripts|abi)\/\S+\.ts)$/.exec(lines[i]!);
    if (m) return m[1]!;
  }
  return `${frame.url.replace(/^.*\/dist\//, 'dist/')}:${frame.lineNumber + 1}`;
}

const chunkCache = new Map<string, string[]>();
function chunkLines(url: string): string[] {
  let lines = chunkCache.get(url);
  if (!lines) {
    lines = readFileSync(fileURLToPath(url), 'utf8').split('\n');
    chunkCache.set(url, lines);
  }
  return lines;
}
