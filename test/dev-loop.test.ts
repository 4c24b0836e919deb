// The author's dev loop: a gateway serving from a file watches the folders of its `source:` policies, rebuilds a policy
// saved with changes and swaps it in without dropping requests; an edit that does not build keeps the module in force
// and logs why, at the author's file and line. A real gateway process, a real build, real requests.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { startGatewayProcess, tempDir, writeConfig, type GatewayProcess } from './support/gateway-process.ts';

const dir = tempDir('gatehouse-dev-loop-');
const agent = new Agent({ keepAliveTimeout: 1000 });
let gateway: GatewayProcess | undefined;
after(async () => {
  await gateway?.stop();
  await agent.close();
  rmSync(dir, { recursive: true, force: true });
});

const greeter = (word: string) =>
  [
    'import { respond } from "@gatehouse/policy-sdk";',
    '',
    'export function on_inbound(): i32 {',
    `  return respond(200, "${word}", "text/plain");`,
    '}',
    '',
  ].join('\n');

async function get(path = '/'): Promise<{ status: number; body: string }> {
  const res = await request(`${gateway!.url}${path}`, { dispatcher: agent });
  return { status: res.statusCode, body: await res.body.text() };
}

/** Compiling takes seconds (more on a busy machine): the bounds below are for the build, not the swap. */
const BUILD_MS = 180_000;

describe('the dev loop', () => {
  test('a saved source: policy is rebuilt and swapped in; a broken save keeps the old module and says why', { timeout: 4 * BUILD_MS }, async () => {
    const folder = join(dir, 'greeter');
    mkdirSync(folder);
    writeFileSync(join(folder, 'policy.json'), JSON.stringify({ name: 'greeter', version: '1.0.0' }));
    writeFileSync(join(folder, 'policy.ts'), greeter('first'));
    const config = writeConfig(
      dir,
      'gateway.yaml',
      ['version: 1', 'apis:', '  - id: hello', '    pathPrefix: /', '    backend: { url: builtin:echo }', '    policies:', '      inbound:', '        - source: ./greeter', ''].join('\n'),
    );
    gateway = await startGatewayProcess({ config, startTimeoutMs: BUILD_MS });
    assert.deepEqual(await get(), { status: 200, body: 'first' });

    // Requests keep flowing while the policy is rebuilt and swapped: every one is answered by the old or the new module.
    let load = true;
    const answers: { status: number; body: string }[] = [];
    const loop = (async () => {
      while (load) answers.push(await get());
    })();
    writeFileSync(join(folder, 'policy.ts'), greeter('second'));
    await gateway.waitForLog((l) => l.msg === 'configuration applied' && l.changed === 'policy source', BUILD_MS);
    const until = Date.now() + 10_000;
    while ((await get()).body !== 'second') {
      assert.ok(Date.now() < until, 'the rebuilt policy answers once the configuration is applied');
      await new Promise((r) => setTimeout(r, 50));
    }
    load = false;
    await loop;
    assert.ok(answers.length > 0);
    assert.deepEqual(
      answers.filter((a) => a.status !== 200 || (a.body !== 'first' && a.body !== 'second')),
      [],
      'no request was dropped or answered by anything but one of the two modules',
    );

    // A save that does not compile: the error names the file and line; the module in force keeps answering.
    writeFileSync(join(folder, 'policy.ts'), greeter('third').replace('return respond', 'return respnd'));
    const rejected = await gateway.waitForLog((l) => l.msg === 'configuration rejected; the running configuration stays in force' && l.changed === 'policy source', BUILD_MS);
    assert.match(JSON.stringify(rejected.problems), /greeter\/policy\.ts:4:\d+.*respnd/);
    assert.deepEqual(rejected.folders, [folder]);
    assert.deepEqual(await get(), { status: 200, body: 'second' });

    // Fixed again: it arrives.
    writeFileSync(join(folder, 'policy.ts'), greeter('fourth'));
    await gateway.waitForLog((l) => l.msg === 'configuration applied' && l.changed === 'policy source' && gateway!.logs.indexOf(l) > gateway!.logs.indexOf(rejected), BUILD_MS);
    assert.deepEqual(await get(), { status: 200, body: 'fourth' });
  });
});
