// A client of a process's inspector (the Chrome DevTools protocol over WebSocket), for the scripts that profile a
// gateway from outside while load runs against it: the process is started with `--inspect=127.0.0.1:<port>`.

import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { repoRoot } from '../../runtime/assets/repo-root.ts';
import { WebSocket } from 'undici';

export interface InspectorSession {
  /** Sends one protocol command; resolves with its result, rejects with its error. */
  send(method: string, params?: object): Promise<unknown>;
  close(): void;
}

/** A session on the process's main thread, which can also reach its worker threads. */
export interface ProcessInspector extends InspectorSession {
  /** Sessions on the worker threads running now (NodeWorker domain), each with the worker's title and URL. */
  workers(): Promise<Array<{ title: string; url: string; session: InspectorSession }>>;
}

type Message = { id?: number; method?: string; params?: Record<string, unknown>; result?: unknown; error?: { message: string } };

/** Commands over `post`, answered by `deliver`ed messages (the main thread's socket, or a worker's relayed ones). */
function commandChannel(post: (text: string) => void): { session: Omit<InspectorSession, 'close'>; deliver(message: Message): void } {
  const pending = new Map<number, (message: Message) => void>();
  let lastId = 0;
  return {
    deliver(message) {
      if (message.id !== undefined) pending.get(message.id)?.(message);
    },
    session: {
      send: (method, params = {}) =>
        new Promise<unknown>((resolve, reject) => {
          const id = ++lastId;
          pending.set(id, (message) => {
            pending.delete(id);
            if (message.error) reject(new Error(`${method}: ${message.error.message}`));
            else resolve(message.result);
          });
          post(JSON.stringify({ id, method, params }));
        }),
    },
  };
}

/** Connects to the first target of the inspector listening on `port`. */
export async function connectInspector(port: number): Promise<ProcessInspector> {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  if (!targets[0]) throw new Error(`no inspector target on port ${port}`);
  const socket = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve());
    socket.addEventListener('error', () => reject(new Error(`cannot connect to the inspector on port ${port}`)));
  });
  const main = commandChannel((text) => socket.send(text));
  const workerChannels = new Map<string, ReturnType<typeof commandChannel>>();
  const attached: Array<{ sessionId: string; title: string; url: string }> = [];
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as Message;
    if (message.method === 'NodeWorker.attachedToWorker') {
      const { sessionId, workerInfo } = message.params as { sessionId: string; workerInfo: { title: string; url: string } };
      attached.push({ sessionId, title: workerInfo.title, url: workerInfo.url });
    } else if (message.method === 'NodeWorker.receivedMessageFromWorker') {
      const { sessionId, message: text } = message.params as { sessionId: string; message: string };
      workerChannels.get(sessionId)?.deliver(JSON.parse(text) as Message);
    } else {
      main.deliver(message);
    }
  });
  return {
    ...main.session,
    close: () => socket.close(),
    async workers() {
      // Attaching answers with one attachedToWorker event per worker, sent before the command's own answer.
      await main.session.send('NodeWorker.enable', { waitForDebuggerOnStart: false });
      return attached.map(({ sessionId, title, url }) => {
        let channel = workerChannels.get(sessionId);
        if (!channel) {
          channel = commandChannel((text) => void main.session.send('NodeWorker.sendMessageToWorker', { sessionId, message: text }));
          workerChannels.set(sessionId, channel);
        }
        return { title, url, session: { ...channel.session, close: () => undefined } };
      });
    },
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
  // Deno runs the sources themselves: a frame there is named by its file in the repository.
  if (frame.url.startsWith(sourcesUrl) && !/\/(?:node_modules|dist)\//.test(frame.url)) return frame.url.slice(sourcesUrl.length);
  if (!frame.url.startsWith('file:') || !frame.url.includes('/dist/')) return `${frame.url.replace(/^.*\/node_modules\//, '')}:${frame.lineNumber + 1}`;
  const lines = chunkLines(frame.url);
  for (let i = Math.min(frame.lineNumber, lines.length - 1); i >= 0; i--) {
    const m = /^\/\/ ((?:runtime|sdk|scripts|abi)\/\S+\.ts)$/.exec(lines[i]!);
    if (m) return m[1]!;
  }
  return `${frame.url.replace(/^.*\/dist\//, 'dist/')}:${frame.lineNumber + 1}`;
}

const sourcesUrl = `${pathToFileURL(repoRoot()).href}/`;

const chunkCache = new Map<string, string[]>();
function chunkLines(url: string): string[] {
  let lines = chunkCache.get(url);
  if (!lines) {
    lines = readFileSync(fileURLToPath(url), 'utf8').split('\n');
    chunkCache.set(url, lines);
  }
  return lines;
}
