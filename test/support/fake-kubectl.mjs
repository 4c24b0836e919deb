#!/usr/bin/env node
// Stands in for kubectl where there is no cluster, for tests that run the shell blocks of docs/deployment.md as
// written. It knows the commands those blocks use, with the arguments they give, and refuses anything else (exit 1),
// so that a block changed to something this script does not model fails its test rather than passes untried:
//
//   port-forward -n <ns> svc/<name> <local>:<remote>   forwards 127.0.0.1:<local> to 127.0.0.1:$FAKE_KUBECTL_FORWARD_PORT
//   get secret <name> -n <ns> -o jsonpath={.data.<key>}   the key's value, base64 (as kubectl prints it)
//   create secret generic <name> -n <ns> (--from-file=<key>=<path> | --from-literal=<key>=<value>)...
//                                                      [--dry-run=client -o yaml]
//   create configmap <name> -n <ns> --from-file=<path>
//   apply -f -                                          a Secret or ConfigMap as `create --dry-run=client -o yaml` printed it
//
// The API server's objects are JSON files in $FAKE_KUBECTL_STATE (<kind>-<namespace>-<name>.json, data base64 as in a
// Secret); the test reads them there, as a kubelet would.

import { createConnection, createServer } from 'node:net';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const state = process.env.FAKE_KUBECTL_STATE;
if (!state) fail('FAKE_KUBECTL_STATE is not set');

function fail(message) {
  process.stderr.write(`fake kubectl: ${message}\n`);
  process.exit(1);
}

/** Takes `-n <ns>` (required: every command in the doc names the namespace) out of args. */
function namespaceOf(args) {
  const at = args.indexOf('-n');
  if (at < 0 || !args[at + 1]) fail(`no namespace (-n) in: ${args.join(' ')}`);
  const [, ns] = args.splice(at, 2);
  return ns;
}

const objectFile = (kind, ns, name) => join(state, `${kind.toLowerCase()}-${ns}-${name}.json`);

function store(object, { replace }) {
  const file = objectFile(object.kind, object.metadata.namespace, object.metadata.name);
  if (!replace && existsSync(file)) fail(`Error from server (AlreadyExists): ${object.kind.toLowerCase()}s "${object.metadata.name}" already exists`);
  writeFileSync(file, JSON.stringify(object));
  process.stdout.write(`${object.kind.toLowerCase()}/${object.metadata.name} ${replace ? 'configured' : 'created'}\n`);
}

function readSource(path) {
  try {
    return readFileSync(path);
  } catch (err) {
    fail(`error reading ${path}: ${err.message}`);
  }
}

const [command, ...args] = process.argv.slice(2);

if (command === 'port-forward') {
  namespaceOf(args);
  const [target, ports, ...rest] = args;
  const forwardTo = Number(process.env.FAKE_KUBECTL_FORWARD_PORT);
  if (!target?.startsWith('svc/') || !/^\d+:\d+$/.test(ports ?? '') || rest.length > 0) fail(`port-forward: unexpected ${args.join(' ')}`);
  if (!forwardTo) fail('FAKE_KUBECTL_FORWARD_PORT is not set');
  const local = Number(ports.split(':')[0]);
  const server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: forwardTo });
    client.pipe(upstream).pipe(client);
    const close = () => (client.destroy(), upstream.destroy());
    client.on('error', close);
    upstream.on('error', close);
  });
  server.on('error', (err) => fail(`port-forward: ${err.message}`));
  server.listen(local, '127.0.0.1', () => {
    writeFileSync(join(state, 'port-forward.pid'), String(process.pid));
    process.stdout.write(`Forwarding from 127.0.0.1:${local} -> ${ports.split(':')[1]}\n`);
  });
} else if (command === 'get') {
  const ns = namespaceOf(args);
  const [kind, name, o, jsonpath, ...rest] = args;
  const key = /^jsonpath=\{\.data\.([A-Za-z0-9._-]+)\}$/.exec(jsonpath ?? '')?.[1];
  if (kind !== 'secret' || !name || o !== '-o' || !key || rest.length > 0) fail(`get: unexpected ${args.join(' ')}`);
  const file = objectFile('Secret', ns, name);
  if (!existsSync(file)) fail(`Error from server (NotFound): secrets "${name}" not found`);
  process.stdout.write(JSON.parse(readFileSync(file, 'utf8')).data[key] ?? '');
} else if (command === 'create') {
  const ns = namespaceOf(args);
  const kind = args.shift();
  if (kind === 'secret' && args.shift() !== 'generic') fail('create secret: only generic Secrets');
  if (kind !== 'secret' && kind !== 'configmap') fail(`create: unexpected ${kind}`);
  const name = args.shift();
  let dryRun = false;
  const data = {};
  while (args.length > 0) {
    const arg = args.shift();
    let m;
    if ((m = /^--from-file=(?:([^=]+)=)?(.+)$/.exec(arg))) data[m[1] ?? basename(m[2])] = readSource(m[2]);
    else if ((m = /^--from-literal=([^=]+)=(.*)$/s.exec(arg))) data[m[1]] = Buffer.from(m[2]);
    else if (arg === '--dry-run=client' && args[0] === '-o' && args[1] === 'yaml') (dryRun = true), args.splice(0, 2);
    else fail(`create ${kind}: unexpected ${arg}`);
  }
  const object =
    kind === 'secret'
      ? { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.toString('base64')])) }
      : { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.toString('utf8')])) };
  // JSON is YAML: what `-o yaml` prints is read back by `apply -f -` alike.
  if (dryRun) process.stdout.write(`${JSON.stringify(object, null, 2)}\n`);
  else store(object, { replace: false });
} else if (command === 'apply') {
  if (args.join(' ') !== '-f -') fail(`apply: unexpected ${args.join(' ')}`);
  const input = readFileSync(0, 'utf8');
  if (input.trim() === '') fail('error: no objects passed to apply');
  store(JSON.parse(input), { replace: true });
} else {
  fail(`${command ?? '(nothing)'} is not a command this stand-in knows`);
}
