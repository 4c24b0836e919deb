// The `gatehouse-policy` command: build, scaffold and test Gatehouse policies written in AssemblyScript.

import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// Only what every command needs is imported here; the build (the ABI's checks, and the compiler behind them) and the
// test runner (the policy host, Extism, binaryen) load when a command uses them, so that --help and a cached build
// start in a fraction of the time.
import { displayPath, PolicyBuildError } from '../build/diagnostics.ts';

const HELP = `gatehouse-policy: build, scaffold and test Gatehouse policies (AssemblyScript, ABI v1)

Usage:
  gatehouse-policy new <dir> [--name <name>]           create a policy to start from (policy.ts, policy.json,
                                                       schema.json, policy.test.json, README.md)
  gatehouse-policy build <policy.ts|dir> [-o <out.wasm>] [--source-map]
                                                       compile to a policy module (default output: next to the
                                                       source, <name>.wasm)
  gatehouse-policy test [dir...] [--grep <regex>]     build the policy in each <dir> (default: .) and run the
                                                       cases of its policy.test.json through the policy host
                                                       (--grep: only the cases whose name matches); reports TAP
  gatehouse-policy --help                              this text

Exit status: 0 success, 1 build or test failure, 2 usage error.
Docs: sdk/README.md (API, test file format), docs/tutorial.md, abi/policy-abi.md (the host/module contract).
A gateway serving from a file rebuilds its source: policies when they are saved (docs/configuration.md).
`;

/** Where the command writes; tests can capture it. */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

const consoleIo: CliIo = {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
};

class UsageError extends Error {}

interface Parsed {
  positional: string[];
  flags: Map<string, string | true>;
}

/** Parses `args` against the flags a command takes (`value: true` for flags with a value). */
function parseArgs(args: string[], known: Record<string, { value: boolean; alias?: string }>): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  const byAlias = new Map<string, string>();
  for (const [name, spec] of Object.entries(known)) if (spec.alias) byAlias.set(spec.alias, name);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positional.push(arg);
      continue;
    }
    let name = arg.replace(/^--?/, '');
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    name = byAlias.get(name) ?? name;
    const spec = known[name];
    if (!spec) throw new UsageError(`unknown option ${arg}`);
    if (spec.value) {
      if (value === undefined) {
        value = args[++i];
        if (value === undefined) throw new UsageError(`${arg} needs a value`);
      }
      flags.set(name, value);
    } else {
      if (value !== undefined) throw new UsageError(`${arg} takes no value`);
      flags.set(name, true);
    }
  }
  return { positional, flags };
}

