// npm run bench:trace-context — what W3C trace context costs each request on the gateway's event loop, in a hot loop
// (the proxy's whole path is bench:proxy's; on a busy machine its noise is larger than this).
//
// Prints `name: value` lines, each the best of 5 batches, in microseconds of this process's CPU time a request (CPU time,
// not the wall clock, so that other work on the machine does not count):
//   trace-context-start-us     no traceparent: a new trace and span drawn, and the backend's traceparent written
//   trace-context-continue-us  a valid traceparent and a two-member tracestate read, a span drawn, the header written
//   trace-context-hostile-us   a 4 KiB tracestate of invalid members beside a valid traceparent (the parse's bound;
//                              batches a hundredth the size)

import { traceContextOf, traceparentOf } from '../runtime/telemetry/trace-context.ts';

const BATCH = Number(process.env.BENCH_RUNS ?? 200_000);

function bestUs(what: string, traceparent: string[] | undefined, tracestate: string[] | undefined, batch = BATCH): number {
  let best = Infinity;
  let sink = 0;
  for (let round = 0; round < 5; round++) {
    const start = process.cpuUsage();
    for (let i = 0; i < batch; i++) sink += traceparentOf(traceContextOf(traceparent, tracestate)).length;
    const used = process.cpuUsage(start);
    best = Math.min(best, (used.user + used.system) / batch);
  }
  if (sink !== 5 * batch * 55) throw new Error(`${what}: a traceparent that is not 55 characters`);
  console.error(`# ${what}: ${best.toFixed(3)} us of CPU a request (best of 5 batches of ${batch})`);
  return best;
}

const valid = ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'];
const start = bestUs('start', undefined, undefined);
const continued = bestUs('continue', valid, ['congo=t61rcWkgMzE,rojo=00f067aa0ba902b7']);
const hostile = bestUs('hostile', valid, ['Bad=1,'.repeat(680)], BATCH / 100);
console.log(`trace-context-start-us: ${start.toFixed(3)}`);
console.log(`trace-context-continue-us: ${continued.toFixed(3)}`);
console.log(`trace-context-hostile-us: ${hostile.toFixed(3)}`);
