// TypeScript idioms AssemblyScript refuses: the build says what to write instead, at the author's line (traced back
// from the standard library when the compiler reports it there); the page docs/assemblyscript-for-typescript-authors.md
// is the same table; every replacement compiles.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { buildPolicy, PolicyBuildError } from '../sdk/build/index.ts';
import { IDIOMS, idiomsPage, type Idiom } from '../sdk/build/idioms.ts';

const work = mkdtempSync(join(tmpdir(), 'gatehouse-idioms-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

const IMPORTS =
  'import { base64DecodeText, base64EncodeText, config, counter, formatNumber, httpCall, jsonString, log, parseJson, request, ' +
  'utf8Decode, utf8Encode, CONTINUE, PENDING } from "@gatehouse/policy-sdk";';
/** Lines of the example policy: the declarations on line 3, the idiom on line 5. */
const DECLARATIONS_LINE = 3;
const HANDLER_LINE = 5;

function policy(name: string, text: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'policy.ts'), text);
  writeFileSync(join(dir, 'policy.json'), JSON.stringify({ name }));
  return join(dir, 'policy.ts');
}

function example(idiom: Idiom): string {
  return [IMPORTS, '// the idiom', idiom.declarations ?? '', 'export function on_inbound(): i32 {', `  ${idiom.typescript}`, '  return CONTINUE;', '}', ''].join('\n');
}

async function buildError(source: string): Promise<PolicyBuildError> {
  const err = await buildPolicy({ source, cacheDir: join(work, 'cache') }).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof PolicyBuildError, `expected the build to fail, got ${String(err)}`);
  return err;
}

describe('TypeScript idioms AssemblyScript refuses', () => {
  for (const idiom of IDIOMS) {
    test(`${idiom.id}: the build says what to write instead, at the author's line`, async () => {
      const source = policy(idiom.id, example(idiom));
      const err = await buildError(source);
      const first = err.diagnostics[0]!;
      assert.equal(first.file, source, err.message);
      assert.equal(first.line, idiom.errorAt === 'declarations' ? DECLARATIONS_LINE : HANDLER_LINE, err.message);
      assert.ok(first.message.startsWith(idiom.hint), `expected the hint of ${idiom.id}, got: ${first.message}`);
      assert.match(first.message, /\(AssemblyScript: .* \[(TS|AS)\d+\]\)/);
      // The message the author reads, with the file and line.
      assert.ok(err.message.includes(`policy.ts:${first.line}:${first.column}: ${idiom.hint}`), err.message);
    });
  }

  test('an error the compiler reports inside ~lib is traced back to the author\'s call, the library line kept', async () => {
    const idiom = IDIOMS.find((i) => i.id === 'nullable-value')!;
    const err = await buildError(policy('traced', example(idiom)));
    assert.equal(err.diagnostics.length, 1, err.message);
    const d = err.diagnostics[0]!;
    assert.equal(d.line, HANDLER_LINE);
    assert.equal(d.column, 2 + idiom.typescript.indexOf('set(body)') + 1);
    assert.match(d.message, /\(reported at ~lib\/typedarray\.ts:\d+:\d+, inside the set\(\) called here\)$/);
  });

  test('every replacement compiles', async () => {
    const lines = [IMPORTS];
    for (const idiom of IDIOMS) if (idiom.asDeclarations) lines.push(idiom.asDeclarations);
    IDIOMS.forEach((idiom, i) => lines.push(`export function example_${i}(): i32 {`, `  ${idiom.assemblyscript}`, '  return CONTINUE;', '}'));
    lines.push('export function on_inbound(): i32 {', '  return CONTINUE;', '}', '');
    const result = await buildPolicy({ source: policy('replacements', lines.join('\n')), cacheDir: join(work, 'cache') });
    assert.ok(result.wasm.byteLength > 0);
  });

  test('docs/assemblyscript-for-typescript-authors.md is the table of idioms (node dist/scripts/idioms-page.js writes it)', () => {
    const page = readFileSync(join(repoRoot(), 'docs', 'assemblyscript-for-typescript-authors.md'), 'utf8');
    assert.equal(page, idiomsPage());
    for (const idiom of IDIOMS) assert.ok(page.includes(idiom.hint.slice(1, 40)), idiom.id);
  });
});
