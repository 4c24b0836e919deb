// scripts/check-imports.mjs, run on small trees made here: it must fail on each wall broken and on a circle, naming
// the files, and pass a tree that keeps them. (`npm test` and `deno task test` run it on the repository first.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { isDeno } from '../runtime/adapters/index.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'gatehouse-imports-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

function check(files: Record<string, string>): { status: number | null; output: string } {
  const root = tree(files);
  try {
    const run = spawnSync(isDeno ? 'node' : process.execPath, [join(repoRoot(), 'scripts', 'check-imports.mjs'), '--root', root], { encoding: 'utf8' });
    return { status: run.status, output: run.stdout + run.stderr };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const keepsTheWalls = {
  'runtime/proxy/forward.ts': "import type { ConnectorFactory } from '../network/connector.ts';\n",
  'runtime/network/connector.ts': 'export type ConnectorFactory = () => void;\n',
  'runtime/adapters/node/index.ts': "import type { ConnectorFactory } from '../../network/connector.ts';\n",
  'runtime/composition-root/gateway.ts': "import { nodeAdapter } from '../adapters/node/index.ts';\nimport '../proxy/forward.ts';\n",
  'runtime/config/repository-policies.ts': "import { buildPolicy } from '../../sdk/build/index.ts';\n",
  'sdk/build/index.ts': "import { ABI } from '../../abi/index.ts';\n",
  'sdk/cli/policy-test.ts': "import { PolicyHost } from '../../runtime/policy-host/index.ts';\n",
  'runtime/policy-host/index.ts': 'export {};\n',
  'abi/index.ts': 'export const ABI = 1;\n',
  'policies/cors/policy.ts': 'import { request } from "@gatehouse/policy-sdk";\nimport { rule } from "./rules.ts";\n',
  'policies/cors/rules.ts': 'export const rule = 1;\n',
  // Generated code inside a template string is not an import of the file that writes it.
  'sdk/cli/scaffold.ts': 'export const text = `import { x } from "../../runtime/proxy/forward.ts";`;\n',
};

test('a tree that keeps the walls passes', () => {
  const { status, output } = check(keepsTheWalls);
  assert.equal(status, 0, output);
  assert.match(output, /no circle of files or rooms, every wall holds/);
});

test('a circle is named with every import that ties it', () => {
  const { status, output } = check({
    ...keepsTheWalls,
    'runtime/config/load.ts': "import type { DocPath } from './paths.ts';\n",
    'runtime/config/paths.ts': "import { load } from './load.ts';\nexport type DocPath = string[];\n",
  });
  assert.equal(status, 1);
  assert.match(output, /a circle of 2 files:\n {4}runtime\/config\/load\.ts -> runtime\/config\/paths\.ts\n {4}runtime\/config\/paths\.ts -> runtime\/config\/load\.ts/);
});

test('a circle of rooms (folders) is named with one import for each tie, though no file imports another in a circle', () => {
  const { status, output } = check({
    ...keepsTheWalls,
    'runtime/telemetry/aggregates.ts': "import type { Row } from '../gateway-api/endpoints.ts';\n",
    'runtime/gateway-api/endpoints.ts': "export type Row = {};\n",
    'runtime/gateway-api/tokens.ts': "import { log } from '../telemetry/logger.ts';\n",
    'runtime/telemetry/logger.ts': 'export const log = 1;\n',
  });
  assert.equal(status, 1);
  assert.match(
    output,
    /a circle of 2 rooms:\n {4}runtime\/gateway-api\/ -> runtime\/telemetry\/ \(runtime\/gateway-api\/tokens\.ts -> runtime\/telemetry\/logger\.ts\)\n {4}runtime\/telemetry\/ -> runtime\/gateway-api\/ \(runtime\/telemetry\/aggregates\.ts -> runtime\/gateway-api\/endpoints\.ts\)/,
  );
  assert.doesNotMatch(output, /a circle of \d+ files/);
});

test('each wall broken is named with its file and import', () => {
  const { status, output } = check({
    ...keepsTheWalls,
    'runtime/proxy/backends.ts': "import { denoConnector } from '../adapters/deno/index.ts';\n",
    'runtime/adapters/deno/index.ts': "import { Gateway } from '../../gateway/gateway.ts';\n",
    'runtime/gateway/gateway.ts': 'export class Gateway {}\n',
    'runtime/operator-cli/gatehouse.ts': "import { runCli } from '../../sdk/cli/gatehouse-policy.ts';\n",
    'sdk/cli/gatehouse-policy.ts': "export const runCli = 1;\n",
    'sdk/build/compile.ts': "import { repoRoot } from '../../runtime/assets/repo-root.ts';\n",
    'runtime/assets/repo-root.ts': 'export const repoRoot = 1;\n',
    'abi/reader.ts': "import { x } from '../runtime/policy-host/index.ts';\n",
    'policies/cors/policy.ts': "import { request } from '@gatehouse/policy-sdk';\nimport { Logger } from '../../runtime/telemetry/logger.ts';\nimport yaml from 'yaml';\n",
    'runtime/telemetry/logger.ts': 'export class Logger {}\n',
  });
  assert.equal(status, 1);
  const expected = [
    /runtime\/proxy\/backends\.ts: imports "..\/adapters\/deno\/index\.ts" .*only the composition roots/,
    /runtime\/adapters\/deno\/index\.ts: imports "..\/..\/gateway\/gateway\.ts" .*an adapter imports only the contract types/,
    /runtime\/operator-cli\/gatehouse\.ts: imports .*sdk\/cli\/gatehouse-policy\.ts.*only through its build library/,
    /sdk\/build\/compile\.ts: imports .*runtime\/assets\/repo-root\.ts.*policy host's public surface/,
    /abi\/reader\.ts: imports .*depends on neither the runtime nor the SDK/,
    /policies\/cors\/policy\.ts: imports "..\/..\/runtime\/telemetry\/logger\.ts" .*a policy imports only the SDK and its own folder/,
    /policies\/cors\/policy\.ts: imports "yaml": a policy imports only the SDK/,
  ];
  for (const pattern of expected) assert.match(output, pattern);
  assert.match(output, /check-imports: 7 problem\(s\)/);
});
