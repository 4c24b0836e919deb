// Polling for a condition that something else (a process, a timer, a server) makes true, with a bound.

import assert from 'node:assert/strict';

/** Resolves once `condition()` holds; fails the test naming `what` after `ms` milliseconds. */
export async function waitFor(what: string, condition: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** waitFor for a condition that has to ask something (a process, over HTTP). */
export async function waitForAsync(what: string, condition: () => Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
