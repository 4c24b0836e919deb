// The shell blocks of docs/deployment.md that give a gateway its token and rotate it, run as written (bash, `set -e`),
// taken from the page when the test runs: a change to the page that breaks them fails here. A real control plane and a
// real gateway on 127.0.0.1; `kubectl` is the one stand-in (test/support/fake-kubectl.mjs: there is no cluster), and
// this test plays the kubelet, laying each version of the Secret out as a Secret volume (test/support/secret-volume.ts).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { startControlPlane, type ControlPlaneProcess } from './support/control-plane-process.ts';
import { startGatewayProcess, tempDir, type GatewayProcess } from './support/gateway-process.ts';
import { SecretVolume } from './support/secret-volume.ts';
import { send } from './support/requests.ts';
import { waitForAsync } from './support/wait.ts';

const root = repoRoot();
const doc = readFileSync(join(root, 'docs', 'deployment.md'), 'utf8');
/** The port the doc's port-forward listens on. */
const FORWARDED_PORT = 7070;

/** The one ```sh block of docs/deployment.md that contains `marker`. */
function shellBlock(marker: string): string {
  const blocks = [...doc.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  const found = blocks.filter((b) => b.includes(marker));
  assert.equal(found.length, 1, `docs/deployment.md has one sh block with ${JSON.stringify(marker)} (found ${found.length})`);
  return found[0]!;
}

/** One bash process that blocks are fed to in turn, so that a variable set by one is there for the next, as in a terminal. */
class ShellSession {
  private readonly child: ChildProcess;
  private stdout = '';
  private stderr = '';
  private blocks = 0;
  private readonly exited: Promise<number | null>;

  constructor(cwd: string, env: Record<string, string>) {
    this.child = spawn('bash', ['-e', '-o', 'pipefail', '-s'], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (c: Buffer) => (this.stdout += c.toString()));
    this.child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** Runs `block`; resolves with what it printed, rejects when bash exits first (a command failed) or after `timeoutMs`. */
  async run(block: string, timeoutMs = 180_000): Promise<string> {
    const marker = `@@block ${++this.blocks} done@@`;
    const from = this.stdout.length;
    this.child.stdin!.write(`${block}\necho '${marker}'\n`);
    const deadline = Date.now() + timeoutMs;
    while (!this.stdout.includes(marker, from)) {
      if (this.child.exitCode !== null) throw new Error(`bash exited with ${this.child.exitCode} in the block:\n${block}\nstderr:\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`the block did not finish in ${timeoutMs} ms:\n${block}\nstderr:\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.stdout.slice(from, this.stdout.indexOf(marker, from));
  }

  get errors(): string {
    return this.stderr;
  }

  async close(): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

const agent = new Agent({ connections: 4 });
let cp: ControlPlaneProcess;
let work: string;
let state: string;
let shell: ShellSession;

type StoredObject = { kind: string; metadata: { name: string }; data: Record<string, string> };
const stored = (kind: string, name: string): StoredObject | null => {
  const file = join(state, `${kind}-gatehouse-${name}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as StoredObject) : null;
};
const secretValue = (name: string, key: string) => Buffer.from(stored('secret', name)!.data[key]!, 'base64').toString('utf8');

before(async () => {
  assert.ok(await portFree(FORWARDED_PORT), `port ${FORWARDED_PORT} of 127.0.0.1 is in use: the doc's port-forward needs it`);
  cp = await startControlPlane(tempDir('gatehouse-cp-doc-'));
  work = tempDir('gatehouse-doc-shell-');
  state = join(work, 'api-server');
  mkdirSync(state);
  // What an install following the doc has: the control plane's Secret, made by the block before these.
  const adminSecret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'gatehouse-control-plane', namespace: 'gatehouse' }, data: { 'admin-token': Buffer.from(cp.adminToken).toString('base64') } };
  writeFileSync(join(state, 'secret-gatehouse-gatehouse-control-plane.json'), JSON.stringify(adminSecret));
  // kubectl: the stand-in; gatehouse: this package, installed where the operator runs it (`npx gatehouse`).
  const bin = join(work, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'kubectl'), `#!/bin/sh\nexec node ${JSON.stringify(join(root, 'test', 'support', 'fake-kubectl.mjs'))} "$@"\n`);
  chmodSync(join(bin, 'kubectl'), 0o755);
  const project = join(work, 'operator');
  mkdirSync(join(project, 'node_modules', '.bin'), { recursive: true });
  symlinkSync(join(root, 'bin', 'gatehouse.js'), join(project, 'node_modules', '.bin', 'gatehouse'));
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('GATEHOUSE_')) env[k] = v;
  shell = new ShellSession(project, {
    ...env,
    PATH: `${bin}:${process.env.PATH}`,
    FAKE_KUBECTL_STATE: state,
    FAKE_KUBECTL_FORWARD_PORT: new URL(cp.url).port,
  });
});

after(async () => {
  const pidFile = join(state, 'port-forward.pid');
  if (existsSync(pidFile)) {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGTERM');
    } catch {
      // Gone already.
    }
  }
  await shell?.close();
  await cp?.stop();
  await agent.close();
});

