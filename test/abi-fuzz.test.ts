// The ABI fuzzer in the suite: a short seeded run of hostile modules (test/support/abi-fuzz/) against the real policy
// host, in a supervised child process, then a real gateway serving a healthy API beside some of them. The bounds are
// the sandbox's promises (abi/policy-abi.md, section 6; the margins are in bounds.ts): these tests pass only when the
// host keeps every one. The first two groups check the fuzzer itself: that its runs are reproducible and cover the
// ABI, and that a broken bound, a dead process and a hang are each reported with what reproduces them.
//
// The child runs with gc exposed whatever flags this runner has (supervisor.ts starts it so), under the same
// runtime: Node runs dist/scripts/fuzz-abi.js (built by `node scripts/build.mjs`), Deno runs scripts/fuzz-abi.ts.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { cToolchainProblem } from './support/abi-fuzz/c-templates.ts';
import { C_FAMILY_NAMES, everyFunction, generateCase, KNOWN_FINDINGS, WAT_FAMILY_NAMES } from './support/abi-fuzz/generate.ts';
import { gatewayCases, runGatewayCheck } from './support/abi-fuzz/gateway-check.ts';
import { summarize } from './support/abi-fuzz/report.ts';
import { runFuzz, type RunReport } from './support/abi-fuzz/supervisor.ts';
import { wat } from './support/policies.ts';

/** The suite's fixed seed: the same modules on every run, so a failure here is reproduced by the printed command. */
const SEED = 20_250_611;
/** The sweep (one case per kernel function, per host function, per family, per known finding) and a few more. */
const WAT_CASES = 64;
/** Modules the real gateway runs. */
const GATEWAY_MODULES = 8;

const runtime = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined' ? 'deno' : 'node';
const outRoot = join(repoRoot(), 'test', '.tmp', `abi-fuzz-${runtime}`);

function assertHeld(report: RunReport): void {
  assert.ok(report.verdicts.length > 0, 'the run ran no case');
  assert.equal(report.breaks.length, 0, `broken bounds on seed ${report.seed}:\n${summarize(report)}`);
}

describe('ABI fuzzer: the generator', () => {
  test('the same seed and case give the same module, byte for byte; other seeds give others', () => {
    for (const i of [0, 30, 45, 70]) {
      assert.deepEqual(generateCase(SEED, i), generateCase(SEED, i));
      assert.notEqual(generateCase(SEED, i).source, generateCase(SEED + 1, i).source);
    }
  });

  test(`the first ${WAT_CASES} cases call every kernel and host function, cover every WAT family and every known finding`, () => {
    const cases = Array.from({ length: WAT_CASES }, (_, i) => generateCase(SEED, i, { families: ['wat'] }));
    const used = new Set(cases.flatMap((c) => c.uses));
    assert.deepEqual(everyFunction().filter((f) => !used.has(f)), [], 'functions no case calls');
    assert.deepEqual(WAT_FAMILY_NAMES.filter((f) => !cases.some((c) => c.family === f)), [], 'families no case uses');
    const missing = KNOWN_FINDINGS.filter(([f, v]) => !cases.some((c) => c.family === f && c.variant === v));
    assert.deepEqual(missing, [], 'known findings no case re-checks');
  });

  test('every generated WAT module is valid WebAssembly of the proposals the host accepts, and small', async () => {
    for (let i = 0; i < WAT_CASES; i++) {
      const c = generateCase(SEED, i, { families: ['wat'] });
      const bytes = await wat(c.source, 'host');
      assert.ok(WebAssembly.validate(new Uint8Array(bytes)), `case ${i} (${c.family}) is not valid`);
      assert.ok(bytes.byteLength < 64 * 1024, `case ${i} (${c.family}) is ${bytes.byteLength} bytes`);
    }
  });
});

