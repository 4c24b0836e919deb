// Stopping with the wrapper that started the process. `npm start` and `npm run control-plane` exec the server in place
// of npm's shell, so the signal npm forwards reaches it. `npx deno task start` cannot: npx runs `sh -c 'deno task
// start'`, forwards SIGTERM and SIGINT to that shell only, and the shell dies without passing them on, leaving the task
// runner (which does forward signals to its task) and the gateway serving on. What the gateway can see is that a
// process between it and npm is gone: it watches them and stops as on SIGTERM when one goes.
//
// Linux only (it reads /proc); elsewhere, and when no npm process is among the first ancestors, it watches nothing.
// Cost: one signal-0 call per watched process per second, under 10 us in all.

import { readFileSync } from 'node:fs';
import process from 'node:process';

/** How far up the process tree npm is looked for: npm, sh, deno task, the gateway make three levels. */
const MAX_DEPTH = 6;
const POLL_MS = 1000;

function parentOf(pid: number): number | null {
  try {
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so the fields are read after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) && ppid > 0 ? ppid : null;
  } catch {
    return null;
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/**
 * The processes between this one and the npm process that started it (npm sets its process title to `npm <command>`),
 * nearest first; empty when the parent is npm itself (nothing to watch) or when no npm is found.
 */
export function processesBelowNpm(): number[] {
  if (!process.env.npm_lifecycle_event) return [];
  const between: number[] = [];
  for (let pid = process.ppid, depth = 0; depth < MAX_DEPTH; depth++) {
    if (/^npm\b/.test(commandOf(pid))) return between;
    between.push(pid);
    const parent = parentOf(pid);
    if (parent === null || parent === 1) return [];
    pid = parent;
  }
  return [];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but is not ours to signal.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Calls `onGone` once when a process between this one and npm exits; returns what stops watching. */
export function stopWithWrapper(onGone: (pid: number) => void): () => void {
  const watched = processesBelowNpm();
  if (watched.length === 0) return () => undefined;
  const timer = setInterval(() => {
    const gone = watched.find((pid) => !alive(pid));
    if (gone === undefined) return;
    clearInterval(timer);
    onGone(gone);
  }, POLL_MS);
  // Never what keeps the process alive.
  (timer as { unref?: () => void }).unref?.();
  return () => clearInterval(timer);
}
