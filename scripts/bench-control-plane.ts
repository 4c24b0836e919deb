// The control plane's costs as an operator and a fleet meet them, this build beside an earlier one in the same run:
//   - `gatehouse apply -f` of a file with 20 APIs and 2 gateways: the first time, again unchanged, and with one API
//     changed (wall time of the command, and how many revisions each run made);
//   - saving one API through the admin API (PUT /admin/apis/{id}), alternating two contents so each save is a change;
//   - a gateway's conditional poll (GET /gateway/v1/config with If-None-Match and its token, answered 304): what every
//     gateway instance costs the control plane every 10 s;
//   - with a build that has fragments (this one; none before issue 18's third part): saving a fragment every API
//     includes (each save checks the 20 APIs and rebuilds both gateways' documents), and saving one of
//     SPARE_FRAGMENTS fragments no API includes (checked alone, no gateway's document changes).
// Each build runs its own control plane and its own `gatehouse` command on a fresh data folder; the builds alternate,
// ROUNDS times, and the medians of the rounds are compared as ratios (here / earlier).
//
//   BENCH_CONTROL_PLANE_BASELINE=<a checkout of the earlier commit, built with `node scripts/build.mjs`>
//   npm run bench:control-plane
//
// Without BENCH_CONTROL_PLANE_BASELINE only this build is measured.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { stringify as toYaml } from 'yaml';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { readProcessLogs } from '../test/support/process-logs.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SAVES = 100;
const POLLS = 3000;
const POLL_CONCURRENCY = 4;
const API_COUNT = 20;
const FRAGMENT_SAVES = 25;
const SPARE_FRAGMENTS = 50;

interface Build {
  name: string;
  root: string;
}

interface Sample {
  applyFirstMs: number;
  applyFirstRevisions: number;
  applyUnchangedMs: number;
  applyUnchangedRevisions: number;
  applyOneChangedMs: number;
  applyOneChangedRevisions: number;
  saveMedianMs: number;
  pollsPerSecond: number;
  pollMedianMs: number;
  /** Absent for a build without fragments. */
  usedFragmentSaveMedianMs?: number;
  spareFragmentSaveMedianMs?: number;
}

const agent = new Agent({ connections: POLL_CONCURRENCY + 2 });

function api(i: number, tag: string) {
  return {
    id: `api-${i}`,
    pathPrefix: `/api-${i}`,
    backend: { url: `http://127.0.0.1:${9000 + i}` },
    policies: {
      inbound: [
        { policy: 'key-auth', config: { keys: [{ id: 'web', key: `key-${i}-0123456789abcdef` }] } },
        { policy: 'rate-limit', config: { calls: 100, renewalPeriod: 60 } },
      ],
      outbound: [{ policy: 'set-header', config: { name: 'x-tag', value: tag } }],
    },
  };
}

function declaration(url: string, changedTag: string): string {
  const apis = Array.from({ length: API_COUNT }, (_, i) => api(i, i === 0 ? changedTag : 'steady'));
  return toYaml({
    controlPlane: url,
    apis,
    gateways: [
      { id: 'edge', apis: apis.slice(0, API_COUNT / 2).map((a) => a.id) },
      { id: 'partner', apis: apis.slice(API_COUNT / 2).map((a) => a.id) },
    ],
  });
}

