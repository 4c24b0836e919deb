// What a module's imports and exports must look like beyond their names and kinds (abi/policy-abi.md, sections 1, 2
// and 4). The JS API cannot see signatures, and a JS host function accepts any: without these checks a module importing
// a host function this gateway lacks (built for a later ABI), or declaring one with other parameters, or exporting a
// handler of another shape, would load and then fail, or misread its arguments, on every call.

import { DESCRIBE_EXPORT, EXPORT_SIGNATURE, HOST_FUNCTIONS, HOST_MODULE, KERNEL_FUNCTIONS, KERNEL_MODULE, PHASES, PHASE_EXPORTS } from './constants.ts';
import type { FunctionSignatures } from './wasm-binary.ts';

/** A signature that does not match the ABI: the import or export it is about, and what the module declares. */
export interface SignatureProblem {
  message: string;
  import?: { module: string; name: string };
  export?: string;
  /** The module's declaration: a function type as the ABI writes them (`(i32) -> i32`), or the kind of a non-function. */
  declared?: string;
}

/** One problem for each import of the host or kernel modules, and each called export, that does not match the ABI. */
export function signatureProblems(found: FunctionSignatures): SignatureProblem[] {
  const problems: SignatureProblem[] = [];
  for (const item of found.imports) {
    if (item.module !== HOST_MODULE && item.module !== KERNEL_MODULE) continue; // other modules: module-check.ts
    if (item.kind === 'memory') continue; // module-check.ts says a policy defines its own
    const what = `import ${item.module}.${item.name}`;
    const about = { import: { module: item.module, name: item.name } };
    if (item.kind !== 'function') {
      problems.push({ ...about, declared: item.kind, message: `${what} (${item.kind}): only functions can be imported from "${item.module}"` });
      continue;
    }
    const table = item.module === HOST_MODULE ? HOST_FUNCTIONS : KERNEL_FUNCTIONS;
    const expected = table[item.name];
    if (expected === undefined) {
      problems.push({
        ...about,
        message:
          item.module === HOST_MODULE
            ? `${what}: this gateway has no such host function (it has ${Object.keys(table).join(', ')}); a module built for a later ABI version needs a later gateway`
            : `${what}: the Extism kernel has no such function`,
      });
    } else if (item.signature !== expected) {
      problems.push({ ...about, declared: item.signature ?? undefined, message: `${what}: declared as ${item.signature}, but it is ${expected}` });
    }
  }
  for (const name of [DESCRIBE_EXPORT, ...PHASES.map((p) => PHASE_EXPORTS[p])]) {
    const signature = found.exports.get(name);
    if (signature !== undefined && signature !== EXPORT_SIGNATURE) {
      problems.push({ export: name, declared: signature, message: `export ${name}: declared as ${signature}, but the host calls it as ${EXPORT_SIGNATURE}` });
    }
  }
  return problems;
}
