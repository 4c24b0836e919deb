// npm run scenario:outage: the control-plane outage story, end to end, with real processes on 127.0.0.1.
//
//   1. A control plane (its own data folder) and a gateway configured by it, with a backup folder; steady traffic
//      through the gateway for the whole story, counting every answer that is not 200.
//   2. The control plane is killed (SIGKILL). The gateway serves from memory.
//   3. The gateway is restarted the way an orchestrator rolls it: a new gateway process starts on the same backup folder
//      (the control plane still down, so it must start from the backup); traffic moves to it once it is ready; the old
//      one gets SIGTERM and drains.
//   4. The control plane comes back on the same data. A change is made at once, while the gateway has not reached the
//      control plane again yet; the gateway must catch up on reconnecting.
//
// Prints `failed-requests: N`, `served-from-backup: yes|no` and `caught-up-after-reconnect: yes|no` (and a few
// reference lines); exits 1 unless there were no failed requests, the restarted gateway served from its backup, and it
// caught up. Gateways poll every 500 ms here (GATEHOUSE_SYNC_INTERVAL_MS) so that the story takes seconds, not minutes.

import { request, Agent } from 'undici';
import { startControlPlane, type ControlPlaneProcess } from '../test/support/control-plane-process.ts';
import { startGatewayProcess, tempDir, type GatewayProcess } from '../test/support/gateway-process.ts';
import { waitForAsync } from '../test/support/wait.ts';
import { runScenario } from './lib/run.ts';
import { STATUS_PATH } from '../runtime/server/gateway.ts';

const log = (line: string) => process.stderr.write(`${line}\n`);
const agent = new Agent({ connections: 8 });
const processes: { stop(): Promise<unknown> }[] = [];

async function admin(cp: ControlPlaneProcess, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await request(`${cp.url}${path}`, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    dispatcher: agent,
  });
  const json = (await res.body.json()) as Record<string, unknown>;
  if (res.statusCode !== 200) throw new Error(`${method} ${path}: ${res.statusCode} ${JSON.stringify(json)}`);
  return json;
}

const api = (version: string) => ({
  pathPrefix: '/shop',
  backend: { url: 'builtin:echo' },
  policies: { outbound: [{ policy: 'set-header', config: { name: 'x-config-version', value: version } }] },
});

/** Steady traffic: 4 clients in a loop against whichever gateway `target()` names, until stopped. */
function traffic(target: () => GatewayProcess) {
  let running = true;
  let sent = 0;
  let failed = 0;
  const failures: string[] = [];
  const client = async () => {
    while (running) {
      sent++;
      try {
        const res = await request(`${target().url}/shop/items`, { dispatcher: agent, headersTimeout: 5000, bodyTimeout: 5000 });
        await res.body.dump();
        if (res.statusCode !== 200) {
          failed++;
          if (failures.length < 5) failures.push(`HTTP ${res.statusCode}`);
        }
      } catch (err) {
        failed++;
        if (failures.length < 5) failures.push((err as Error).message);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const clients = Array.from({ length: 4 }, client);
  return {
    stop: async () => {
      running = false;
      await Promise.all(clients);
      return { sent, failed, failures };
    },
  };
}

async function versionServed(g: GatewayProcess): Promise<string | undefined> {
  const res = await request(`${g.url}/shop/items`, { dispatcher: agent });
  await res.body.dump();
  return res.headers['x-config-version'] as string | undefined;
}

async function main(): Promise<number> {
  const cpData = tempDir('gatehouse-outage-cp-');
  const backupDir = tempDir('gatehouse-outage-backup-');
  let cp = await startControlPlane(cpData);
  processes.push({ stop: () => cp.stop() });
  const port = Number(new URL(cp.url).port);
  await admin(cp, 'PUT', '/admin/apis/shop', api('v1'));
  await admin(cp, 'PUT', '/admin/gateways/edge', { apis: ['shop'] });
  const { token } = (await admin(cp, 'POST', '/admin/gateways/edge/tokens', {})) as { token: string };
  const env = { GATEHOUSE_CONFIG_URL: cp.url, GATEHOUSE_TOKEN: token, GATEHOUSE_BACKUP_DIR: backupDir, GATEHOUSE_SYNC_INTERVAL_MS: '500' };

  const first = await startGatewayProcess({ env });
  processes.push(first);
  await waitForAsync('the gateway to serve v1', async () => (await versionServed(first)) === 'v1', 20_000);
  log(`# control plane on ${port}, gateway on ${first.httpPort}: serving v1; traffic starts`);
  let current = first;
  const load = traffic(() => current);
  await new Promise((r) => setTimeout(r, 1000));

  log('# control plane killed (SIGKILL)');
  await cp.stop('SIGKILL');
  await new Promise((r) => setTimeout(r, 1500));

  log('# gateway restarted: a new process on the same backup folder, traffic moved, the old one drained');
  const second = await startGatewayProcess({ env });
  processes.push(second);
  const fromBackup = await second
    .waitForLog((l) => String(l.msg).startsWith('started from the configuration backup'), 20_000)
    .then(() => true, () => false);
  await waitForAsync('the restarted gateway to be ready', async () => {
    const res = await request(`${second.url}${STATUS_PATH}`, { dispatcher: agent });
    await res.body.dump();
    return res.statusCode === 200;
  }, 20_000);
  current = second;
  await first.stop('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));

  log('# control plane back on the same data; a change (v2) made before the gateway reconnects');
  cp = await startControlPlane(cpData, port);
  processes.push({ stop: () => cp.stop() });
  await admin(cp, 'PUT', '/admin/apis/shop', api('v2'));
  const changedAt = Date.now();
  const caughtUp = await waitForAsync('the gateway to serve v2', async () => (await versionServed(second)) === 'v2', 15_000).then(
    () => true,
    () => false,
  );
  const catchUpMs = Date.now() - changedAt;
  await new Promise((r) => setTimeout(r, 500));
  const result = await load.stop();
  log(`# ${result.sent} requests, ${result.failed} failed${result.failures.length ? `: ${result.failures.join('; ')}` : ''}`);

  process.stdout.write(
    [
      `failed-requests: ${result.failed}`,
      `served-from-backup: ${fromBackup ? 'yes' : 'no'}`,
      `caught-up-after-reconnect: ${caughtUp ? 'yes' : 'no'}`,
      `requests-sent: ${result.sent}`,
      `catch-up-ms: ${caughtUp ? catchUpMs : 'n/a'}`,
    ].join('\n') + '\n',
  );
  return result.failed === 0 && fromBackup && caughtUp ? 0 : 1;
}

async function cleanup(): Promise<void> {
  await Promise.all(processes.map((p) => p.stop().catch(() => null)));
  await agent.close();
}

runScenario(main, cleanup);
