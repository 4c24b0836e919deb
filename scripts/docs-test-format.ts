// npm run docs:test-format — writes the table of policy.test.json's format, generated from the runner's own
// description of it (sdk/cli/test-case-format.ts), into sdk/README.md and docs/testing.md between their markers.
// test/policy-test-runner.test.ts fails when a page's table and the format differ.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { caseFormatMarkdown, FORMAT_TABLE_END, FORMAT_TABLE_START } from '../sdk/cli/test-case-format.ts';

for (const page of ['sdk/README.md', 'docs/testing.md']) {
  const file = join(repoRoot(), page);
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf(FORMAT_TABLE_START);
  const end = text.indexOf(FORMAT_TABLE_END);
  if (start < 0 || end < start) {
    process.stderr.write(`${page}: no markers (add the lines ${FORMAT_TABLE_START} and ${FORMAT_TABLE_END} where the table goes)\n`);
    process.exitCode = 1;
    continue;
  }
  const updated = text.slice(0, start) + caseFormatMarkdown() + text.slice(end + FORMAT_TABLE_END.length);
  if (updated !== text) writeFileSync(file, updated);
  process.stdout.write(`${page}: ${updated === text ? 'up to date' : 'table rewritten'}\n`);
}
