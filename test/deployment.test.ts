// The deployment files (deploy/, .dockerignore), checked without a container engine or a Kubernetes cluster: the
// Dockerfiles by their structure (test/containers.test.ts builds and runs the images, in npm run test:containers), the
// Kubernetes manifests against the Kubernetes API's own schemas (the kubernetes-models validators) and against what
// the gateway and the control plane actually read and serve.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { Redis } from 'ioredis';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { isDeno } from '../runtime/adapters/index.ts';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { adminApp } from '../runtime/server/app.ts';
import { STATUS_PATH, type Gateway } from '../runtime/gateway/gateway.ts';
import { MetricsRegistry } from '../runtime/telemetry/metrics.ts';
import { DEFAULT_BUNDLE } from '../scripts/lib/bundle.ts';
import { documentedCommands } from '../scripts/lib/containers.ts';
import { dockerIgnorePatterns, dockerIgnores, envOf, instructions, parseDockerfile, type Dockerfile, type Stage } from './support/dockerfile.ts';
import { tempDir } from './support/gateway-process.ts';
import { freePort } from './support/ports.ts';
import { redisAvailable } from './support/redis-process.ts';
import { send } from './support/requests.ts';

const root = repoRoot();
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const version = (JSON.parse(read('package.json')) as { version: string }).version;

/** The GATEHOUSE_* variables a program reads: every name its sources mention. */
function variablesIn(...files: string[]): Set<string> {
  return new Set(files.flatMap((f) => read(f).match(/\bGATEHOUSE_[A-Z0-9_]+\b/g) ?? []));
}
const gatewayVariables = variablesIn('runtime/entry/gateway.ts', 'runtime/telemetry/appinsights.ts');
const controlPlaneVariables = variablesIn('runtime/entry/control-plane.ts');

// ---------------------------------------------------------------------------------------------------------------
// Container images

interface ImageSpec {
  file: string;
  ports: string[];
  /** The folder the image keeps its state in, and the variable that names it to the program. */
  volume: string;
  volumeVariable: string;
  healthPath: string;
  variables: Set<string>;
}

const images: ImageSpec[] = [
  {
    file: 'deploy/docker/gateway.Dockerfile',
    // 8082: the admin listener, on 127.0.0.1 in the container unless GATEHOUSE_ADMIN_HOST is set.
    ports: ['8080', '8081', '8082'],
    volume: '/var/lib/gatehouse/backup',
    volumeVariable: 'GATEHOUSE_BACKUP_DIR',
    healthPath: STATUS_PATH,
    variables: gatewayVariables,
  },
  {
    file: 'deploy/docker/control-plane.Dockerfile',
    ports: ['7070'],
    volume: '/var/lib/gatehouse-control-plane',
    volumeVariable: 'GATEHOUSE_CP_DATA_DIR',
    healthPath: '/status',
    variables: controlPlaneVariables,
  },
];

const SECRET_NAME = /TOKEN|KEY|PASSWORD|SECRET|CONNECTION_STRING|CREDENTIAL/;
const ignorePatterns = dockerIgnorePatterns(read('.dockerignore'));

/** Where the node images keep Node, and where the images put it. */
const NODE_BINARY = '/usr/local/bin/node';

function finalStage(d: Dockerfile): Stage {
  return d.stages.at(-1)!;
}

