// npm run bench:extism — the measurements behind pinning @extism/extism at 2.0.0-rc13 (abi/policy-abi.md).
// Both versions run the same hand-written module side by side in one process:
//   extism-noop-median-us-<version>    a call of an empty export (1.0.3 with the reset() it needs after every call)
//   extism-input-bytes-seen-<version>  how many bytes a module sees when handed a 5-byte pooled Buffer
//   extism-calls-before-failure-1.0.3  calls of a block-allocating export, without reset(), before the plugin breaks

import { Buffer } from 'node:buffer';
import createRc from '@extism/extism';
import create103 from 'extism-1.0.3';
import { wat } from '../test/support/policies.ts';

const module = await WebAssembly.compile(
  (await wat(`(module
    (import "extism:host/env" "input_length" (func $input_length (result i64)))
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
    (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
    (memory (export "memory") 1)
    (func (export "noop") (result i32) (i32.const 0))
    ;; Outputs the input's length as 8 bytes: what the module was handed.
    (func (export "input_size") (result i32) (local $h i64)
      (local.set $h (call $alloc (i64.const 8)))
      (call $store_u64 (local.get $h) (call $input_length))
      (call $output_set (local.get $h) (i64.const 8))
      (i32.const 0))
    ;; Allocates and writes six kernel blocks, as a PDK call reading config and writing output typically does.
    (func (export "blocks") (result i32)
      (call $store_u64 (call $alloc (i64.const 16)) (i64.const 1)) (call $store_u64 (call $alloc (i64.const 16)) (i64.const 1))
      (call $store_u64 (call $alloc (i64.const 16)) (i64.const 1)) (call $store_u64 (call $alloc (i64.const 16)) (i64.const 1))
      (call $store_u64 (call $alloc (i64.const 16)) (i64.const 1)) (call $store_u64 (call $alloc (i64.const 16)) (i64.const 1))
      (i32.const 0)))`)) as Uint8Array<ArrayBuffer>,
);

type AnyPlugin = {
  call(name: string, input?: Uint8Array | string): Promise<{ bytes(): Uint8Array } | null>;
  reset?: () => Promise<boolean>;
};
const plugins: Record<string, () => Promise<AnyPlugin>> = {
  '2.0.0-rc13': async () => (await createRc({ wasm: [{ module }] }, { useWasi: false })) as unknown as AnyPlugin,
  '1.0.3': async () => (await create103({ wasm: [{ module }] } as never, { useWasi: false })) as unknown as AnyPlugin,
};

async function median(fn: () => Promise<unknown>, runs = 50_000): Promise<number> {
  for (let i = 0; i < 2_000; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  return samples.sort((a, b) => a - b)[runs >> 1]!;
}

const lines: string[] = [];
for (const [version, make] of Object.entries(plugins)) {
  const plugin = await make();
  const needsReset = version === '1.0.3';
  const us = await median(async () => {
    await plugin.call('noop');
    if (needsReset) await plugin.reset!();
  });
  lines.push(`extism-noop-median-us-${version}: ${us.toFixed(2)}`);
  Buffer.from('SOME-NEIGHBOURING-SECRET');
  const pooled = Buffer.from('hello');
  const seen = await plugin.call('input_size', pooled);
  lines.push(`extism-input-bytes-seen-${version}: ${new DataView(seen!.bytes().buffer).getBigUint64(0, true)}`);
}

const old = await plugins['1.0.3']!();
let calls = 0;
try {
  for (; calls < 100_000; calls++) await old.call('blocks');
  lines.push('extism-calls-before-failure-1.0.3: none in 100000');
} catch (err) {
  lines.push(`extism-calls-before-failure-1.0.3: ${calls} (${(err as Error).message.slice(0, 60)})`);
}
console.log(lines.join('\n'));
