// The Deno adapter. Deno's node:process, node:http and node:net serve the core as Node's do, with two differences
// that matter: a socket emits 'end' before its buffered data is read (backend-connector.ts), and process.stdout
// writes synchronously, so a pipe nobody reads would stall the whole process (stdout below).

import { processClocks } from '../process-clocks.ts';
import type { LogWriter } from '../../telemetry/log-sink.ts';
import type { RuntimeAdapter } from '../runtime-adapter.ts';
import { denoConnector } from './backend-connector.ts';

interface DenoStdout {
  write(p: Uint8Array): Promise<number>;
  writeSync(p: Uint8Array): number;
}

/** Deno.stdout.write, which waits off the event loop. */
function stdout(): LogWriter {
  const out = (globalThis as unknown as { Deno: { stdout: DenoStdout } }).Deno.stdout;
  const encoder = new TextEncoder();
  return {
    write(text, done) {
      const bytes = encoder.encode(text);
      const writeAll = async () => {
        for (let at = 0; at < bytes.length; ) {
          const n = await out.write(bytes.subarray(at));
          if (n <= 0) throw new Error('standard output took no bytes');
          at += n;
        }
      };
      writeAll().then(
        () => done(null),
        (err: unknown) => done(err instanceof Error ? err : new Error(String(err))),
      );
    },
    writeAtExit(text, busy) {
      // A synchronous write to a pipe that is not being read would hang the exit: given up when the output is behind.
      if (busy) return false;
      const bytes = encoder.encode(text);
      try {
        for (let at = 0; at < bytes.length; ) at += out.writeSync(bytes.subarray(at));
        return true;
      } catch {
        return false;
      }
    },
  };
}

export const denoAdapter: RuntimeAdapter = { runtime: 'deno', clocks: processClocks, connector: denoConnector, stdout };
