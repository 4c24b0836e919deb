// Each built-in policy's own cases (policies/<name>/policy.test.json), run through the SDK's offline runner.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { runPolicyTests } from '../sdk/cli/policy-test.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';

const folder = join(repoRoot(), 'policies');

describe('built-in policies', () => {
  const policies = readdirSync(folder, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  for (const name of policies.sort()) {
    test(name, async () => {
      const run = await runPolicyTests(join(folder, name));
      const failures = run.results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.problems.join('; ')}`);
      assert.deepEqual(failures, []);
      assert.ok(run.passed >= 3, `${name} has only ${run.passed} cases`);
    });
  }
});
