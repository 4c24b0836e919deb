// npm run fuzz:abi: hostile policy modules against the policy host, for a few minutes (test/support/abi-fuzz/).
//
// Prints the seed first, then progress, every broken bound (with the module's source saved to a file and the command
// that reproduces it), and a summary. Then a real gateway process serves a healthy API beside a fuzzed one whose
// operations run modules of the same run, and must keep answering the healthy API quickly (gateway-check.ts).
// Exits 1 when any bound broke, 0 otherwise.
//
//   --seed N          the run's seed (default: random, printed; env FUZZ_ABI_SEED)
//   --minutes M       how long to generate cases (default 3; env FUZZ_ABI_MINUTES)
//   --count N         exactly N cases instead of a duration (from --from, default 0)
//   --only I,J        just these cases (reproduction)
//   --families A,B    only these families (the case numbering depends on it; reproduction commands carry it)
//   --out DIR         where sources and results go (default .cache/abi-fuzz/seed-N)
//   --no-gateway      skip the real-gateway part
//   --gateway-modules N   modules the gateway part runs (default 24, one per kind first)
//
// `--child` is the internal mode the supervisor starts this script in (child.ts).

import { join } from 'node:path';
import process from 'node:process';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { childMain } from '../test/support/abi-fuzz/child.ts';
import { randomSeed } from '../test/support/abi-fuzz/prng.ts';
import { runFuzz, type RunReport } from '../test/support/abi-fuzz/supervisor.ts';
import { summarize } from '../test/support/abi-fuzz/report.ts';
import { gatewayCases, runGatewayCheck } from '../test/support/abi-fuzz/gateway-check.ts';

function flags(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out.set(a.slice(2), 'true');
    else {
      out.set(a.slice(2), next);
      i++;
    }
  }
  return out;
}

function intFlag(f: Map<string, string>, name: string, env: string | null, fallback: number | null): number | null {
  const raw = f.get(name) ?? (env ? process.env[env] : undefined);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: not a number: ${raw}`);
  return n;
}

const list = (v: string | undefined) => (v ? v.split(',').filter(Boolean) : null);

async function main(): Promise<number> {
  const f = flags(process.argv.slice(2));
  if (f.has('child')) {
    await childMain({
      seed: Number(f.get('seed')),
      from: Number(f.get('from') ?? 0),
      to: f.get('to') === 'Infinity' ? Infinity : Number(f.get('to')),
      only: list(f.get('only'))?.map(Number) ?? null,
      families: list(f.get('families')),
      results: f.get('results')!,
      deadline: f.has('deadline') ? Number(f.get('deadline')) : null,
      bounds: f.has('bounds') ? JSON.parse(f.get('bounds')!) : {},
      selftest: f.has('selftest') ? JSON.parse(f.get('selftest')!) : null,
    });
    return 0;
  }
  const seed = (intFlag(f, 'seed', 'FUZZ_ABI_SEED', null) ?? randomSeed()) >>> 0;
  // The seed first, so that even a run that dies can be repeated.
  process.stdout.write(`fuzz:abi seed ${seed}\n`);
  const only = list(f.get('only'))?.map(Number);
  const count = intFlag(f, 'count', null, null);
  const minutes = only || count !== null ? undefined : (intFlag(f, 'minutes', 'FUZZ_ABI_MINUTES', 3) ?? 3);
  const families = list(f.get('families')) ?? undefined;
  const outDir = f.get('out') ?? join(repoRoot(), '.cache', 'abi-fuzz', `seed-${seed}`);
  process.stdout.write(
    `# ${only ? `cases ${only.join(',')}` : count !== null ? `${count} cases` : `${minutes} minutes`}${families ? ` of ${families.join(',')}` : ''}; sources and results in ${outDir}\n`,
  );
  const report: RunReport = await runFuzz({
    seed,
    from: intFlag(f, 'from', null, 0) ?? 0,
    ...(count !== null ? { count } : {}),
    ...(minutes !== undefined ? { minutes } : {}),
    ...(only ? { only } : {}),
    ...(families ? { families } : {}),
    outDir,
    progress: (line) => process.stdout.write(line + '\n'),
  });
  process.stdout.write(summarize(report) + '\n');
  let broken = report.breaks.length;
  if (!f.has('no-gateway') && !only) {
    const gateway = await runGatewayCheck({
      seed,
      cases: gatewayCases(report, intFlag(f, 'gateway-modules', null, 24) ?? 24, families),
      families,
      outDir,
      progress: (line) => process.stdout.write(line + '\n'),
    });
    broken += gateway.breaks.length;
  }
  process.stdout.write(broken === 0 ? `fuzz:abi seed ${seed}: every bound held\n` : `fuzz:abi seed ${seed}: ${broken} broken bounds\n`);
  return broken === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`fuzz:abi failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(2);
  },
);
