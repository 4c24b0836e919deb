// `npm run test:mutation [-- <module>...]`: mutation testing of the modules that hold the gateway's promises.
//
// Each module, a file scripts/mutation/modules/<name>.json, is one Stryker run: Stryker copies the project into a sandbox, writes
// every mutant of the module's files into its TypeScript source (all at once, each behind a switch), builds dist/ there
// once with scripts/build.mjs, then runs the module's test files with `node --test` once per mutant, the mutant chosen
// by the environment variable __STRYKER_ACTIVE_MUTANT__. That variable reaches the gateway and control-plane processes
// the tests start, so a mutant is live in every process the tests exercise, not only in the test process.
//
// `npm run test:mutation -- <module>:<from>-<to>` mutates only lines <from> to <to> of the module's file (a module of
// one file), to see again whether the survivors of one function are killed without running the whole module.
//
// `npm run test:mutation -- --report [<module>...]` runs nothing: it writes the summary again from the modules' JSON
// reports of earlier runs (after a change to a module's equivalents, or when a run was stopped after some modules).
//
// Writes reports/mutation/mutation.json (Stryker's JSON report, the modules of this run merged) and
// reports/mutation/summary.md (a score per module and every surviving mutant), and prints the summary. Mutants listed
// in a module's "equivalent" are counted apart and left out of the score. Exits 1 when a module scores below
// BREAK_BELOW.
//
// A module's file: { "mutate": [source files], "tests": [test files run against each mutant], "equivalent": [{ file,
// line, mutator, original, replacement, reason }] }. One file per module, so that work on one module's tests and
// equivalents never touches another's. An equivalent names its place by the text of its line (trimmed), not by the
// line's number: edits elsewhere in the file keep it matched, and the same change at another place is not hidden.
import { Stryker } from '@stryker-mutator/core';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';

const root = fileURLToPath(new URL('../..', import.meta.url));
const here = (p) => join(root, p);
const readJson = (p) => JSON.parse(readFileSync(here(p), 'utf8'));

const BREAK_BELOW = 80;
const REPORT_DIR = 'reports/mutation';
const MODULE_DIR = 'scripts/mutation/modules';
/** @type {Record<string, { mutate: string[], tests: string[], equivalent: { file: string, mutator: string, original: string, replacement: string, reason: string }[] }>} */
const modules = Object.fromEntries(
  readdirSync(here(MODULE_DIR))
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f.slice(0, -'.json'.length), readJson(`${MODULE_DIR}/${f}`)]),
);

const reportOnly = process.argv.includes('--report');
/** `name` or `name:from-to` -> the module's name and the line range, if any. */
function parseSelection(arg) {
  const match = /^(.+):(\d+)-(\d+)$/.exec(arg);
  return match ? { name: match[1], lines: `${match[2]}-${match[3]}` } : { name: arg, lines: null };
}
const selections = process.argv.slice(2).filter((arg) => arg !== '--report').map(parseSelection);
const requested = selections.map((s) => s.name);
const unknown = requested.filter((name) => !(name in modules));
if (unknown.length > 0) {
  console.error(`unknown module(s): ${unknown.join(', ')}; known: ${Object.keys(modules).join(', ')}`);
  process.exit(2);
}
// A run of some lines (`name:from-to`) has reports of its own, so that it never replaces the module's whole run, which
// `--report` summarises.
const reportName = ({ name, lines }) => (lines ? `${name}@${lines}` : name);
const moduleReport = (selection) => `${REPORT_DIR}/modules/${reportName(selection)}.json`;
const moduleTiming = (selection) => `${REPORT_DIR}/modules/${reportName(selection)}.run.json`;
for (const [name, module] of Object.entries(modules)) {
  for (const [i, e] of (module.equivalent ?? []).entries()) {
    const missing = ['file', 'line', 'mutator', 'original', 'replacement', 'reason'].filter((key) => typeof e[key] !== 'string' || e[key] === '');
    if (missing.length > 0) {
      console.error(`${MODULE_DIR}/${name}.json: equivalent[${i}] lacks ${missing.join(', ')} (each is text: see docs/testing.md)`);
      process.exit(2);
    }
  }
}
const chosen = (selections.length > 0 ? selections : Object.keys(modules).map((name) => ({ name, lines: null }))).filter(
  (selection) => !reportOnly || existsSync(here(moduleReport(selection))),
);

