// Tokens signed as a control plane signs them, with its own token key: read from its database, to make tokens its admin
// API would not (expired, too long-lived, or of the earlier format).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { repoRoot } from '../../runtime/platform/paths.ts';

/** The token key of the control plane whose data folder is `dataDir` (read by Node: SQLite's driver is Node's). */
export function tokenKeyOf(dataDir: string): Buffer {
  const read = spawnSync('node', ['-e',
    `const D=require('better-sqlite3');const db=new D(${JSON.stringify(join(dataDir, 'control-plane.db'))},{readonly:true});` +
    `process.stdout.write(db.prepare("SELECT value FROM secrets WHERE name='gateway-token-key'").get().value.toString('hex'));`,
  ], { cwd: repoRoot(), encoding: 'utf8' });
  assert.equal(read.status, 0, read.stderr);
  return Buffer.from(read.stdout, 'hex');
}

/**
 * A token of the earlier format, `gw1.<gateway>.<generation>.<expiry>.<signature>` (no id), signed as control planes
 * issued them before tokens had ids: what a gateway running at the upgrade holds.
 */
export function earlierFormatToken(key: Buffer, gateway: string, generation: number, expires: number): string {
  const body = `gw1.${gateway}.${generation}.${expires}`;
  return `${body}.${createHmac('sha256', key).update(body).digest('base64url')}`;
}