function str(flags: Map<string, string | true>, name: string): string | undefined {
  const v = flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

async function cmdBuild(args: string[], io: CliIo): Promise<number> {
  const { positional, flags } = parseArgs(args, {
    out: { value: true, alias: 'o' },
    'source-map': { value: false },
  });
  if (positional.length !== 1) throw new UsageError('build needs exactly one source: gatehouse-policy build <policy.ts|dir> [-o out.wasm]');
  let source = path.resolve(positional[0]!);
  if (existsSync(source) && statSync(source).isDirectory()) source = path.join(source, 'policy.ts');
  const started = performance.now();
  // build.ts, not the build's index: a cached build needs none of the rest (the ABI's checks, the compiler).
  const { buildPolicy } = await import('../build/build.ts');
  // The default output is named after the policy, next to its source.
  const out = str(flags, 'out');
  const result = await buildPolicy({
    source,
    ...(out !== undefined ? { outFile: path.resolve(out) } : { outDir: path.dirname(source) }),
    sourceMap: flags.has('source-map'),
  });
  const outFile = result.outFile!;
  for (const w of result.warnings) io.err(`warning: ${displayPath(w.file)}${w.line ? `:${w.line}:${w.column}` : ''}: ${w.message}`);
  const ms = Math.round(performance.now() - started);
  io.out(
    `built ${displayPath(outFile)}${result.sourceMap !== null ? ` (+ ${displayPath(outFile)}.map)` : ''}: ${result.descriptor.name}@${result.descriptor.version}, ` +
      `${result.wasm.byteLength} bytes, sha256 ${result.sha256} (${result.cached ? 'cached, ' : ''}${ms} ms)`,
  );
  return 0;
}

async function cmdNew(args: string[], io: CliIo): Promise<number> {
  const { positional, flags } = parseArgs(args, { name: { value: true } });
  if (positional.length !== 1) throw new UsageError('new needs a folder: gatehouse-policy new <dir> [--name name]');
  const dir = positional[0]!;
  const name = str(flags, 'name');
  const { scaffoldPolicy } = await import('./scaffold.ts');
  const created = await scaffoldPolicy(dir, name === undefined ? {} : { name });
  for (const file of created) io.out(`created ${displayPath(file)}`);
  const shown = displayPath(path.resolve(dir));
  io.out('');
  io.out(`next: edit ${shown}/policy.ts, then run: npx gatehouse-policy test ${shown}`);
  return 0;
}

async function cmdTest(args: string[], io: CliIo): Promise<number> {
  const { positional, flags } = parseArgs(args, { grep: { value: true, alias: 'g' } });
  const dirs = (positional.length > 0 ? positional : ['.']).map((d) => path.resolve(d));
  const pattern = str(flags, 'grep');
  let grep: RegExp | undefined;
  if (pattern !== undefined) {
    try {
      grep = new RegExp(pattern);
    } catch (err) {
      throw new UsageError(`--grep ${JSON.stringify(pattern)} is not a regular expression: ${(err as Error).message}`);
    }
  }
  // Loaded on demand: the runner brings the whole policy host (and Extism) with it.
  const { runPolicyTests } = await import('./policy-test.ts');
  const started = performance.now();
  // Reported as node --test reports (TAP): a line a case, then a summary a CI reads.
  io.out('TAP version 13');
  let n = 0;
  let failed = 0;
  let skipped = 0;
  const problemBlock = (problems: string[]) => {
    io.out('  ---');
    io.out('  problems:');
    for (const p of problems) io.out(`    - ${JSON.stringify(p)}`);
    io.out('  ...');
  };
  for (const dir of dirs) {
    const casesFile = path.join(dir, 'policy.test.json');
    if (!existsSync(casesFile)) {
      n++;
      failed++;
      io.out(`not ok ${n} - ${displayPath(dir)}`);
      problemBlock([`${displayPath(casesFile)} not found (create it, or run gatehouse-policy new <dir> for an example)`]);
      continue;
    }
    io.out(`# ${displayPath(casesFile)}`);
    try {
      const run = await runPolicyTests(dir, grep ? { grep } : {});
      skipped += run.skipped;
      for (const r of run.results) {
        n++;
        const title = `${run.policy}: ${r.name}`.replace(/#/g, '\\#');
        if (r.ok) io.out(`ok ${n} - ${title} # ${Math.round(r.ms)} ms`);
        else {
          failed++;
          io.out(`not ok ${n} - ${title}`);
          problemBlock(r.problems);
        }
      }
    } catch (err) {
      n++;
      failed++;
      io.out(`not ok ${n} - ${displayPath(dir)}`);
      problemBlock(err instanceof PolicyBuildError ? [`build failed: ${err.message}`] : [(err as Error).message]);
    }
  }
  io.out(`1..${n}`);
  io.out(`# tests ${n}`);
  io.out(`# pass ${n - failed}`);
  io.out(`# fail ${failed}`);
  if (grep) io.out(`# skipped ${skipped} (not matching --grep ${pattern})`);
  io.out(`# duration_ms ${Math.round(performance.now() - started)}`);
  if (n === 0) {
    io.err(`gatehouse-policy: no case matches --grep ${pattern}`);
    return 1;
  }
  return failed > 0 ? 1 : 0;
}

/** Runs the command with `argv` (without the node and script paths); returns the exit status. */
export async function runCli(argv: string[], io: CliIo = consoleIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      if (command === undefined) {
        io.err(HELP);
        return 2;
      }
      io.out(HELP);
      return 0;
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      io.out(HELP);
      return 0;
    }
    switch (command) {
      case 'build':
        return await cmdBuild(rest, io);
      case 'new':
        return await cmdNew(rest, io);
      case 'test':
        return await cmdTest(rest, io);
      default:
        throw new UsageError(`unknown command "${command}" (commands: new, build, test)`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`gatehouse-policy: ${err.message} (see gatehouse-policy --help)`);
      return 2;
    }
    if (err instanceof PolicyBuildError) {
      const [first, ...lines] = err.message.split('\n');
      io.err(`gatehouse-policy: build failed: ${first}`);
      for (const line of lines) io.err(`  ${line}`);
      return 1;
    }
    io.err(`gatehouse-policy: ${(err as Error).message}`);
    return 1;
  }
}

function isMain(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return path.resolve(script) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isMain()) {
  process.exitCode = await runCli(process.argv.slice(2));
}