describe('docs/deployment.md, Kubernetes: the gateway token', () => {
  test('the install block issues a token into the Secret the gateways mount; the rotation blocks replace and revoke it with no failed request', async () => {
    await shell.run(shellBlock('kubectl port-forward -n gatehouse svc/gatehouse-control-plane'));
    // The token and the newline `gatehouse token issue` ends its line with (the gateway reads past it).
    const first = secretValue('gatehouse-gateway-token', 'token').trimEnd();
    assert.match(first, /^gw2\.kubernetes\.\d+\.\d+\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$/, 'a whole token in the Secret');
    const accepted = await send(cp.url, '/gateway/v1/config', { headers: { authorization: `GatewayKey ${first}` }, dispatcher: agent });
    assert.equal(accepted.status, 200, accepted.body);
    assert.match(secretValue('gatehouse-gateway', 'backup-key'), /^[0-9a-f]{64}$/);
    const signingKey = await send(cp.url, '/admin/signing-key', { headers: { authorization: `Bearer ${cp.adminToken}` }, dispatcher: agent });
    assert.match(signingKey.body, /^-----BEGIN PUBLIC KEY-----/);
    assert.equal(stored('configmap', 'gatehouse-trusted-key')!.data['signing-key.pem'], signingKey.body);
    assert.ok(!existsSync(join(work, 'operator', 'gateway-token')), 'the token file is removed');

    // The kubelet: each version of the Secret laid out in the volume, as it syncs (here every 100 ms).
    const volume = new SecretVolume(join(work, 'volume'));
    let synced = '';
    const syncVolume = () => {
      const token = secretValue('gatehouse-gateway-token', 'token');
      if (token !== synced) volume.write({ token });
      synced = token;
    };
    syncVolume();
    let kubeletRunning = true;
    const kubelet = (async () => {
      while (kubeletRunning) {
        syncVolume();
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const api = (value: string) => ({ pathPrefix: '/doc', backend: { url: 'builtin:echo' }, policies: { outbound: [{ policy: 'set-header', config: { name: 'x-config', value } }] } });
    assert.equal((await cp.admin('PUT', '/admin/apis/doc', api('d1'))).status, 200);
    assert.equal((await cp.admin('PUT', '/admin/gateways/kubernetes', { apis: ['doc'] })).status, 200);
    let gateway: GatewayProcess | undefined;
    let sending = true;
    let sent = 0;
    const failed: number[] = [];
    let traffic: Promise<void> = Promise.resolve();
    try {
      gateway = await startGatewayProcess({ env: { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN_FILE: volume.path('token'), GATEHOUSE_SYNC_INTERVAL_MS: '200' } });
      await gateway.waitForLog((l) => l.msg === 'configuration from the control plane applied', 15_000);
      const through = gateway;
      traffic = (async () => {
        while (sending) {
          const res = await send(through.url, '/doc/x', { dispatcher: agent });
          sent++;
          if (res.status !== 200) failed.push(res.status);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();

      await shell.run(shellBlock('OLD_TOKEN_ID='));
      const second = secretValue('gatehouse-gateway-token', 'token').trimEnd();
      assert.notEqual(second, first);
      const [oldId, newId] = [first.split('.')[4]!, second.split('.')[4]!];
      const changed = await gateway.waitForLog((l) => l.msg === 'gateway token changed: the new one from the file is used from now on', 10_000);
      assert.deepEqual([changed.previousTokenId, changed.tokenId], [oldId, newId]);
      type Row = { id: string; state: string; lastUsedAt: string | null };
      const tokens = async () => (await cp.admin('GET', '/admin/gateways/kubernetes/tokens')).body.tokens as Row[];
      await waitForAsync('the new token used', async () => (await tokens()).find((t) => t.id === newId)?.lastUsedAt != null, 10_000);

      await shell.run(shellBlock('npx gatehouse token revoke kubernetes "$OLD_TOKEN_ID"'));
      assert.deepEqual((await tokens()).map((t) => [t.id, t.state]).sort(), [[newId, 'valid'], [oldId, 'revoked']].sort());
      assert.equal((await cp.admin('PUT', '/admin/apis/doc', api('d2'))).status, 200);
      const at = gateway;
      await waitForAsync('a change after the revocation', async () => (await send(at.url, '/doc/x', { dispatcher: agent })).headers['x-config'] === 'd2', 10_000);
    } finally {
      sending = false;
      await traffic;
      kubeletRunning = false;
      await kubelet;
      await gateway?.stop();
    }
    assert.deepEqual(failed, [], `${failed.length} of ${sent} requests failed`);
    assert.ok(sent > 20, `${sent} requests sent`);
    assert.deepEqual(cp.logs.filter((l) => l.msg === 'gateway token refused'), [], 'the control plane refused none of the gateway\'s calls');
  });
});
