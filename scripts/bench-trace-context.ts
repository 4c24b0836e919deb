// npm run bench:trace-context — what W3C trace context costs each request on the gateway's event loop, in a hot loop
// (the proxy's whole path is bench:proxy's; on a busy machine its noise is larger than this).
//
// Prints `name: value` lines, each the best of 5 batches, in microseconds a request:
//   trace-context-start-us     no traceparent: a new trace and span drawn, and the backend's traceparent written
//   trace-context-continue-us  a valid traceparent and a two-member tracestate read, a span drawn, the header written
//   trace-context-hostile-us   a 4 KiB tracestate of invalid members beside a valid traceparent (the parse's bound)

import { traceContextOf, traceparentOf } from '../runtime/telemetry/trace-context.ts';

const BATCH = Number(process.env.BENCH_RUNS ?? 200_000);

function bestUs(what: string, traceparent: string[] | undefined, tracestate: string[] | undefined): number {
  let best = Infinity;
  let sink = 0;
  for (let round = 0; round < 5; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < BATCH; i++) sink += traceparentOf(traceContextOf(traceparent, tracestate)).length;
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1000 / BATCH);
  }
  if (sink !== 5 * BATCH * 55) throw new Error(`${what}: a traceparent that is not 55 characters`);
  console.error(`# ${what}: ${best.toFixed(3)} us a request (best of 5 batches of ${BATCH})`);
  return best;
}

const valid = ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'];
const start = bestUs('start', undefined, undefined);
const continued = bestUs('continue', valid, ['congo=t61rcWkgMzE,rojo=00f067aa0ba902b7']);
const hostile = bestUs('hostile', valid, ['Bad=1,'.repeat(700)]);
console.log(`trace-context-start-us: ${start.toFixed(3)}`);
console.log(`trace-context-continue-us: ${continued.toFixed(3)}`);
console.log(`trace-context-hostile-us: ${hostile.toFixed(3)}`);
