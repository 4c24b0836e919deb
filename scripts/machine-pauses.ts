// npm run bench:pauses — whether this machine stops running now and then, idle and with its cores busy.
//
// A virtual machine can be paused by its host (a CPU quota used up, an oversubscribed host) without its kernel seeing
// it: when the host reports no steal time, the pause is counted as CPU time of whichever thread was running. A policy
// call past half its CPU budget is then charged for the pause and stopped (runtime/policy-host/call-budget.ts), and a
// test or benchmark round that met one is off by the pause. This measures them: a sleeper process wakes every
// millisecond and records each wake-up that came PAUSE_MS or more late, first with the machine idle, then with one
// and with every core kept busy by spinning processes. Run as root it sleeps under SCHED_FIFO (`chrt -f 99`), so
// that being queued behind the spinning processes is not what it sees; otherwise it says so, and a late wake-up may
// also be the kernel's scheduler.
//
// PAUSES_SECONDS (45) is how long each of the three states is watched.
//
// Prints, for each state: the late wake-ups, the longest, the time lost to them, and on stdout
//   pauses-idle, pauses-one-core-busy, pauses-all-cores-busy (counts), pause-longest-ms, paused-share-all-cores-busy.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';

const SECONDS = Number(process.env.PAUSES_SECONDS ?? 45);
if (!Number.isFinite(SECONDS) || SECONDS <= 0) throw new Error(`PAUSES_SECONDS must be a positive number of seconds, not ${process.env.PAUSES_SECONDS}`);
/** A wake-up this late is a pause: far past a timer's slack, and past a busy scheduler's wait for a SCHED_FIFO task. */
const PAUSE_MS = 15;

const SLEEPER = `
const end = performance.now() + ${SECONDS * 1000};
const lates = [];
const tick = () => {
  const before = performance.now();
  setTimeout(() => {
    const late = performance.now() - before;
    if (late >= ${PAUSE_MS}) lates.push(Math.round(late * 10) / 10);
    if (performance.now() < end) tick();
    else process.stdout.write(JSON.stringify(lates));
  }, 1);
};
tick();
`;

const SPINNER = 'for (;;) {}';

/** Whether `chrt -f 99` may run a command here (root, and chrt installed). */
function realtimeAllowed(): boolean {
  const probe = spawnSync('chrt', ['-f', '99', 'true']);
  return probe.status === 0;
}

async function watch(busyCores: number, realtime: boolean): Promise<number[]> {
  const spinners: ChildProcess[] = Array.from({ length: busyCores }, () => spawn(process.execPath, ['-e', SPINNER], { stdio: 'ignore' }));
  try {
    const args = ['-e', SLEEPER];
    const sleeper = realtime ? spawn('chrt', ['-f', '99', process.execPath, ...args]) : spawn(process.execPath, args);
    let out = '';
    sleeper.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => sleeper.once('close', resolve));
    if (code !== 0) throw new Error(`the sleeper exited with ${code}`);
    return JSON.parse(out) as number[];
  } finally {
    for (const s of spinners) s.kill('SIGKILL');
  }
}

const cores = availableParallelism();
const realtime = realtimeAllowed();
process.stderr.write(
  `# ${SECONDS} s each state, ${cores} cores; the sleeper ${realtime ? 'under SCHED_FIFO (chrt -f 99)' : 'at normal priority (not root, or no chrt): a late wake-up may be the scheduler'}\n`,
);
const states: [string, number][] = [
  ['idle', 0],
  ['one-core-busy', 1],
  ['all-cores-busy', cores],
];
const lines: string[] = [];
let longest = 0;
let lostAllBusy = 0;
for (const [name, busy] of states) {
  const lates = await watch(busy, realtime);
  const lost = lates.reduce((a, b) => a + b, 0);
  longest = Math.max(longest, ...lates);
  if (busy === cores) lostAllBusy = lost;
  process.stderr.write(
    `#   ${name.padEnd(15)} ${String(lates.length).padStart(4)} late wake-ups of ${PAUSE_MS} ms or more` +
      (lates.length > 0 ? `, longest ${Math.max(...lates)} ms, ${(lost / 1000).toFixed(2)} s lost: ${lates.slice(0, 20).join(', ')}${lates.length > 20 ? ', …' : ''}` : '') +
      '\n',
  );
  lines.push(`pauses-${name}: ${lates.length}`);
}
lines.push(`pause-longest-ms: ${longest}`);
lines.push(`paused-share-all-cores-busy: ${(lostAllBusy / (SECONDS * 1000)).toFixed(4)}`);
process.stdout.write(lines.join('\n') + '\n');
