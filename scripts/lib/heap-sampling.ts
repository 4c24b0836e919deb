// What a process allocates while something runs, by V8's sampling heap profiler over the inspector protocol: the
// process is started with `--inspect=127.0.0.1:<port>`, and the profile keeps the samples of objects that were
// collected since (both collectors), so it counts every allocation, not only what is still alive at the end.
// A sample stands for `SAMPLING_INTERVAL_BYTES` on average; over tens of thousands of requests the per-request figure
// is stable to a few per cent, and, unlike time, it does not depend on how busy the machine is.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'undici';

const SAMPLING_INTERVAL_BYTES = 512;

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface SamplingNode {
  callFrame: CallFrame;
  selfSize: number;
  children: SamplingNode[];
}

/** Bytes allocated by each site (function and where it is), and in all. */
export interface AllocationProfile {
  totalBytes: number;
  sites: Map<string, number>;
}

/** Runs `during` with the profiler sampling in the process whose inspector listens on `port`. */
export async function sampleAllocations(inspectorPort: number, during: () => Promise<void>): Promise<AllocationProfile> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  if (!targets[0]) throw new Error(`no inspector target on port ${inspectorPort}`);
  const socket = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve());
    socket.addEventListener('error', () => reject(new Error(`cannot connect to the inspector on port ${inspectorPort}`)));
  });
  const pending = new Map<number, (message: { result?: unknown; error?: { message: string } }) => void>();
  let lastId = 0;
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
    if (message.id !== undefined) pending.get(message.id)?.(message);
  });
  const send = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = ++lastId;
      pending.set(id, (message) => {
        pending.delete(id);
        if (message.error) reject(new Error(`${method}: ${message.error.message}`));
        else resolve(message.result);
      });
      socket.send(JSON.stringify({ id, method, params }));
    });
  try {
    await send('HeapProfiler.enable');
    await send('HeapProfiler.startSampling', {
      samplingInterval: SAMPLING_INTERVAL_BYTES,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    await during();
    const { profile } = (await send('HeapProfiler.stopSampling')) as { profile: { head: SamplingNode } };
    return summarise(profile.head);
  } finally {
    socket.close();
  }
}

function summarise(head: SamplingNode): AllocationProfile {
  const sites = new Map<string, number>();
  let totalBytes = 0;
  const stack = [head];
  while (stack.length > 0) {
    const node = stack.pop()!;
    totalBytes += node.selfSize;
    if (node.selfSize > 0) {
      const site = siteName(node.callFrame);
      sites.set(site, (sites.get(site) ?? 0) + node.selfSize);
    }
    stack.push(...node.children);
  }
  return { totalBytes, sites };
}

/**
 * `function source-file:line`. The build bundles the runtime into shared chunks whose modules are headed by a
 * `// <source path>` comment; a site in a chunk is named by the source file of the module it lies in.
 */
function siteName(frame: CallFrame): string {
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  if (!frame.url.startsWith('file:') || !frame.url.includes('/dist/')) return `${name} ${frame.url.replace(/^.*\/node_modules\//, '')}:${frame.lineNumber + 1}`;
  const lines = chunkLines(frame.url);
  for (let i = Math.min(frame.lineNumber, lines.length - 1); i >= 0; i--) {
    const m = /^\/\/ ((?:runtime|sdk|scripts|abi)\/\S+\.ts)$/.exec(lines[i]!);
    if (m) return `${name} ${m[1]}`;
  }
  return `${name} ${frame.url.replace(/^.*\/dist\//, 'dist/')}:${frame.lineNumber + 1}`;
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
