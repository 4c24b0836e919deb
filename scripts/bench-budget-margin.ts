// How far past its CPU budget a call runs before the host stops it, for a module looping over each function it can
// import and over its own code (test/support/hostile-modules.ts, IMPORT_LOOPS): the margin abi/policy-abi.md
// promises. Each loop never ends by itself; the call ends for its budget or for a cap the loop runs into.
//
//   npm run bench:budget-margin [-- --calls 10 --budget 50]
//
// Prints, per loop, the median and worst wall-clock and CPU time of a call, and the worst overrun past the budget
// (the smaller of the two: wall time includes pauses of the process, CPU time includes other threads, and the host
// stops a call on whichever shows the budget spent), then `budget-margin-worst-ms`.

import process from 'node:process';
import { PolicyFailure } from '../runtime/policy-host/index.ts';
import { hostileModule, IMPORT_LOOPS } from '../test/support/hostile-modules.ts';
import { newHost } from '../test/support/policies.ts';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i === -1 ? fallback : Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

const calls = flag('calls', 10);
const budget = flag('budget', 50);
const { host } = newHost();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log(`node ${process.version}; ${calls} calls a loop, CPU budget ${budget} ms`);
console.log(['loop'.padEnd(44), 'ended by'.padEnd(12), 'wall med', 'wall max', 'cpu med', 'cpu max', 'overrun max'].join('  '));
let worst = 0;
for (const loop of IMPORT_LOOPS) {
  const module = await host.load(await hostileModule(loop.module));
  const binding = host.bind({
    id: `margin/${loop.module.name}`,
    phase: 'inbound',
    module,
    grants: loop.grants,
    limits: { cpuMs: budget },
    circuitBreaker: { failures: 0 },
  });
  const walls: number[] = [];
  const cpus: number[] = [];
  const reasons = new Set<string>();
  let overrun = -Infinity;
  for (let i = 0; i < calls; i++) {
    await binding.warm();
    const exchange = loop.exchange();
    const started = performance.now();
    const cpuBefore = process.cpuUsage();
    const err = await binding.run('inbound', exchange).then(
      () => null,
      (e: unknown) => e,
    );
    const cpu = process.cpuUsage(cpuBefore);
    const wall = performance.now() - started;
    const cpuMs = (cpu.user + cpu.system) / 1000;
    reasons.add(err instanceof PolicyFailure ? err.reason : 'success');
    walls.push(wall);
    cpus.push(cpuMs);
    overrun = Math.max(overrun, Math.min(wall, cpuMs) - budget);
    // Requests arrive as separate tasks.
    await new Promise((r) => setTimeout(r, 5));
  }
  worst = Math.max(worst, overrun);
  console.log(
    [
      loop.name.padEnd(44),
      [...reasons].join(',').padEnd(12),
      median(walls).toFixed(1).padStart(8),
      Math.max(...walls).toFixed(1).padStart(8),
      median(cpus).toFixed(1).padStart(7),
      Math.max(...cpus).toFixed(1).padStart(7),
      overrun.toFixed(1).padStart(11),
    ].join('  '),
  );
}
console.log(`budget-margin-worst-ms ${worst.toFixed(1)} (worst overrun past a ${budget} ms budget over ${IMPORT_LOOPS.length} loops)`);