// Other test runs may share the machine: one mutant at a time (the tests start servers and processes of their own).
const concurrency = Number(process.env.MUTATION_CONCURRENCY ?? 1);

function testCommand(tests) {
  const built = tests.map((t) => t.replace(/^test\//, 'dist/test/').replace(/\.ts$/, '.js'));
  return `node --expose-gc --disable-warning=ExperimentalWarning --test --test-concurrency=1 ${built.join(' ')}`;
}

async function runModule(selection) {
  const { name, lines } = selection;
  const { tests } = modules[name];
  if (lines && modules[name].mutate.length !== 1) throw new Error(`${name} mutates several files: a line range needs one`);
  const mutate = lines ? [`${modules[name].mutate[0]}:${lines}`] : modules[name].mutate;
  const jsonFile = moduleReport(selection);
  const started = Date.now();
  // The code measured is the code when the run starts (the sandbox is copied then), whatever is committed meanwhile.
  const measured = commit();
  await new Stryker({
    mutate,
    testRunner: 'command',
    commandRunner: { command: testCommand(tests) },
    // Built once per sandbox, after the mutants were written into the sources: dist/ then holds every mutant.
    buildCommand: 'node scripts/build.mjs',
    // The command runner cannot tell which test covers which mutant: every mutant runs the module's whole test list.
    coverageAnalysis: 'off',
    concurrency,
    // A mutant that makes the tests hang is stopped after (dry-run time x 2 + 60 s) and counted as detected. The margin
    // is wide because a timeout counts as a kill: with 1.5 x + 10 s, a 4.5 s test file that took 16 s on this machine
    // under other work timed out on mutants it never reaches.
    timeoutFactor: 2,
    timeoutMS: 60_000,
    tempDirName: '.stryker-tmp',
    // Not needed in the sandbox: dist/ is rebuilt there; the rest is scratch space of earlier runs.
    ignorePatterns: ['/dist', '/test/.tmp', '/.data', '/.scratch', '/.stryker-tmp'],
    reporters: ['json', 'progress-append-only'],
    jsonReporter: { fileName: jsonFile },
    incremental: false,
    // Only the mutated files matter, and esbuild does not type-check; the preprocessor would also rewrite files it
    // cannot parse (the AssemblyScript sources).
    disableTypeChecks: false,
    thresholds: { high: 90, low: BREAK_BELOW, break: null },
  }).runMutationTest();
  // The summary names a partial run by its lines, so that it is not read as the module's score.
  const run = { name: lines ? `${name}:${lines}` : name, jsonFile, seconds: Math.round((Date.now() - started) / 1000), commit: measured };
  writeFileSync(here(moduleTiming(selection)), JSON.stringify(run));
  return run;
}

function originalText(source, location) {
  const lines = source.split('\n');
  const { start, end } = location;
  if (start.line === end.line) return lines[start.line - 1].slice(start.column - 1, end.column - 1);
  const parts = [lines[start.line - 1].slice(start.column - 1), ...lines.slice(start.line, end.line - 1), lines[end.line - 1].slice(0, end.column - 1)];
  return parts.join('\n');
}

const oneLine = (text) => text.replace(/\s+/g, ' ').trim();
const DETECTED = new Set(['Killed', 'Timeout']);
const UNDETECTED = new Set(['Survived', 'NoCoverage']);

function summarise(run, report, equivalents) {
  const counts = { mutants: 0, detected: 0, survived: 0, equivalent: 0, errors: 0 };
  const survivors = [];
  for (const [file, { source, mutants }] of Object.entries(report.files)) {
    for (const mutant of mutants) {
      counts.mutants++;
      const original = oneLine(originalText(source, mutant.location));
      const replacement = oneLine(mutant.replacement ?? '');
      const line = source.split('\n')[mutant.location.start.line - 1].trim();
      const equivalent = equivalents.find(
        (e) =>
          e.file === file &&
          e.mutator === mutant.mutatorName &&
          oneLine(e.original) === original &&
          oneLine(e.replacement) === replacement &&
          e.line.trim() === line,
      );
      if (DETECTED.has(mutant.status)) counts.detected++;
      else if (UNDETECTED.has(mutant.status) && equivalent) counts.equivalent++;
      else if (UNDETECTED.has(mutant.status)) {
        counts.survived++;
        survivors.push({ file, line: mutant.location.start.line, column: mutant.location.start.column, mutator: mutant.mutatorName, original, replacement, status: mutant.status });
      } else counts.errors++; // CompileError / RuntimeError / Ignored: not a verdict on the tests
    }
  }
  const scored = counts.detected + counts.survived;
  const score = scored === 0 ? null : (100 * counts.detected) / scored;
  return { ...run, ...counts, score, survivors };
}

function commit() {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'runtime', 'test'], { cwd: root, encoding: 'utf8' }).trim();
    return dirty ? `${sha} (runtime/ or test/ changed since)` : sha;
  } catch {
    return 'unknown';
  }
}

