// The images of deploy/docker, built and run with podman: the commands themselves, one definition for what
// `npm run test:containers` and `npm run bench:container` run and what docs/deployment.md shows (rendered with the
// page's names and ports by `documentedCommands`; test/deployment.test.ts holds the page to them), and running them.
//
// Containers use the host's network and are reached on 127.0.0.1: a podman network would give them addresses in a
// private range (10.88.0.0/16), to which nothing here may send traffic. On the host's network a container's ports are
// the program's own settings (GATEHOUSE_HTTP_PORT, GATEHOUSE_ADMIN_PORT, GATEHOUSE_CP_PORT), which is how two gateways
// share one host.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { repoRoot } from '../../runtime/assets/repo-root.ts';
import { STATUS_PATH } from '../../runtime/gateway/gateway.ts';
import { parseDockerfile } from '../../test/support/dockerfile.ts';

export const GATEWAY_DOCKERFILE = 'deploy/docker/gateway.Dockerfile';
export const CONTROL_PLANE_DOCKERFILE = 'deploy/docker/control-plane.Dockerfile';
/** Where the images keep their state (their VOLUME). */
export const GATEWAY_BACKUP_PATH = '/var/lib/gatehouse/backup';
export const CONTROL_PLANE_DATA_PATH = '/var/lib/gatehouse-control-plane';
/** Where a gateway's token folder is mounted, and the file in it GATEHOUSE_TOKEN_FILE names. */
export const TOKEN_MOUNT = '/run/gatehouse';
/**
 * `podman stop`'s wait before it kills: podman's own default, 10 s, would cut a gateway's drain short (5 s of shutdown
 * delay, then up to 30 s for requests in flight). 45 s, as terminationGracePeriodSeconds in deploy/kubernetes.
 */
export const STOP_GRACE_SECONDS = 45;

/** The images' tags: the package's version, as the Kubernetes manifests name them. */
export function imageTags(): { gateway: string; controlPlane: string } {
  const { version } = JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { version: string };
  return { gateway: `gatehouse-gateway:${version}`, controlPlane: `gatehouse-control-plane:${version}` };
}

// ---------------------------------------------------------------------------------------------------------------
// The commands (podman's arguments)

/**
 * `--format docker` keeps HEALTHCHECK (the OCI format has none); `--network host` lets the build's `npm ci` reach the
 * registry as the host does, through whatever proxy the host uses.
 */
export function buildArgs(dockerfile: string, tag: string): string[] {
  return ['build', '--format', 'docker', '--network', 'host', '-f', dockerfile, '-t', tag, '.'];
}

export interface GatewayRun {
  name: string;
  image: string;
  /** The named volume mounted on the backup folder. */
  backupVolume: string;
  httpPort: number;
  adminPort: number;
  /** Configured by a control plane: its URL, and the host folder holding the gateway token (file `token`). */
  controlPlane?: { url: string; tokenDir: string };
}

/**
 * A gateway with a read-only root filesystem (podman still mounts tmpfs on /tmp, /run and /var/tmp, as Kubernetes'
 * emptyDir on /tmp) and its backup on a named volume. GATEHOUSE_BACKUP_KEY is passed on from podman's environment.
 */
export function gatewayRunArgs(run: GatewayRun): string[] {
  const fromControlPlane = run.controlPlane
    ? [
        '-v', `${run.controlPlane.tokenDir}:${TOKEN_MOUNT}:ro`,
        '-e', `GATEHOUSE_CONFIG_URL=${run.controlPlane.url}`,
        '-e', `GATEHOUSE_TOKEN_FILE=${TOKEN_MOUNT}/token`,
        '-e', 'GATEHOUSE_BACKUP_KEY',
      ]
    : [];
  return [
    'run', '-d', '--name', run.name, '--network', 'host', '--read-only',
    '-v', `${run.backupVolume}:${GATEWAY_BACKUP_PATH}`,
    ...fromControlPlane,
    '-e', `GATEHOUSE_HTTP_PORT=${run.httpPort}`, '-e', `GATEHOUSE_ADMIN_PORT=${run.adminPort}`,
    run.image,
  ];
}

export interface ControlPlaneRun {
  name: string;
  image: string;
  dataVolume: string;
  port: number;
}

