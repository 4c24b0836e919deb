// Running wrk (the HTTP load generator) and reading what it prints, for the scripts that drive load with it
// (bench-proxy, soak, profile-proxy).

import { spawn } from 'node:child_process';
import { API_KEY, ORIGIN } from '../bench/five-policy-chain.ts';
import { onCpu } from './pinning.ts';

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

/**
 * `wrk -t1 --latency` against `url` with the five-policy chain's key and origin, as a client of the chain sends them;
 * on CPU `cpu` alone when one is given. Rejects when wrk fails.
 */
export function runChainWrk(url: string, options: { seconds: number; connections: number; cpu?: number }): Promise<WrkRun> {
  const args = ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--latency', '-H', `x-api-key: ${API_KEY}`, '-H', `origin: ${ORIGIN}`, url];
  const [command, commandArgs] = onCpu(options.cpu, 'wrk', args);
  const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(parseWrkOutput(out)) : reject(new Error(`wrk exited with ${code}: ${out}`))));
  });
}