const clip = (text, max = 80) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);
const cell = (text) => clip(text).replace(/\|/g, '\\|').replace(/`/g, "'");

function markdown(results, failed) {
  const commits = [...new Set(results.map((r) => r.commit ?? 'unknown'))].join(', ');
  const out = [`# Mutation run`, '', `Measured on commit ${commits}, summarised ${new Date().toISOString()}; score = detected / (detected + survived), each module's equivalents (scripts/mutation/modules/<module>.json) left out; below ${BREAK_BELOW}% fails.`, ''];
  out.push('| module | mutants | detected | survived | equivalent | errors | score | time |', '|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const score = r.score === null ? 'n/a' : `${r.score.toFixed(1)}%`;
    const time = r.seconds === undefined ? '?' : `${r.seconds} s`;
    out.push(`| ${r.name} | ${r.mutants} | ${r.detected} | ${r.survived} | ${r.equivalent} | ${r.errors} | ${score} | ${time} |`);
  }
  for (const name of failed) out.push(`| ${name} | no result: its tests failed without a mutant (see the log) | | | | | | |`);
  for (const r of results.filter((r) => r.survivors.length > 0)) {
    out.push('', `## Survivors: ${r.name}`, '', '| where | mutator | original | replacement |', '|---|---|---|---|');
    for (const s of r.survivors) {
      const where = `${s.file}:${s.line}:${s.column}${s.status === 'NoCoverage' ? ' (no coverage)' : ''}`;
      out.push(`| ${where} | ${s.mutator} | \`${cell(s.original)}\` | \`${cell(s.replacement)}\` |`);
    }
  }
  return out.join('\n') + '\n';
}

if (!reportOnly) {
  // Only this run's modules lose their earlier reports: `--report` later summarises every module measured so far.
  mkdirSync(here(`${REPORT_DIR}/modules`), { recursive: true });
  for (const selection of chosen) for (const file of [moduleReport(selection), moduleTiming(selection)]) rmSync(here(file), { force: true });
}
const results = [];
const failed = [];
for (const selection of chosen) {
  const { name } = selection;
  if (reportOnly) {
    const timing = existsSync(here(moduleTiming(selection))) ? readJson(moduleTiming(selection)) : {};
    const run = { name: reportName(selection).replace('@', ':'), ...timing, jsonFile: moduleReport(selection) };
    results.push(summarise(run, readJson(moduleReport(selection)), modules[name].equivalent ?? []));
    continue;
  }
  try {
    const run = await runModule(selection);
    results.push(summarise(run, readJson(run.jsonFile), modules[name].equivalent ?? []));
  } catch (error) {
    // Most often the dry run: the module's tests fail without any mutant, so no mutant can be judged by them.
    console.error(`${name}: no result (${error instanceof Error ? error.message : error})`);
    failed.push(reportName(selection).replace('@', ':'));
  }
}
if (results.length === 0) {
  if (reportOnly) console.error(`no module report under ${REPORT_DIR}/modules/ for: ${requested.join(', ') || 'any module'}`);
  process.exit(1);
}

const merged = readJson(results[0].jsonFile);
for (const r of results.slice(1)) Object.assign(merged.files, readJson(r.jsonFile).files);
writeFileSync(here(`${REPORT_DIR}/mutation.json`), JSON.stringify(merged));

const summary = markdown(results, failed);
writeFileSync(here(`${REPORT_DIR}/summary.md`), summary);
console.log(`\n${summary}`);
console.log(`written: ${relative(process.cwd(), here(`${REPORT_DIR}/mutation.json`))}, ${relative(process.cwd(), here(`${REPORT_DIR}/summary.md`))}`);
if (failed.length > 0 || results.some((r) => r.score !== null && r.score < BREAK_BELOW)) process.exitCode = 1;
