// The Node.js adapter.

import process from 'node:process';
import { undiciConnector } from '../../network/connector.ts';
import { processClocks } from '../process-clocks.ts';
import type { LogWriter } from '../../telemetry/log-sink.ts';
import type { RuntimeAdapter } from '../runtime-adapter.ts';

/** process.stdout, whose write callback says when the OS took the text (or why not). */
function stdout(): LogWriter {
  const out = process.stdout;
  // A failed write (EPIPE: the reader is gone) is also emitted as 'error', which would end the process unheard.
  out.on('error', () => undefined);
  return {
    write(text, done) {
      try {
        out.write(text, (err) => done(err ?? null));
      } catch (err) {
        done(err as Error);
      }
    },
    writeAtExit(text) {
      // Never blocks: what the pipe does not take at once is lost with the process, as any stdout write at exit.
      try {
        out.write(text);
        return true;
      } catch {
        return false;
      }
    },
  };
}

export const nodeAdapter: RuntimeAdapter = { runtime: 'node', clocks: processClocks, connector: undiciConnector, stdout };
