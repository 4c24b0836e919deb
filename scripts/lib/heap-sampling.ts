// What a process allocates while something runs, by V8's sampling heap profiler over the inspector protocol: the
// process is started with `--inspect=127.0.0.1:<port>`, and the profile keeps the samples of objects that were
// collected since (both collectors), so it counts every allocation, not only what is still alive at the end.
// A sample stands for `SAMPLING_INTERVAL_BYTES` on average; over tens of thousands of requests the per-request figure
// is stable to a few per cent, and, unlike time, it does not depend on how busy the machine is.

import { connectInspector, frameSite, type CallFrame } from './inspector.ts';

const SAMPLING_INTERVAL_BYTES = 512;

interface SamplingNode {
  callFrame: CallFrame;
  selfSize: number;
  children: SamplingNode[];
}

/** Bytes allocated by each site (function and where it is), and in all. */
export interface AllocationProfile {
  totalBytes: number;
  sites: Map<string, number>;
}

/** Runs `during` with the profiler sampling in the process whose inspector listens on `port`. */
export async function sampleAllocations(inspectorPort: number, during: () => Promise<void>): Promise<AllocationProfile> {
  const inspector = await connectInspector(inspectorPort);
  const send = inspector.send;
  try {
    await send('HeapProfiler.enable');
    await send('HeapProfiler.startSampling', {
      samplingInterval: SAMPLING_INTERVAL_BYTES,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    await during();
    const { profile } = (await send('HeapProfiler.stopSampling')) as { profile: { head: SamplingNode } };
    return summarise(profile.head);
  } finally {
    inspector.close();
  }
}

function summarise(head: SamplingNode): AllocationProfile {
  const sites = new Map<string, number>();
  let totalBytes = 0;
  const stack = [head];
  while (stack.length > 0) {
    const node = stack.pop()!;
    totalBytes += node.selfSize;
    if (node.selfSize > 0) {
      const site = frameSite(node.callFrame);
      sites.set(site, (sites.get(site) ?? 0) + node.selfSize);
    }
    stack.push(...node.children);
  }
  return { totalBytes, sites };
}