describe('container images (Dockerfiles; built and run by npm run test:containers)', () => {
  for (const spec of images) {
    const dockerfile = parseDockerfile(read(spec.file));
    const last = finalStage(dockerfile);
    const build = dockerfile.stages.find((s) => s.name === 'build');

    describe(spec.file, () => {
      test('built on a Node version the package supports, pinned; run on a pinned Debian with the build stage\'s Node binary', () => {
        assert.ok(build && dockerfile.stages.length === 2, 'a build stage and the image');
        const m = /^node:(\d+)\.(\d+)\.(\d+)-[a-z0-9-]+$/.exec(build.image);
        assert.ok(m, `${build.image}: node:<major>.<minor>.<patch>-<variant>, not a moving tag`);
        const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node;
        assert.ok(Number(m[1]) >= Number(/\d+/.exec(engines)![0]), `${build.image} satisfies engines ${engines}`);
        assert.match(last.image, /^debian:\d+\.\d+-slim$/, `${last.image}: debian:<major>.<minor>-slim, not a moving tag`);
        // One Node for building and running: the image's is the build stage's binary, copied before anything runs.
        const [first] = last.instructions;
        assert.equal(first?.keyword, 'COPY');
        assert.deepEqual([first!.flags.from, ...first!.args.split(/\s+/)], ['build', NODE_BINARY, NODE_BINARY]);
      });

      test('runs as a non-root numeric user that owns only its state folder', () => {
        const users = instructions(last, 'USER');
        assert.equal(users.length, 1);
        const m = /^(\d+):(\d+)$/.exec(users[0]!.args);
        assert.ok(m, `USER ${users[0]!.args}: a numeric uid:gid (Kubernetes runAsNonRoot can check only numbers)`);
        assert.notEqual(m[1], '0');
        const run = instructions(last, 'RUN').map((r) => r.args).join('\n');
        assert.match(run, new RegExp(`chown ${m[1]}:${m[2]} ${spec.volume}\\b`), 'the state folder belongs to that user');
        assert.match(run, new RegExp(`chmod 0700 ${spec.volume}\\b`));
        assert.ok(instructions(last, 'USER')[0]!.line > Math.max(...instructions(last, 'COPY').map((c) => c.line)), 'files are copied as root (read-only to the user)');
      });

      test(`exposes ${spec.ports.join(' and ')}, keeps its state on a volume, and checks its health on ${spec.healthPath}`, () => {
        assert.deepEqual(instructions(last, 'EXPOSE').flatMap((e) => e.args.split(/\s+/)), spec.ports);
        const volumes = instructions(last, 'VOLUME').flatMap((v) => v.exec ?? v.args.split(/\s+/));
        assert.deepEqual(volumes, [spec.volume]);
        assert.equal(envOf(last)[spec.volumeVariable], spec.volume, `${spec.volumeVariable} names the volume`);
        const health = instructions(last, 'HEALTHCHECK');
        assert.equal(health.length, 1);
        assert.ok(health[0]!.exec, 'HEALTHCHECK CMD in exec form (no shell in between)');
        assert.ok(health[0]!.exec.join(' ').includes(`'${spec.healthPath}'`), `HEALTHCHECK asks ${spec.healthPath}`);
        assert.equal(instructions(last, 'STOPSIGNAL')[0]?.args, 'SIGTERM');
      });

      test('the entry point is in exec form (signals reach Node) and runs what the build stage made', () => {
        const entry = instructions(last, 'ENTRYPOINT');
        assert.equal(entry.length, 1);
        const exec = entry[0]!.exec;
        assert.ok(exec, 'ENTRYPOINT ["node", ...]');
        assert.equal(exec[0], 'node');
        const program = exec.at(-1)!;
        const copies = instructions(last, 'COPY').filter((c) => c.flags.from === 'build');
        const copied = copies.map((c) => c.args.split(/\s+/)).find(([, to]) => to !== undefined && program.startsWith(to));
        assert.ok(copied, `${program} is copied from the build stage`);
        const [from, to] = copied as [string, string];
        const source = `${from}${program.slice(to.length)}`.replace(/^\/src\//, '');
        if (spec.file.includes('gateway')) {
          assert.equal(source, DEFAULT_BUNDLE, 'the bundle npm run bundle writes');
          assert.match(instructions(build!, 'RUN').map((r) => r.args).join('\n'), /npm run bundle/);
        } else {
          assert.equal(source, 'dist/runtime/entry/control-plane.js');
          assert.match(instructions(build!, 'RUN').map((r) => r.args).join('\n'), /npm run build/);
          assert.match(read('scripts/build.mjs'), /'runtime\/entry\/control-plane\.ts'/, 'scripts/build.mjs (npm run build) compiles it');
        }
      });

      test('only production code and dependencies reach the image', () => {
        assert.ok(build, 'a stage named build');
        assert.equal(instructions(last, 'RUN').filter((r) => /\bnpm\b/.test(r.args)).length, 0, 'no npm in the image stage');
        const buildRuns = instructions(build!, 'RUN').map((r) => r.args).join('\n');
        assert.match(buildRuns, /npm ci\b/, 'dependencies as package-lock.json pins them');
        const copied = instructions(last, 'COPY').map((c) => c.args.split(/\s+/)[0]!).filter((c) => c !== NODE_BINARY);
        if (spec.file.includes('gateway')) {
          assert.deepEqual(copied, [`/src/${DEFAULT_BUNDLE}`], 'Node and the single file, nothing else');
        } else {
          assert.match(buildRuns, /npm prune --omit=dev/, 'dev dependencies are removed before node_modules is copied');
          assert.ok(copied.includes('/src/node_modules'));
          // policies/ and sdk/: the control plane builds the built-in policies to check configurations against them.
          assert.ok(copied.every((c) => /^\/src\/(package\.json|node_modules|dist\/runtime|dist\/chunks|policies|sdk)$/.test(c)), copied.join(', '));
        }
      });

      test('no secret is baked in, and the variables it sets are ones the program reads', () => {
        for (const stage of dockerfile.stages) {
          for (const name of Object.keys(envOf(stage))) {
            assert.doesNotMatch(name, SECRET_NAME, `${name}: secrets come from the environment at run time`);
            if (name.startsWith('GATEHOUSE_')) assert.ok(spec.variables.has(name), `${name} is read by the program`);
          }
          for (const arg of instructions(stage, 'ARG')) assert.doesNotMatch(arg.args, SECRET_NAME);
        }
        for (const path of ['.data/control-plane/control-plane.db', '.data/control-plane/admin-token', 'tls/gateway.key', 'certs/ca.pem', '.env']) {
          assert.ok(dockerIgnores(ignorePatterns, path), `.dockerignore leaves out ${path}`);
        }
      });
    });
  }

  test("the control plane image's files run: its entry point, with only what the Dockerfile copies from the build", async () => {
    // The build stage's /src is this repository after `npm ci` (dist/ built by it); node_modules is linked rather than
    // copied, and holds the dev dependencies too, which the image's pruned copy would not.
    const dockerfile = parseDockerfile(read('deploy/docker/control-plane.Dockerfile'));
    const image = finalStage(dockerfile);
    const fsRoot = tempDir('gatehouse-cp-image-');
    const inImage = (path: string) => join(fsRoot, path);
    for (const copy of instructions(image, 'COPY')) {
      const [from, to] = copy.args.split(/\s+/) as [string, string];
      if (from === NODE_BINARY) continue; // the image's Node: this test runs the entry point with the suite's
      const source = join(root, from.replace(/^\/src\//, ''));
      mkdirSync(dirname(inImage(to)), { recursive: true });
      if (from.endsWith('/node_modules')) symlinkSync(source, inImage(to));
      else cpSync(source, inImage(to), { recursive: true });
    }
    const env = envOf(image);
    const dataDir = tempDir('gatehouse-cp-image-data-');
    const exec = instructions(image, 'ENTRYPOINT')[0]!.exec!;
    const workdir = instructions(image, 'WORKDIR').at(-1)!.args;
    const child = spawn(isDeno ? 'node' : process.execPath, exec.slice(1).map((a) => (a.startsWith('/') ? inImage(a) : a)), {
      cwd: inImage(workdir),
      // As the image sets them, but on a free port of 127.0.0.1 and a folder of the test's.
      env: { ...process.env, ...env, GATEHOUSE_CP_HOST: '127.0.0.1', GATEHOUSE_CP_PORT: '0', GATEHOUSE_CP_DATA_DIR: dataDir, GATEHOUSE_CP_POLICY_CACHE_DIR: join(dataDir, 'policy-builds') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<void>((r) => child.once('close', () => r()));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not listening within 30 s: ${err}`)), 30_000);
        child.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          const line = out.split('\n').find((l) => l.includes('"control plane listening"'));
          if (line) {
            clearTimeout(timer);
            resolve((JSON.parse(line) as { port: number }).port);
          }
        });
        child.once('close', (code) => reject(new Error(`exited with ${code}: ${err}`)));
      });
      const status = await send(`http://127.0.0.1:${port}`, '/status');
      assert.equal(status.status, 200, status.body);
      assert.ok(existsSync(join(dataDir, 'control-plane.db')), 'its database is in GATEHOUSE_CP_DATA_DIR');
      // It checks what it saves against the built-in policies, which the image holds.
      const saved = await send(`http://127.0.0.1:${port}`, '/admin/apis/limited', {
        method: 'PUT',
        headers: { authorization: `Bearer ${readFileSync(join(dataDir, 'admin-token'), 'utf8').trim()}`, 'content-type': 'application/json' },
        body: JSON.stringify({ pathPrefix: '/limited', backend: { url: 'builtin:echo' }, policies: { inbound: [{ policy: 'rate-limit', config: { calls: 5, renewalPeriod: 86400 } }] } }),
      });
      assert.equal(saved.status, 200, saved.body);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });

  test('the podman commands docs/deployment.md shows are the ones npm run test:containers runs, and it shows them all', () => {
    // Each line of the page's sh blocks that runs podman, continuations joined and end-of-line comments dropped.
    const shown = [...read('docs/deployment.md').matchAll(/^```sh\n([\s\S]*?)^```$/gm)]
      .flatMap((m) => m[1]!.replace(/\\\n\s*/g, ' ').split('\n'))
      .map((line) => line.replace(/\s+#\s.*$/, '').replace(/\s+/g, ' ').trim())
      .filter((line) => line.startsWith('podman '));
    const run = documentedCommands();
    for (const line of shown) assert.ok(run.includes(line), `docs/deployment.md shows a command the scripts do not run:\n${line}\nThey run:\n${run.join('\n')}`);
    for (const line of run) assert.ok(shown.includes(line), `docs/deployment.md does not show:\n${line}`);
  });

  test('.dockerignore keeps what the builds need and leaves out what they make', () => {
    for (const path of ['package.json', 'package-lock.json', 'runtime/entry/gateway.ts', 'runtime/config/default.yaml', 'sdk/package.json', 'sdk/assembly/index.ts', 'policies/rate-limit/policy.ts', 'scripts/build.mjs', 'scripts/lib/bundle.ts', 'test/bundle.test.ts']) {
      assert.ok(!dockerIgnores(ignorePatterns, path), `${path} is in the build context`);
    }
    for (const path of ['node_modules/yaml/package.json', 'sdk/node_modules/x', 'dist/runtime/entry/gateway.js', '.cache/policy-builds/x', '.git/HEAD']) {
      assert.ok(dockerIgnores(ignorePatterns, path), `${path} is left out`);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Kubernetes

// Manifests are read as plain JSON. Their shape is checked by the Kubernetes schemas (the first tests); the checks after
// them read fields by path, with `any` where a full type would only restate those schemas.
type Obj = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: any };

/** The validator of each kind the manifests use: the Kubernetes OpenAPI schema, compiled (kubernetes-models). */
const MODELS: Record<string, new (o: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
};

/** Every object of the YAML files `files` (multi-document) of the folder `dir`. */
function manifests(dir: string, files: string[]): Obj[] {
  return files.flatMap((file) =>
    parseAllDocuments(read(`${dir}/${file}`)).map((doc) => {
      assert.equal(doc.errors.length, 0, `${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      return doc.toJSON() as Obj;
    }),
  );
}

/** Each object is valid against the Kubernetes API schema of its kind. */
function assertSchemaValid(objs: Obj[]): void {
  for (const o of objs) {
    const Model = MODELS[`${o.apiVersion}/${o.kind}`];
    assert.ok(Model, `a schema for ${o.apiVersion} ${o.kind} (add its kubernetes-models class)`);
    assert.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.name}`);
  }
}

type Rendered = Obj & { metadata: { namespace?: string } };
/** `kubectl kustomize <dir>`, parsed; null where kubectl is not installed. */
function kustomize(dir: string): Rendered[] | null {
  const kubectl = spawnSync('kubectl', ['kustomize', join(root, dir)], { encoding: 'utf8' });
  if (kubectl.error && (kubectl.error as NodeJS.ErrnoException).code === 'ENOENT') return null;
  assert.equal(kubectl.status, 0, kubectl.stderr);
  return parseAllDocuments(kubectl.stdout).map((d) => d.toJSON() as Rendered);
}
const key = (o: Obj) => `${o.kind}/${o.metadata.name}`;

const k8sDir = 'deploy/kubernetes';
const kustomization = parseYaml(read(`${k8sDir}/kustomization.yaml`)) as { namespace: string; resources: string[] };
const objects: Obj[] = manifests(k8sDir, kustomization.resources);
const findIn = (objs: Obj[], kind: string, name: string): Obj => {
  const found = objs.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `${kind} ${name}`);
  return found;
};
const find = (kind: string, name: string): Obj => findIn(objects, kind, name);
const isWorkload = (o: Obj) => o.kind === 'StatefulSet' || o.kind === 'Deployment';
const workloads = () => objects.filter(isWorkload);
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

type EnvVar = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean }; configMapKeyRef?: { name: string; key: string; optional?: boolean } } };
const containerOf = (workload: Obj) => workload.spec.template.spec.containers[0] as {
  image: string;
  env: EnvVar[];
  ports: { name: string; containerPort: number }[];
  readinessProbe: any;
  livenessProbe: any;
  startupProbe?: any;
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: any;
  volumeMounts: { name: string; mountPath: string }[];
};
const envValue = (env: EnvVar[], name: string) => env.find((e) => e.name === name)?.value;

describe('Kubernetes manifests (deploy/kubernetes; no cluster here)', () => {
  test('kustomization.yaml lists every manifest, and they name one namespace', () => {
    const files = readdirSync(join(root, k8sDir)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
    assert.deepEqual([...kustomization.resources].sort(), files);
    assert.equal(kustomization.namespace, 'gatehouse');
    assert.ok(objects.every((o) => !('namespace' in o.metadata)), 'the namespace comes from kustomization.yaml only');
    assert.equal(find('Namespace', 'gatehouse').metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
  });

  test('every object is valid against the Kubernetes API schema of its kind', () => {
    assertSchemaValid(objects);
    // The validators do find mistakes (a guard against a model that accepts anything).
    const broken = structuredClone(find('Deployment', 'gatehouse-gateway'));
    broken.spec.replicas = 'two';
    broken.spec.template.spec.containers[0].resources.requests.memory = 'lots';
    assert.throws(() => new Deployment(broken).validate(), /replicas must be integer[\s\S]*memory/);
  });

  test('Services, the disruption budget and network policies select pods that exist, on ports they have', () => {
    for (const o of objects.filter((x) => ['Service', 'PodDisruptionBudget', 'NetworkPolicy'].includes(x.kind))) {
      const selector = (o.kind === 'Service' ? o.spec.selector : o.kind === 'NetworkPolicy' ? o.spec.podSelector.matchLabels : o.spec.selector.matchLabels) as Record<string, string>;
      const selected = workloads().filter((w) => matches(selector, w.spec.template.metadata.labels));
      assert.equal(selected.length, 1, `${o.kind} ${o.metadata.name} selects one workload`);
      const portNames = containerOf(selected[0]!).ports.map((p) => p.name);
      const targets: string[] =
        o.kind === 'Service' ? o.spec.ports.map((p: { targetPort: string }) => p.targetPort) : o.kind === 'NetworkPolicy' ? o.spec.ingress.flatMap((r: { ports: { port: string }[] }) => r.ports.map((p) => p.port)) : [];
      for (const target of targets) assert.ok(portNames.includes(target), `${o.kind} ${o.metadata.name}: port ${target} is a container port`);
      if (o.kind === 'NetworkPolicy') {
        // Peers by pod select one of these workloads; peers by namespace (monitoring) are checked with the gateways.
        for (const rule of o.spec.ingress) {
          for (const from of rule.from ?? []) {
            if (from.namespaceSelector) continue;
            assert.equal(workloads().filter((w) => matches(from.podSelector.matchLabels, w.spec.template.metadata.labels)).length, 1);
          }
        }
      }
    }
    for (const w of workloads()) assert.ok(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), `${w.metadata.name}: its selector matches its pods`);
  });

  describe('gateways', () => {
    const gateways = find('Deployment', 'gatehouse-gateway');
    const pod = gateways.spec.template.spec;
    const container = containerOf(gateways);

    test('at least 2, replaced one at a time (a new pod available before an old one goes), at most one taken away by a disruption', () => {
      assert.ok(gateways.spec.replicas >= 2);
      assert.deepEqual(gateways.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
      assert.ok(gateways.spec.minReadySeconds > 0, 'available: ready, and still so a while after');
      const pdb = find('PodDisruptionBudget', 'gatehouse-gateway');
      assert.ok(pdb.spec.maxUnavailable === 1 || pdb.spec.minAvailable === 1);
    });

    test('ready on the probe path; alive while /livez answers on the admin port, which listens on the pod\'s address; time to start', async () => {
      assert.deepEqual(container.readinessProbe.httpGet, { path: STATUS_PATH, port: 'http' });
      assert.equal(container.ports.find((p) => p.name === 'http')?.containerPort, 8080);
      assert.deepEqual(container.livenessProbe.httpGet, { path: '/livez', port: 'admin' });
      assert.equal(container.livenessProbe.tcpSocket, undefined);
      // The admin listener's default port (GATEHOUSE_ADMIN_PORT is not set), on every interface rather than 127.0.0.1.
      assert.equal(container.ports.find((p) => p.name === 'admin')?.containerPort, 8082);
      assert.equal(envValue(container.env, 'GATEHOUSE_ADMIN_PORT'), undefined);
      assert.equal(envValue(container.env, 'GATEHOUSE_ADMIN_HOST'), '0.0.0.0');
      // The admin listener does serve that path.
      const livez = await adminApp({} as Gateway, new MetricsRegistry()).request('/livez');
      assert.equal(livez.status, 200);
      assert.deepEqual(container.startupProbe.httpGet, container.livenessProbe.httpGet, 'startup: the liveness check, given time');
      assert.ok(container.startupProbe.periodSeconds * container.startupProbe.failureThreshold >= 60);
    });

    test('Prometheus finds /metrics on the admin port by the pod annotations; no Service exposes that port', () => {
      const annotations = gateways.spec.template.metadata.annotations as Record<string, string>;
      const admin = container.ports.find((p) => p.name === 'admin')!;
      assert.deepEqual(
        { scrape: annotations['prometheus.io/scrape'], port: annotations['prometheus.io/port'], path: annotations['prometheus.io/path'] },
        { scrape: 'true', port: String(admin.containerPort), path: '/metrics' },
      );
      const services = objects.filter((o) => o.kind === 'Service' && matches(o.spec.selector, gateways.spec.template.metadata.labels));
      assert.deepEqual(services.map((s) => s.metadata.name), ['gatehouse-gateway']);
      for (const service of services) {
        for (const port of service.spec.ports as { targetPort: string | number }[]) {
          assert.ok(port.targetPort !== 'admin' && port.targetPort !== admin.containerPort, `${service.metadata.name} exposes the admin port`);
        }
      }
    });

    test('the network policy: the data port open to all, the admin port only to the monitoring namespace', () => {
      const policy = find('NetworkPolicy', 'gatehouse-gateway');
      assert.ok(matches(policy.spec.podSelector.matchLabels, gateways.spec.template.metadata.labels));
      assert.deepEqual(policy.spec.policyTypes, ['Ingress']);
      type Rule = { from?: { podSelector?: object; namespaceSelector?: { matchLabels?: Record<string, string> }; ipBlock?: object }[]; ports?: { port: string }[] };
      const rules = policy.spec.ingress as Rule[];
      // A rule without `ports` would open every port to its sources; one without `from` opens its ports to every source.
      assert.ok(rules.every((r) => r.ports !== undefined && r.ports.length > 0), 'each rule names its ports');
      const rulesFor = (port: string) => rules.filter((r) => r.ports!.some((p) => p.port === port));
      assert.ok(rulesFor('http').some((r) => r.from === undefined), 'the data port is open to all');
      const adminRules = rulesFor('admin');
      assert.ok(adminRules.length > 0, 'the admin port has a rule (else nothing reaches it: Prometheus cannot scrape)');
      for (const rule of adminRules) {
        assert.deepEqual(rule.from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
      }
      const portNames = container.ports.map((p) => p.name);
      for (const rule of rules) for (const p of rule.ports!) assert.ok(portNames.includes(p.port), `port ${p.port} is a container port`);
    });

    test('the kubelet waits for the shutdown delay and the drain before it kills', () => {
      const delay = Number(envValue(container.env, 'GATEHOUSE_SHUTDOWN_DELAY_MS'));
      const drain = Number(envValue(container.env, 'GATEHOUSE_SHUTDOWN_TIMEOUT_MS'));
      assert.ok(delay > 0 && drain > 0);
      assert.ok(pod.terminationGracePeriodSeconds * 1000 > delay + drain, `${pod.terminationGracePeriodSeconds} s > ${delay} + ${drain} ms`);
    });

    test('non-root, no privilege, read-only root filesystem, resources requested', () => {
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(pod.securityContext.runAsUser, 10001, 'the uid of the image (deploy/docker/gateway.Dockerfile)');
      assert.equal(pod.securityContext.fsGroup, 10001, 'the backup volume is writable by it');
      assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
      assert.equal(pod.automountServiceAccountToken, false);
      assert.deepEqual(container.securityContext, { allowPrivilegeEscalation: false, privileged: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
      assert.ok(container.resources.requests?.cpu && container.resources.requests.memory);
      assert.ok(container.resources.limits?.memory);
    });

    test('the backup is on one ReadWriteMany volume that every replica mounts, where GATEHOUSE_BACKUP_DIR says', () => {
      const volume = pod.volumes.find((v: { name: string }) => v.name === 'backup');
      assert.ok(volume?.persistentVolumeClaim, 'a claim, not a volume of the pod');
      const claim = find('PersistentVolumeClaim', volume.persistentVolumeClaim.claimName);
      assert.equal(claim.metadata.name, 'gatehouse-gateway-backup');
      assert.deepEqual(claim.spec.accessModes, ['ReadWriteMany'], 'mounted by pods on several nodes at once');
      assert.ok(claim.spec.resources.requests.storage);
      assert.equal(gateways.spec.volumeClaimTemplates, undefined);
      const mount = container.volumeMounts.find((m) => m.name === 'backup');
      assert.equal(mount?.mountPath, envValue(container.env, 'GATEHOUSE_BACKUP_DIR'));
      assert.equal(mount?.mountPath, images[0]!.volume, 'the image volume');
      assert.ok(pod.volumes.some((v: { name: string; emptyDir?: object }) => v.name === 'tmp' && v.emptyDir));
    });

    test('secrets come from Secrets; the control plane and Redis are reached by their Services', () => {
      const secret = (name: string) => container.env.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
      assert.deepEqual(secret('GATEHOUSE_BACKUP_KEY'), { name: 'gatehouse-gateway', key: 'backup-key' });
      assert.deepEqual(secret('GATEHOUSE_INSTRUMENTED_CACHE_KEY'), { name: 'gatehouse-gateway', key: 'instrumented-cache-key', optional: true });
      const cp = find('Service', 'gatehouse-control-plane');
      assert.equal(envValue(container.env, 'GATEHOUSE_CONFIG_URL'), `http://${cp.metadata.name}:${cp.spec.ports[0].port}`);
      const redis = find('Service', 'gatehouse-redis');
      assert.equal(envValue(container.env, 'GATEHOUSE_REDIS_URL'), `redis://:$(REDIS_PASSWORD)@${redis.metadata.name}:${redis.spec.ports[0].port}`);
      assert.deepEqual(secret('REDIS_PASSWORD'), { name: 'gatehouse-redis', key: 'password' });
      assert.equal(container.image, `gatehouse-gateway:${version}`);
    });

    test('the gateway token is a file of a Secret volume (GATEHOUSE_TOKEN_FILE), mounted whole so that a rotated token reaches it', () => {
      assert.equal(container.env.find((e) => e.name === 'GATEHOUSE_TOKEN'), undefined, 'not a variable: a variable keeps the token the pod started with');
      const file = envValue(container.env, 'GATEHOUSE_TOKEN_FILE')!;
      const mount = (container.volumeMounts as { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[]).find((m) => file.startsWith(`${m.mountPath}/`));
      assert.ok(mount, `a volume is mounted where ${file} is`);
      assert.equal(mount.subPath, undefined, 'a subPath mount is not updated when its Secret changes');
      assert.equal(mount.readOnly, true);
      const volume = pod.volumes.find((v: { name: string }) => v.name === mount.name);
      assert.equal(volume.secret.secretName, 'gatehouse-gateway-token');
      assert.deepEqual(volume.secret.items, [{ key: 'token', path: file.slice(mount.mountPath.length + 1) }]);
      assert.equal(volume.secret.defaultMode, 0o440, 'read by the gateway (its group, fsGroup), by nobody else');
    });
  });

  test('control plane: the StatefulSet is governed by a headless Service; gateways reach it through a ClusterIP Service', () => {
    const cp = find('StatefulSet', 'gatehouse-control-plane');
    const governing = find('Service', cp.spec.serviceName);
    assert.equal(governing.spec.clusterIP, 'None', `serviceName ${cp.spec.serviceName} names a headless Service`);
    assert.ok(matches(governing.spec.selector, cp.spec.template.metadata.labels));
    const gatewayUrl = new URL(envValue(containerOf(find('Deployment', 'gatehouse-gateway')).env, 'GATEHOUSE_CONFIG_URL')!);
    const used = find('Service', gatewayUrl.hostname);
    assert.notEqual(used.spec.clusterIP, 'None', 'the one the gateways use balances to ready pods through a stable address');
    assert.ok(matches(used.spec.selector, cp.spec.template.metadata.labels));
  });

  test('control plane: one pod on its own volume, listening on every interface, its admin token from a Secret', () => {
    const cp = find('StatefulSet', 'gatehouse-control-plane');
    const container = containerOf(cp);
    assert.equal(cp.spec.replicas, 1, 'one writer of its SQLite database');
    assert.equal(envValue(container.env, 'GATEHOUSE_CP_HOST'), '0.0.0.0');
    assert.equal(container.volumeMounts.find((m) => m.name === 'data')?.mountPath, envValue(container.env, 'GATEHOUSE_CP_DATA_DIR'));
    assert.deepEqual(container.env.find((e) => e.name === 'GATEHOUSE_ADMIN_TOKEN')?.valueFrom?.secretKeyRef, { name: 'gatehouse-control-plane', key: 'admin-token' });
    assert.deepEqual(container.readinessProbe.httpGet, { path: '/status', port: 'http' });
    assert.equal(container.image, `gatehouse-control-plane:${version}`);
  });

  test('Redis: password required, nothing on disk, replaced rather than rolled', () => {
    const redis = find('Deployment', 'gatehouse-redis');
    const container = containerOf(redis);
    const args = (redis.spec.template.spec.containers[0].args as string[]).join(' ');
    assert.match(args, /^redis-server \/run\/redis\/redis\.conf /, 'the password from the file the init container writes');
    assert.match(args, /--save {2}--appendonly no/);
    assert.equal(redis.spec.strategy.type, 'Recreate');
    assert.match(container.image, /^redis:\d+\.\d+\.\d+-[a-z]+$/, 'pinned');
  });

  test('no container has a Secret on its command line: the arguments are recorded with $(NAME) expanded', () => {
    for (const w of workloads()) {
      const pod = w.spec.template.spec;
      for (const c of [...(pod.initContainers ?? []), ...pod.containers] as { name: string; env?: EnvVar[]; command?: string[]; args?: string[] }[]) {
        const fromSecrets = new Set((c.env ?? []).filter((e) => e.valueFrom?.secretKeyRef).map((e) => e.name));
        for (const word of [...(c.command ?? []), ...(c.args ?? [])]) {
          for (const [, ref] of word.matchAll(/\$\(([A-Z0-9_]+)\)/g)) assert.ok(!fromSecrets.has(ref!), `${w.metadata.name}/${c.name}: $(${ref}) holds a Secret`);
        }
      }
    }
  });

  test('Redis: the init container writes the password to a file redis-server requires it from, on no command line (run here)', { skip: !redisAvailable() && 'redis-server is not installed (.ci/run installs it)' }, async () => {
    const pod = find('Deployment', 'gatehouse-redis').spec.template.spec;
    const [init] = pod.initContainers as { command: string[]; volumeMounts: { name: string; mountPath: string }[] }[];
    const server = pod.containers[0] as { args: string[]; volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[] };
    const configDir = init!.volumeMounts.find((m) => m.name === 'config')!.mountPath;
    assert.deepEqual(server.volumeMounts.find((m) => m.name === 'config'), { name: 'config', mountPath: configDir, readOnly: true });
    assert.equal(pod.volumes.find((v: { name: string }) => v.name === 'config').emptyDir.medium, 'Memory');
    // The manifest's commands, with the folder moved to a temporary one and the port to a free one of 127.0.0.1.
    const dir = tempDir('gatehouse-redis-conf-');
    const here = (words: string[]) => words.map((w) => w.replaceAll(configDir, dir));
    const password = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const written = spawnSync(here(init!.command)[0]!, here(init!.command).slice(1), { env: { PATH: process.env.PATH, REDIS_PASSWORD: password }, encoding: 'utf8' });
    assert.equal(written.status, 0, written.stderr);
    const conf = join(dir, 'redis.conf');
    assert.equal(statSync(conf).mode & 0o777, 0o600, 'readable by the redis user only');
    const port = await freePort();
    const [program, ...args] = here(server.args);
    const child = spawn(program!, [...args, '--port', String(port), '--bind', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const clients: Redis[] = [];
    try {
      let out = '';
      child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
      const ready = Date.now() + 10_000;
      while (!out.includes('Ready to accept connections')) {
        assert.ok(child.exitCode === null && Date.now() < ready, `redis-server did not start: ${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(!readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').includes(password), 'not in the process list');
      assert.ok(!here(init!.command).join(' ').includes(password), 'nor on the init container\'s command line');
      const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
      clients.push(client);
      await client.connect();
      await assert.rejects(client.ping(), /NOAUTH/);
      await assert.rejects(client.call('AUTH', 'wrong'), /WRONGPASS/);
      assert.equal(await client.call('AUTH', password), 'OK');
      assert.equal(await client.ping(), 'PONG');
      assert.deepEqual(await client.config('GET', 'maxmemory-policy'), ['maxmemory-policy', 'volatile-ttl'], 'the other arguments apply too');
    } finally {
      for (const c of clients) c.disconnect();
      child.kill('SIGKILL');
    }
  });

  test('variables: each is read by its program, and $(NAME) refers to a variable defined before it', () => {
    const programs: Record<string, Set<string>> = { 'gatehouse-gateway': gatewayVariables, 'gatehouse-control-plane': controlPlaneVariables };
    for (const w of workloads()) {
      const defined = new Set<string>();
      for (const e of containerOf(w).env) {
        if (e.name.startsWith('GATEHOUSE_')) assert.ok(programs[w.metadata.name]?.has(e.name), `${w.metadata.name}: ${e.name} is read by the program`);
        for (const [, ref] of (e.value ?? '').matchAll(/\$\(([A-Z0-9_]+)\)/g)) assert.ok(defined.has(ref!), `${e.name} uses $(${ref}) after it is defined`);
        defined.add(e.name);
      }
      for (const arg of (w.spec.template.spec.containers[0].args ?? []) as string[]) {
        for (const [, ref] of arg.matchAll(/\$\(([A-Z0-9_]+)\)/g)) assert.ok(defined.has(ref!), `${w.metadata.name}: args use $(${ref})`);
      }
    }
  });

  test('every Secret and key the pods need is one docs/deployment.md shows how to create', () => {
    const doc = read('docs/deployment.md');
    for (const w of workloads()) {
      const pod = w.spec.template.spec;
      const fromEnv = [...(pod.initContainers ?? []), ...pod.containers].flatMap((c: { env?: EnvVar[] }) => (c.env ?? []).map((e) => e.valueFrom?.secretKeyRef).filter((r) => r !== undefined));
      const fromVolumes = (pod.volumes ?? [])
        .filter((v: { secret?: object }) => v.secret)
        .flatMap((v: { secret: { secretName: string; items: { key: string }[] } }) => v.secret.items.map((i) => ({ name: v.secret.secretName, key: i.key })));
      for (const ref of [...fromEnv, ...fromVolumes] as { name: string; key: string }[]) {
        assert.match(doc, new RegExp(`kubectl create secret generic ${ref.name}\\b[^\\n]*(\\\\\\n[^\\n]*)*--from-(literal|file)=${ref.key}=`), `docs/deployment.md creates ${ref.name}/${ref.key}`);
      }
    }
  });

  test("the doc's images: list, appended to the kustomizations of a copy of deploy/, renames the images kubectl kustomize renders", (t) => {
    if (spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).error) return t.skip('kubectl is not installed');
    const doc = read('docs/deployment.md');
    const blocks = [...doc.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
    const copy = tempDir('gatehouse-deploy-copy-');
    cpSync(join(root, 'deploy'), join(copy, 'deploy'), { recursive: true });
    for (const file of ['deploy/kubernetes/kustomization.yaml', 'deploy/kubernetes-per-pod-backup/kustomization.yaml']) {
      const found = blocks.filter((b) => b.includes(`cat >> ${file}`));
      assert.equal(found.length, 1, `docs/deployment.md has a block that appends to ${file}`);
      const run = spawnSync('bash', ['-e', '-o', 'pipefail', '-c', found[0]!], { cwd: copy, encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
    }
    const images = (dir: string) => {
      const rendered = spawnSync('kubectl', ['kustomize', join(copy, dir)], { encoding: 'utf8' });
      assert.equal(rendered.status, 0, rendered.stderr);
      return parseAllDocuments(rendered.stdout)
        .map((d) => d.toJSON() as Obj)
        .filter(isWorkload)
        .flatMap((w) => [...(w.spec.template.spec.initContainers ?? []), ...w.spec.template.spec.containers].map((c: { image: string }) => `${w.metadata.name}: ${c.image}`))
        .sort();
    };
    const expected = () =>
      [
        `gatehouse-control-plane: registry.example.com/gatehouse-control-plane:${version}`,
        `gatehouse-gateway: registry.example.com/gatehouse-gateway:${version}`,
        ...['gatehouse-redis: redis', 'gatehouse-redis: redis'].map((r) => `${r}:${containerOf(find('Deployment', 'gatehouse-redis')).image.split(':')[1]}`),
      ].sort();
    assert.deepEqual(images('deploy/kubernetes'), expected());
    assert.deepEqual(images('deploy/kubernetes-per-pod-backup'), expected());
  });

  test('kubectl kustomize renders the same objects in the namespace', (t) => {
    const rendered = kustomize(k8sDir);
    if (!rendered) return t.skip('kubectl is not installed');
    assert.deepEqual(rendered.map(key).sort(), objects.map(key).sort());
    for (const o of rendered) if (o.kind !== 'Namespace') assert.equal(o.metadata.namespace, 'gatehouse', key(o));
  });
});

// The overlay for clusters without ReadWriteMany storage: the base, with the gateways as a StatefulSet whose pods each
// have a ReadWriteOnce backup volume. Its pod template is a copy of the base Deployment's: the tests keep them equal.
const overlayDir = 'deploy/kubernetes-per-pod-backup';
const overlay = parseYaml(read(`${overlayDir}/kustomization.yaml`)) as { namespace: string; resources: string[]; patches: { patch: string }[] };
const overlayFiles = overlay.resources.filter((r) => r.endsWith('.yaml'));
const overlayObjects = manifests(overlayDir, overlayFiles);
/** What must differ between the two pod templates: the backup volume, a claim in the base, a claim template in the overlay. */
function withoutBackupVolume(template: any): any {
  const copy = structuredClone(template);
  copy.spec.volumes = copy.spec.volumes.filter((v: { name: string }) => v.name !== 'backup');
  return copy;
}

describe(`the per-pod backup overlay (${overlayDir})`, () => {
  const base = find('Deployment', 'gatehouse-gateway');
  const statefulSet = findIn(overlayObjects, 'StatefulSet', 'gatehouse-gateway');

  test('builds on the base, in its namespace, and replaces its Deployment and shared claim with a StatefulSet and its headless Service', () => {
    const files = readdirSync(join(root, overlayDir)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
    assert.deepEqual([...overlay.resources].sort(), ['../kubernetes', ...files].sort());
    assert.equal(overlay.namespace, kustomization.namespace);
    assert.ok(overlayObjects.every((o) => !('namespace' in o.metadata)), 'the namespace comes from kustomization.yaml only');
    const deleted = overlay.patches.map((p) => parseYaml(p.patch) as Obj & { $patch?: string });
    assert.ok(deleted.every((d) => d.$patch === 'delete'));
    assert.deepEqual(deleted.map(key).sort(), ['Deployment/gatehouse-gateway', 'PersistentVolumeClaim/gatehouse-gateway-backup']);
    for (const d of deleted) assert.equal(findIn(objects, d.kind, d.metadata.name).apiVersion, d.apiVersion, `${key(d)} is the base's`);
    assert.deepEqual(overlayObjects.map(key).sort(), ['Service/gatehouse-gateway-pods', 'StatefulSet/gatehouse-gateway']);
    assertSchemaValid(overlayObjects);
  });

  test('a StatefulSet whose pods each get a ReadWriteOnce backup volume, started in parallel, replaced one at a time', () => {
    assert.equal(statefulSet.spec.replicas, base.spec.replicas);
    assert.deepEqual(statefulSet.spec.selector, base.spec.selector);
    assert.equal(statefulSet.spec.minReadySeconds, base.spec.minReadySeconds);
    assert.equal(statefulSet.spec.podManagementPolicy, 'Parallel');
    assert.equal(statefulSet.spec.updateStrategy.type, 'RollingUpdate');
    assert.deepEqual(statefulSet.spec.persistentVolumeClaimRetentionPolicy, { whenDeleted: 'Retain', whenScaled: 'Retain' });
    const headless = findIn(overlayObjects, 'Service', statefulSet.spec.serviceName);
    assert.equal(headless.spec.clusterIP, 'None', 'the governing Service is headless');
    assert.ok(matches(headless.spec.selector, statefulSet.spec.template.metadata.labels));
    const templates = statefulSet.spec.volumeClaimTemplates as Obj[];
    assert.deepEqual(templates.map((t) => t.metadata.name), ['backup'], 'the name of the volume the container mounts');
    assert.deepEqual(templates[0]!.spec.accessModes, ['ReadWriteOnce']);
    assert.equal(templates[0]!.spec.resources.requests.storage, find('PersistentVolumeClaim', 'gatehouse-gateway-backup').spec.resources.requests.storage);
  });

  test("its pod template is the base Deployment's but for the backup volume (they cannot drift apart)", () => {
    assert.ok(base.spec.template.spec.volumes.some((v: { name: string; persistentVolumeClaim?: object }) => v.name === 'backup' && v.persistentVolumeClaim));
    assert.ok(!statefulSet.spec.template.spec.volumes.some((v: { name: string }) => v.name === 'backup'), 'the backup volume comes from the claim template');
    assert.deepEqual(statefulSet.spec.template, withoutBackupVolume(base.spec.template));
  });

  test('kubectl kustomize renders it: schema-valid, in the namespace, the StatefulSet in place of the Deployment and its claim', (t) => {
    const rendered = kustomize(overlayDir);
    const renderedBase = kustomize(k8sDir);
    if (!rendered || !renderedBase) return t.skip('kubectl is not installed');
    assertSchemaValid(rendered);
    for (const o of rendered) if (o.kind !== 'Namespace') assert.equal(o.metadata.namespace, overlay.namespace, key(o));
    const expected = [...objects.map(key).filter((k) => k !== 'Deployment/gatehouse-gateway' && k !== 'PersistentVolumeClaim/gatehouse-gateway-backup'), ...overlayObjects.map(key)];
    assert.deepEqual(rendered.map(key).sort(), expected.sort());
    assert.ok(!rendered.some((o) => o.kind === 'PersistentVolumeClaim'), 'no claim shared by the gateways');
    const gateways = findIn(rendered, 'StatefulSet', 'gatehouse-gateway');
    assert.deepEqual(gateways.spec.volumeClaimTemplates.map((c: Obj) => c.spec.accessModes), [['ReadWriteOnce']]);
    assert.deepEqual(gateways.spec.template, withoutBackupVolume(findIn(renderedBase, 'Deployment', 'gatehouse-gateway').spec.template));
    // The Service, the disruption budget and the network policies of the base select the StatefulSet's pods.
    for (const o of rendered.filter((x) => ['Service', 'PodDisruptionBudget', 'NetworkPolicy'].includes(x.kind) && x.metadata.name.startsWith('gatehouse-gateway'))) {
      const selector = o.kind === 'Service' ? o.spec.selector : o.kind === 'NetworkPolicy' ? o.spec.podSelector.matchLabels : o.spec.selector.matchLabels;
      assert.deepEqual(rendered.filter(isWorkload).filter((w) => matches(selector, w.spec.template.metadata.labels)).map(key), ['StatefulSet/gatehouse-gateway'], key(o));
    }
  });
});

test('docs/deployment.md describes every file under deploy/', () => {
  const doc = read('docs/deployment.md');
  for (const dir of readdirSync(join(root, 'deploy')).map((d) => `deploy/${d}`)) {
    for (const f of readdirSync(join(root, dir))) assert.ok(doc.includes(`${dir}/${f}`) || doc.includes(f), `${dir}/${f} is described`);
  }
  assert.ok(existsSync(join(root, '.dockerignore')));
});
