// The JSON log lines a child process (a gateway, a control plane) writes on its standard output, as tests read them.

import type { ChildProcess } from 'node:child_process';

/**
 * How long a gateway or control-plane process may take to say it listens before its start is called failed. A hang
 * guard, not a measure: the start is an event waited on, and a start that fails exits at once with its reason. Alone
 * a gateway starts in about a second; beside the whole suite and other work on two cores, gateways loading policies
 * took over 60 s.
 */
export const PROCESS_START_TIMEOUT_MS = 180_000;

export type LogLine = Record<string, unknown>;

export interface ProcessLogs {
  /** Every JSON line so far; other lines are skipped. */
  logs: LogLine[];
  /** Resolves with the first line matching (already seen or to come), or rejects after `timeoutMs`. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** What the process wrote on its standard error so far. */
  stderr(): string;
}

/** Starts reading `child`'s standard output and error; `what` names the process in timeout messages. */
export function readProcessLogs(child: ChildProcess, what: string): ProcessLogs {
  const logs: LogLine[] = [];
  const waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let buffered = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let parsed: LogLine;
      try {
        parsed = JSON.parse(line) as LogLine;
      } catch {
        continue;
      }
      logs.push(parsed);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.match(parsed)) waiters.splice(i, 1)[0]!.resolve(parsed);
      }
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const waitForLog = (match: (l: LogLine) => boolean, timeoutMs = 10_000) => {
    const seen = logs.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching ${what} log line within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
      // A wait nobody needs any more (the process exited before the line came) must not hold the test process open.
      timer.unref?.();
      waiters.push({
        match,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  };
  return { logs, waitForLog, stderr: () => stderr };
}
