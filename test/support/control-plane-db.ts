// Reaches into a control plane's database where a test needs what its admin API will not give or do (its token key; a
// stored module or document changed behind its back). Node runs it, also under Deno: SQLite's driver is a native addon.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../runtime/assets/repo-root.ts';

/**
 * Runs `script` (JavaScript with `db`, the database of the control plane whose data folder is `dataDir`, open for
 * writing) and returns what it wrote on standard output.
 */
export function withControlPlaneDb(dataDir: string, script: string): string {
  const run = spawnSync('node', ['-e',
    `const D=require('better-sqlite3');const db=new D(${JSON.stringify(join(dataDir, 'control-plane.db'))});${script};db.close();`,
  ], { cwd: repoRoot(), encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}

/**
 * Saves an API past the control plane's check, as a control plane of another version might have: the document and a
 * revision for it (what the control plane serves is made again when the revision changes).
 */
export function saveApiPastTheCheck(dataDir: string, api: { id: string } & Record<string, unknown>): void {
  withControlPlaneDb(dataDir,
    `db.prepare('UPDATE apis SET document = ? WHERE id = ?').run(${JSON.stringify(JSON.stringify(api))}, ${JSON.stringify(api.id)});` +
    `db.prepare('INSERT INTO revisions (at, change) VALUES (?, ?)').run(new Date().toISOString(), ${JSON.stringify(`api ${api.id} saved past the check`)})`);
}