/** The control plane on 127.0.0.1 (the image's 0.0.0.0 is for a network of its own), GATEHOUSE_ADMIN_TOKEN passed on. */
export function controlPlaneRunArgs(run: ControlPlaneRun): string[] {
  return [
    'run', '-d', '--name', run.name, '--network', 'host',
    '-v', `${run.dataVolume}:${CONTROL_PLANE_DATA_PATH}`,
    '-e', 'GATEHOUSE_CP_HOST=127.0.0.1', '-e', `GATEHOUSE_CP_PORT=${run.port}`, '-e', 'GATEHOUSE_ADMIN_TOKEN',
    run.image,
  ];
}

/** SIGTERM (the images' STOPSIGNAL), then SIGKILL only after STOP_GRACE_SECONDS. */
export function stopArgs(name: string): string[] {
  return ['stop', '-t', String(STOP_GRACE_SECONDS), name];
}

/** The image's HEALTHCHECK, run once now (without systemd, podman cannot run it on its interval). */
export function healthcheckArgs(name: string): string[] {
  return ['healthcheck', 'run', name];
}

/** A command as a shell line: words quoted only where needed, `$` left to the shell inside double quotes. */
export function shellLine(args: string[]): string {
  return ['podman', ...args]
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : a.includes('$') ? `"${a}"` : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(' ');
}

/** The names and ports docs/deployment.md uses, and every podman command it shows, as the scripts render them. */
export const DOC = {
  gateway: { name: 'gatehouse-gateway', backupVolume: 'gatehouse-backup', httpPort: 8080, adminPort: 8082 },
  controlPlane: { name: 'gatehouse-control-plane', dataVolume: 'gatehouse-cp', port: 7070 },
  fleet: [
    { name: 'gatehouse-gateway-1', backupVolume: 'gatehouse-backup-1', httpPort: 8080, adminPort: 8082 },
    { name: 'gatehouse-gateway-2', backupVolume: 'gatehouse-backup-2', httpPort: 8090, adminPort: 8092 },
  ],
  tokenDir: '$PWD/gateway-token',
} as const;

export function documentedCommands(): string[] {
  const tags = imageTags();
  const url = `http://127.0.0.1:${DOC.controlPlane.port}`;
  return [
    buildArgs(GATEWAY_DOCKERFILE, tags.gateway),
    buildArgs(CONTROL_PLANE_DOCKERFILE, tags.controlPlane),
    gatewayRunArgs({ ...DOC.gateway, image: tags.gateway }),
    healthcheckArgs(DOC.gateway.name),
    stopArgs(DOC.gateway.name),
    controlPlaneRunArgs({ ...DOC.controlPlane, image: tags.controlPlane }),
    ...DOC.fleet.map((g) => gatewayRunArgs({ ...g, image: tags.gateway, controlPlane: { url, tokenDir: DOC.tokenDir } })),
  ].map(shellLine);
}

// ---------------------------------------------------------------------------------------------------------------
// Running them

export interface PodmanResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `podman <args>` from the repository root, with `env` added to podman's environment (for the variables the commands
 * pass on by name). Rejects, naming the command, when it exits non-zero (unless `allowFailure`) or runs past
 * `timeoutMs` (then it is killed).
 */
