// The clocks of the policies' CPU budgets, through node:process, which Node and Deno implement alike.

import process from 'node:process';
import type { BudgetClocks } from '../policy-host/index.ts';

/** Wall-clock milliseconds, and the process's CPU time in microseconds, every thread (V8's too: they work for the calls). */
export const processClocks: BudgetClocks = {
  wallMs: () => performance.now(),
  cpuUs: () => {
    const { user, system } = process.cpuUsage();
    return user + system;
  },
};