async function startControlPlane(build: Build, dataDir: string): Promise<{ child: ChildProcess; url: string; adminToken: string }> {
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', join(build.root, 'dist', 'runtime', 'entry', 'control-plane.js')], {
    cwd: build.root,
    env: { ...process.env, GATEHOUSE_CP_DATA_DIR: dataDir, GATEHOUSE_CP_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { waitForLog, stderr } = readProcessLogs(child, `${build.name} control plane`);
  const listening = await waitForLog((l) => l.msg === 'control plane listening', 30_000).catch(() => {
    throw new Error(`the ${build.name} control plane did not start: ${stderr()}`);
  });
  const adminToken = (await readFile(join(dataDir, 'admin-token'), 'utf8')).trim();
  return { child, url: `http://127.0.0.1:${listening.port}`, adminToken };
}

/** `authorization` is `Bearer <admin token>` for the admin API, `GatewayKey <token>` for the gateway API. */
async function call(url: string, method: string, path: string, authorization: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await request(`${url}${path}`, {
    method: method as 'GET',
    headers: { authorization, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    dispatcher: agent,
  });
  const text = await res.body.text();
  return { status: res.statusCode, text, headers: res.headers };
}

/** The build's `gatehouse` launcher: the root package's bin/, or sdk/bin/ in a baseline built before it was there. */
function launcher(build: Build): string {
  const rootBin = join(build.root, 'bin', 'gatehouse.js');
  return existsSync(rootBin) ? rootBin : join(build.root, 'sdk', 'bin', 'gatehouse.js');
}

/** Runs the build's own `gatehouse` command; its wall time in ms. */
async function gatehouse(build: Build, args: string[], env: Record<string, string>): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, [launcher(build), ...args], {
    cwd: build.root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  if (code !== 0) throw new Error(`${build.name}: gatehouse ${args.join(' ')} exited ${code}: ${stderr}`);
  return performance.now() - started;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function measure(build: Build): Promise<Sample> {
  const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-bench-cp-'));
  const cp = await startControlPlane(build, dataDir);
  try {
    const file = join(dataDir, 'gatehouse.yaml');
    const env = { GATEHOUSE_ADMIN_TOKEN: cp.adminToken, GATEHOUSE_CONTROL_PLANE: cp.url };
    const revision = async () => Number(JSON.parse((await call(cp.url, 'GET', '/admin/gateways', `Bearer ${cp.adminToken}`)).text).revision);

    await writeFile(file, declaration(cp.url, 'first'));
    let before = await revision();
    const applyFirstMs = await gatehouse(build, ['apply', '-f', file], env);
    const applyFirstRevisions = (await revision()) - before;
    before = await revision();
    const applyUnchangedMs = await gatehouse(build, ['apply', '-f', file], env);
    const applyUnchangedRevisions = (await revision()) - before;
    await writeFile(file, declaration(cp.url, 'second'));
    before = await revision();
    const applyOneChangedMs = await gatehouse(build, ['apply', '-f', file], env);
    const applyOneChangedRevisions = (await revision()) - before;

    const saves: number[] = [];
    for (let i = 0; i < SAVES; i++) {
      const started = performance.now();
      const reply = await call(cp.url, 'PUT', '/admin/apis/api-0', `Bearer ${cp.adminToken}`, api(0, i % 2 === 0 ? 'even' : 'odd'));
      saves.push(performance.now() - started);
      if (reply.status !== 200) throw new Error(`${build.name}: PUT /admin/apis/api-0 answered ${reply.status}: ${reply.text}`);
    }

    const issued = await call(cp.url, 'POST', '/admin/gateways/edge/tokens', `Bearer ${cp.adminToken}`, {});
    const token = `GatewayKey ${(JSON.parse(issued.text) as { token: string }).token}`;
    const first = await call(cp.url, 'GET', '/gateway/v1/config', token);
    const etag = String(first.headers.etag);
    const polls: number[] = [];
    let next = 0;
    const pollStarted = performance.now();
    await Promise.all(
      Array.from({ length: POLL_CONCURRENCY }, async () => {
        while (next++ < POLLS) {
          const started = performance.now();
          const reply = await call(cp.url, 'GET', '/gateway/v1/config', token, undefined, { 'if-none-match': etag });
          polls.push(performance.now() - started);
          if (reply.status !== 304) throw new Error(`${build.name}: a conditional poll answered ${reply.status}: ${reply.text}`);
        }
      }),
    );
    const pollsPerSecond = (POLLS / (performance.now() - pollStarted)) * 1000;
    const hasFragments = (await call(cp.url, 'GET', '/admin/fragments', `Bearer ${cp.adminToken}`)).status === 200;
    return {
      ...(hasFragments ? await measureFragments(build, cp) : {}),
      applyFirstMs,
      applyFirstRevisions,
      applyUnchangedMs,
      applyUnchangedRevisions,
      applyOneChangedMs,
      applyOneChangedRevisions,
      saveMedianMs: median(saves),
      pollsPerSecond,
      pollMedianMs: median(polls),
    };
  } finally {
    cp.child.kill('SIGTERM');
    await new Promise((r) => cp.child.once('exit', r));
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Fragment saves (after the other figures: the APIs then include a fragment). */
async function measureFragments(build: Build, cp: { url: string; adminToken: string }): Promise<Pick<Sample, 'usedFragmentSaveMedianMs' | 'spareFragmentSaveMedianMs'>> {
  const put = async (path: string, body: unknown) => {
    const reply = await call(cp.url, 'PUT', path, `Bearer ${cp.adminToken}`, body);
    if (reply.status !== 200) throw new Error(`${build.name}: PUT ${path} answered ${reply.status}: ${reply.text}`);
  };
  const fragment = (value: string) => ({ entries: [{ policy: 'set-header', config: { name: 'x-fragment', value } }] });
  await put('/admin/fragments/common', fragment('first'));
  for (let i = 0; i < SPARE_FRAGMENTS; i++) await put(`/admin/fragments/spare-${i}`, fragment(`spare-${i}`));
  for (let i = 0; i < API_COUNT; i++) {
    const base = api(i, 'steady');
    await put(`/admin/apis/api-${i}`, { ...base, policies: { ...base.policies, outbound: [...base.policies.outbound, { 'include-fragment': 'common' }] } });
  }
  const timed = async (path: string) => {
    const times: number[] = [];
    for (let i = 0; i < FRAGMENT_SAVES; i++) {
      const started = performance.now();
      await put(path, fragment(i % 2 === 0 ? 'even' : 'odd'));
      times.push(performance.now() - started);
    }
    return median(times);
  };
  return { usedFragmentSaveMedianMs: await timed('/admin/fragments/common'), spareFragmentSaveMedianMs: await timed('/admin/fragments/spare-0') };
}

async function main(): Promise<void> {
  const builds: Build[] = [{ name: 'here', root: repoRoot() }];
  const baseline = process.env.BENCH_CONTROL_PLANE_BASELINE;
  if (baseline) builds.push({ name: 'earlier', root: baseline });
  const samples = new Map<string, Sample[]>(builds.map((b) => [b.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    // Alternating which goes first, so that neither always meets a warmer machine.
    const order = round % 2 === 0 ? builds : [...builds].reverse();
    for (const build of order) {
      const sample = await measure(build);
      samples.get(build.name)!.push(sample);
      process.stdout.write(`# round ${round + 1} ${build.name}: ${JSON.stringify(sample, (_, v: unknown) => (typeof v === 'number' ? Math.round(v * 100) / 100 : v))}\n`);
    }
  }
  const keys = Object.keys(samples.get('here')![0]!) as (keyof Sample)[];
  const of = (name: string, key: keyof Sample) => median(samples.get(name)!.flatMap((s) => (s[key] === undefined ? [] : [s[key]])));
  for (const key of keys) {
    const here = of('here', key);
    const line = [`${key}: ${here.toFixed(2)}`];
    if (baseline && samples.get('earlier')!.every((s) => s[key] !== undefined)) {
      const earlier = of('earlier', key);
      line.push(`earlier ${earlier.toFixed(2)}`);
      if (!key.endsWith('Revisions') && earlier > 0) line.push(`ratio ${(here / earlier).toFixed(2)}`);
    }
    process.stdout.write(`${line.join('  ')}\n`);
  }
}

main()
  .then(() => process.exit(0))
  .catch((err: unknown) => {
    process.stderr.write(`bench:control-plane failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