describe('ABI fuzzer: what breaks is reported', () => {
  // One supervised run shows all three (each new process costs seconds): a bound set so that every case breaks it,
  // a process killed at one case, a process hung at the next.
  test('a broken bound, a dead process and a hang are each reported with the case, its source and the command that reproduces it', async () => {
    const outDir = join(outRoot, 'selftest');
    rmSync(outDir, { recursive: true, force: true });
    const families = ['wat'];
    const report = await runFuzz({
      seed: SEED,
      from: 8,
      count: 4,
      families,
      outDir,
      // A CPU margin far below zero: every round of every case breaks it (and again when rerun).
      bounds: { cpuMarginMs: -10_000, hangMs: 5000 },
      selftest: { crashAt: 9, hangAt: 10 },
    });
    const text = summarize(report);
    const cpu = report.breaks.find((b) => b.check === 'cpu' && b.index === 8);
    assert.ok(cpu, `no cpu break reported for case 8:\n${text}`);
    assert.match(cpu.detail, /a round used \d+ ms of CPU/);
    assert.equal(readFileSync(cpu.sourceFile, 'utf8'), generateCase(SEED, 8, { families }).source);
    assert.match(cpu.reproduce, new RegExp(`--seed ${SEED} --only 8 --families wat$`));
    assert.match(text, /cpu \/ kernel-call\/input_offset \(wat\): \d+, first case 8/);
    const died = report.breaks.find((b) => b.check === 'process');
    const hung = report.breaks.find((b) => b.check === 'hang');
    assert.ok(died && hung, text);
    assert.equal(died.index, 9);
    assert.match(died.detail, /the process running it died \(exit code null, signal SIGKILL\)/);
    assert.equal(hung.index, 10);
    assert.match(hung.detail, /reported nothing for 5000 ms/);
    assert.ok(existsSync(hung.sourceFile));
    assert.ok(report.breaks.some((b) => b.check === 'cpu' && b.index === 11), 'the run went on after the hang');
    assert.deepEqual(report.verdicts.map((v) => v.index), [8, 9, 10, 11]);
    assert.equal(report.processes, 3);
  });
});

describe(`ABI fuzzer: hostile modules against the policy host (seed ${SEED})`, () => {
  let watReport: RunReport | null = null;

  test(`${WAT_CASES} WAT modules: every call ends in success or a PolicyFailure within every bound`, async () => {
    const outDir = join(outRoot, `seed-${SEED}-wat`);
    rmSync(outDir, { recursive: true, force: true });
    watReport = await runFuzz({ seed: SEED, count: WAT_CASES, families: ['wat'], outDir });
    assertHeld(watReport);
  });

  test('C modules compiled with clang-14: every bound holds', { skip: cToolchainProblem() ?? false }, async () => {
    const outDir = join(outRoot, `seed-${SEED}-c`);
    rmSync(outDir, { recursive: true, force: true });
    // The sweep: one case per C family.
    const report = await runFuzz({ seed: SEED, count: C_FAMILY_NAMES.length, families: ['c'], outDir });
    assert.equal(report.cSkipped, null);
    assertHeld(report);
  });

  test(`a real gateway keeps answering a healthy API quickly while ${GATEWAY_MODULES} fuzzed modules run`, async () => {
    const outDir = join(outRoot, `seed-${SEED}-gateway`);
    rmSync(outDir, { recursive: true, force: true });
    const families = ['wat'];
    // The modules come from the WAT run when it ran (one per family, the ones that broke something first); run alone,
    // this test takes the family sweep and the known findings (the cases after the kernel and host sweeps).
    const sweep = everyFunction().length;
    const report = watReport ?? (await runFuzz({ seed: SEED, from: sweep, count: WAT_FAMILY_NAMES.length + KNOWN_FINDINGS.length, families, outDir }));
    const cases = gatewayCases(report, GATEWAY_MODULES, families);
    assert.ok(cases.length > 0, 'no module loaded');
    const result = await runGatewayCheck({ seed: SEED, cases, families, outDir });
    assert.equal(
      result.breaks.length,
      0,
      `broken bounds in the gateway:\n${result.breaks.map((b) => `  case ${b.index} (${b.family}/${b.variant}): ${b.check}: ${b.detail}\n    ${b.caseDetail}`).join('\n')}`,
    );
  });
});