export function podman(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number; allowFailure?: boolean } = {},
): Promise<PodmanResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn('podman', args, { cwd: repoRoot(), env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${shellLine(args)}: cannot run podman: ${err.message}`));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (timedOut) reject(new Error(`${shellLine(args)}: still running after ${timeoutMs} ms, killed; stderr: ${tail(stderr)}`));
      else if (code !== 0 && !options.allowFailure) reject(new Error(`${shellLine(args)}: exit ${code}; stderr: ${tail(stderr)}`));
      else resolve({ code, stdout, stderr });
    });
  });
}

function tail(text: string, lines = 30): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/** Why podman cannot run containers here, or null when it can (it answers `podman info`). */
export async function podmanUnavailable(): Promise<string | null> {
  try {
    await podman(['info', '--format', '{{.Host.OCIRuntime.Name}}'], { timeoutMs: 30_000 });
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** How long a build may take: from nothing, the dependencies, the native addon and the bundle take minutes here. */
const BUILD_TIMEOUT_MS = 15 * 60_000;

/** Builds an image from the repository, as documented; its output goes to `log` (podman writes it on stderr too). */
export async function buildImage(dockerfile: string, tag: string, log: (text: string) => void = () => {}): Promise<void> {
  const result = await podman(buildArgs(dockerfile, tag), { timeoutMs: BUILD_TIMEOUT_MS });
  log(result.stdout + result.stderr);
}

/** The image a Dockerfile's last stage is built on, by the name podman gives it locally. */
export function runtimeBase(dockerfile: string): string {
  const stages = parseDockerfile(readFileSync(join(repoRoot(), dockerfile), 'utf8')).stages;
  return `docker.io/library/${stages.at(-1)!.image}`;
}

/** What the gateway image adds to its base besides its user and folders: Node and the bundle. */
export const GATEWAY_FILES = ['/usr/local/bin/node', '/opt/gatehouse/gatehouse.mjs'];

/** The size in bytes of each of `paths` in `image` (stat in a container of it, without a network). */
export async function fileBytes(image: string, paths: string[]): Promise<Map<string, number>> {
  const { stdout } = await podman(['run', '--rm', '--network', 'none', '--entrypoint', 'stat', image, '-c', '%s %n', ...paths]);
  return new Map(stdout.trim().split('\n').map((line) => {
    const [bytes, path] = line.split(' ') as [string, string];
    return [path, Number(bytes)];
  }));
}

/** Bytes of an image, as podman counts them (its layers, uncompressed). */
export async function imageBytes(image: string): Promise<number> {
  const { stdout } = await podman(['image', 'inspect', '--format', '{{.Size}}', image]);
  return Number(stdout.trim());
}

/** A container's state: whether it runs, and its exit code once it has stopped. */
export async function containerState(name: string): Promise<{ running: boolean; exitCode: number; status: string }> {
  const { stdout } = await podman(['inspect', '--type', 'container', '--format', '{{.State.Running}} {{.State.ExitCode}} {{.State.Status}}', name]);
  const [running, exitCode, status] = stdout.trim().split(' ');
  return { running: running === 'true', exitCode: Number(exitCode), status: status ?? '' };
}

/** What a container has written on its standard output and error. */
export async function containerLogs(name: string): Promise<string> {
  const { stdout, stderr } = await podman(['logs', name], { allowFailure: true });
  return stdout + stderr;
}

const probeAgent = new Agent({ connections: 4 });

/** What the probe path answers on `port` of 127.0.0.1: the status, or the connection error's code. */
export async function probe(port: number, path = STATUS_PATH): Promise<number | string> {
  try {
    const res = await request(`http://127.0.0.1:${port}${path}`, { dispatcher: probeAgent, headersTimeout: 2000, bodyTimeout: 2000 });
    await res.body.dump();
    return res.statusCode;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

/**
 * Resolves once the container `name` answers 200 on `path` of `port`, polling every `everyMs`; rejects naming the
 * container, what it last answered and its log when it stops first or `timeoutMs` passes.
 */
export async function waitForProbe(name: string, port: number, options: { path?: string; timeoutMs?: number; everyMs?: number } = {}): Promise<void> {
  const { path = STATUS_PATH, timeoutMs = 60_000, everyMs = 20 } = options;
  const deadline = Date.now() + timeoutMs;
  let last: number | string = 'nothing yet';
  for (let polls = 0; ; polls++) {
    last = await probe(port, path);
    if (last === 200) return;
    // Asking podman costs tens of milliseconds: only now and then.
    if (polls % 25 === 24 && !(await containerState(name)).running) {
      throw new Error(`container ${name} stopped before ${path} on port ${port} answered 200 (last: ${last}); its log:\n${tail(await containerLogs(name))}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`container ${name}: ${path} on port ${port} did not answer 200 within ${timeoutMs} ms (last: ${last}); its log:\n${tail(await containerLogs(name))}`);
    }
    await sleep(everyMs);
  }
}

/** Removes containers and volumes (those that exist; a failed run may have made only some). */
export async function removeContainers(containers: string[], volumes: string[]): Promise<void> {
  if (containers.length > 0) await podman(['rm', '-f', '-t', '0', '--ignore', ...containers], { allowFailure: true });
  if (volumes.length > 0) await podman(['volume', 'rm', '-f', ...volumes], { allowFailure: true });
}
