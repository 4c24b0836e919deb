// Whether a process still runs, for tests that kill processes and check what is left.

import { readFileSync } from 'node:fs';

/**
 * True while `pid` runs. A killed process whose parent has not collected it yet is a zombie: signal 0 still reaches
 * it, but it runs nothing, holds no port and no pipe, so it counts as gone (its state in /proc is `Z`).
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    // No /proc (not Linux), or the process ended between the signal and the read.
    return true;
  }
}
