// npm run bench:container — the gateway image's size, and how soon a container of it serves.
//
// Builds the image with the documented command (scripts/lib/containers.ts; podman reuses the layers it has cached),
// then prints:
// - `gateway-image-mib`: the image's size as podman counts it (its layers, uncompressed), and on stderr its base's and
//   the two files it adds (Node and the bundle);
// - `gateway-container-ready-ms`: from spawning the documented `podman run` (the embedded default, on free ports of
//   127.0.0.1) to the first 200 on the probe path, the median of BENCH_CONTAINER_RUNS containers (5), each on a new
//   volume and removed after. The probe is polled every 20 ms from the moment `podman run -d` returns (it returns once
//   the container's process is started, well before the gateway listens).

import { randomBytes } from 'node:crypto';
import { freePort } from '../test/support/ports.ts';
import {
  GATEWAY_DOCKERFILE,
  GATEWAY_FILES,
  buildImage,
  fileBytes,
  gatewayRunArgs,
  imageBytes,
  imageTags,
  podman,
  podmanUnavailable,
  removeContainers,
  runtimeBase,
  waitForProbe,
} from './lib/containers.ts';
import { positiveFromEnv } from './lib/env.ts';
import { median } from './lib/median.ts';
import { runScenario } from './lib/run.ts';

const RUNS = positiveFromEnv('BENCH_CONTAINER_RUNS', 5);
const MIB = 1 << 20;
const made = { containers: [] as string[], volumes: [] as string[] };

async function main(): Promise<number> {
  const why = await podmanUnavailable();
  if (why) throw new Error(`podman cannot run containers here: ${why}`);
  const { gateway: image } = imageTags();
  await buildImage(GATEWAY_DOCKERFILE, image);
  const base = runtimeBase(GATEWAY_DOCKERFILE);
  const files = [...(await fileBytes(image, GATEWAY_FILES))].map(([path, bytes]) => `${path} ${(bytes / MIB).toFixed(1)} MiB`);
  const [imageSize, baseSize] = [await imageBytes(image), await imageBytes(base)];
  process.stderr.write(`${base}: ${(baseSize / MIB).toFixed(1)} MiB; added: ${files.join(', ')}\n`);

  const times: number[] = [];
  /** When `podman run -d` returned, in each run: the part of the time that is podman's. */
  const returned: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const suffix = `bench${process.pid}-${randomBytes(3).toString('hex')}`;
    const name = `gatehouse-gateway-${suffix}`;
    const backupVolume = `gatehouse-backup-${suffix}`;
    made.containers.push(name);
    made.volumes.push(backupVolume);
    const [httpPort, adminPort] = [await freePort(), await freePort()];
    const started = performance.now();
    await podman(gatewayRunArgs({ name, image, backupVolume, httpPort, adminPort }));
    returned.push(performance.now() - started);
    await waitForProbe(name, httpPort, { everyMs: 20 });
    times.push(performance.now() - started);
    await removeContainers([name], [backupVolume]);
  }
  process.stderr.write(`ready after (ms): ${times.map((t) => t.toFixed(0)).join(', ')}; podman run -d returned after: ${returned.map((t) => t.toFixed(0)).join(', ')}\n`);
  process.stdout.write(`gateway-image-mib: ${(imageSize / MIB).toFixed(1)}\ngateway-container-ready-ms: ${median(times).toFixed(0)}\n`);
  return 0;
}

runScenario(main, () => removeContainers(made.containers, made.volumes));
