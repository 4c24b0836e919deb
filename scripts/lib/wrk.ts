// Reading what wrk (the HTTP load generator) prints, for the scripts that drive load with it (bench-proxy, soak).

export interface WrkRun {
  rps: number;
  /** Requests completed (wrk leaves out those in flight when its time is up). */
  requests: number;
  p50ms: number;
  p99ms: number;
  /** Answers with a status of 400 or more (wrk counts them together with 3xx). */
  non2xx: number;
  /** Connect, read and write errors and timeouts, together. */
  socketErrors: number;
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n;
}

/** Parses the output of `wrk --latency ...`; throws, quoting it, when it is not that. */
export function parseWrkOutput(out: string): WrkRun {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const total = /(\d+) requests in/.exec(out);
  const p50 = /\b50%\s+([\d.]+)(us|ms|s|m)\b/.exec(out);
  const p99 = /\b99%\s+([\d.]+)(us|ms|s|m)\b/.exec(out);
  if (!rps || !total || !p50 || !p99) throw new Error(`could not read wrk's output:\n${out}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Number(rps[1]),
    requests: Number(total[1]),
    p50ms: toMs(p50[1]!, p50[2]!),
    p99ms: toMs(p99[1]!, p99[2]!),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: sock ? sock.slice(1).reduce((s, v) => s + Number(v), 0) : 0,
  };
}
