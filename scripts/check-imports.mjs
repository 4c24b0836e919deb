// The house's walls, checked from the import lines of the sources (docs/architecture.md):
//   - no circle of imports between files, nor between rooms (a folder of runtime/ or sdk/, abi/): imports run one way;
//   - only the composition roots and the entry points choose a runtime adapter: nothing else imports runtime/adapters/,
//     and an adapter imports, outside its own folder, only the contract types it serves;
//   - policies/ import only the SDK; abi/ imports neither the runtime nor the SDK;
//   - runtime/ imports from sdk/ only the build library (sdk/build/), and sdk/ from runtime/ only the policy host's
//     public surface (runtime/policy-host/index.ts).
// Plain JavaScript, so that `npm test` and `deno task test` run it before anything is built.
//
//   node scripts/check-imports.mjs [--root DIR]     exits 1 and names each file and import that breaks a wall

import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const FOLDERS = ['abi', 'policies', 'runtime', 'sdk', 'scripts', 'test'];
const SOURCE = /\.(ts|mts|js|mjs)$/;

/** The files whose imports may name runtime/adapters/: they choose the adapter. */
const CHOOSES_ADAPTER = ['runtime/composition-root/', 'runtime/entry/', 'runtime/adapters/', 'test/', 'scripts/'];
/** What an adapter may import from outside runtime/adapters/: the contract types it serves, and undici's connector. */
const ADAPTER_CONTRACT = ['runtime/network/connector.ts', 'runtime/policy-host/index.ts', 'runtime/telemetry/log-sink.ts'];

function posix(path) {
  return path.split(sep).join('/');
}

function sourceFiles(root) {
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      if (name === 'node_modules' || name === 'fixtures' || name === 'dist' || name.startsWith('.')) continue;
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (SOURCE.test(name) && !name.endsWith('.d.ts')) out.push(posix(relative(root, path)));
    }
  };
  for (const folder of FOLDERS) if (existsSync(join(root, folder))) walk(join(root, folder));
  return out.sort();
}

// import x from '…', import type { x } from '…', export … from '…', import '…', import('…'); template-string text is
// cut out first, so that code a generator writes (sdk/cli/scaffold.ts) is not taken for imports of its own.
const IMPORT = /(?:^|[\s;}])(?:import|export)\s+(?:type\s+)?(?:[\w*${},\s]+?\s+from\s+)?['"]([^'"\n]+)['"]|import\(\s*['"]([^'"\n]+)['"]\s*\)/g;

function specifiers(text) {
  const code = text.replace(/`(?:\\[\s\S]|\$\{[^}]*\}|[^`\\])*`/g, '``').replace(/^\s*\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
  const found = [];
  for (const m of code.matchAll(IMPORT)) found.push(m[1] ?? m[2]);
  return found;
}

/** The file a relative specifier names, or null (a package, or nothing there). */
function resolveImport(root, from, spec) {
  if (!spec.startsWith('.')) return null;
  const target = posix(normalize(join(dirname(from), spec)));
  return existsSync(join(root, target)) ? target : null;
}

export function checkImports(root) {
  const files = sourceFiles(root);
  const edges = new Map();
  const problems = [];
  for (const file of files) {
    const targets = [];
    for (const spec of specifiers(readFileSync(join(root, file), 'utf8'))) {
      if (file.startsWith('policies/') && !spec.startsWith('.') && spec !== '@gatehouse/policy-sdk') {
        problems.push(`${file}: imports "${spec}": a policy imports only the SDK (@gatehouse/policy-sdk)`);
      }
      const target = resolveImport(root, file, spec);
      if (target === null) continue;
      targets.push(target);
      problems.push(...wallProblems(file, target, spec));
    }
    edges.set(file, [...new Set(targets)]);
  }
  for (const circle of circles(files, edges)) {
    const inCircle = new Set(circle);
    const ties = circle.flatMap((f) => edges.get(f).filter((t) => inCircle.has(t)).map((t) => `    ${f} -> ${t}`));
    problems.push(`a circle of ${circle.length} files:\n${ties.join('\n')}`);
  }
  // The same between rooms, once the files are free of circles (a file circle is one of rooms too, said once).
  if (problems.some((p) => p.startsWith('a circle of'))) return problems;
  const roomEdges = new Map();
  const ties = new Map();
  for (const [file, targets] of edges) {
    const from = roomOf(file);
    if (from === null) continue;
    for (const target of targets) {
      const to = roomOf(target);
      if (to === null || to === from) continue;
      if (!roomEdges.has(from)) roomEdges.set(from, new Set());
      roomEdges.get(from).add(to);
      const key = `${from} -> ${to}`;
      if (!ties.has(key)) ties.set(key, `${file} -> ${target}`);
    }
  }
  const rooms = [...new Set([...roomEdges.keys(), ...[...roomEdges.values()].flatMap((s) => [...s])])].sort();
  const roomGraph = new Map(rooms.map((r) => [r, [...(roomEdges.get(r) ?? [])]]));
  for (const circle of circles(rooms, roomGraph)) {
    const inCircle = new Set(circle);
    const lines = circle.flatMap((r) => roomGraph.get(r).filter((t) => inCircle.has(t)).map((t) => `    ${r}/ -> ${t}/ (${ties.get(`${r} -> ${t}`)})`));
    problems.push(`a circle of ${circle.length} rooms:\n${lines.join('\n')}`);
  }
  return problems;
}

/** A file's room: its folder under runtime/ or sdk/, or abi; null for tests, scripts and policies. */
function roomOf(file) {
  const parts = file.split('/');
  if ((parts[0] === 'runtime' || parts[0] === 'sdk') && parts.length > 2) return `${parts[0]}/${parts[1]}`;
  if (parts[0] === 'abi') return 'abi';
  return null;
}

function wallProblems(file, target, spec) {
  const out = [];
  const say = (why) => out.push(`${file}: imports "${spec}" (${target}): ${why}`);
  const within = (prefix) => target.startsWith(prefix);
  if (within('runtime/adapters/') && !CHOOSES_ADAPTER.some((p) => file.startsWith(p))) {
    say('only the composition roots (runtime/composition-root/) and the entry points (runtime/entry/) choose a runtime adapter; pass what you need from it in');
  }
  if (file.startsWith('runtime/adapters/') && !within('runtime/adapters/') && !ADAPTER_CONTRACT.includes(target)) {
    say(`an adapter imports only the contract types it serves (${ADAPTER_CONTRACT.join(', ')})`);
  }
  if (file.startsWith('policies/') && !within(dirname(file) + '/')) say('a policy imports only the SDK and its own folder');
  if (file.startsWith('abi/') && (within('runtime/') || within('sdk/'))) say('the policy contract (abi/) depends on neither the runtime nor the SDK');
  if (file.startsWith('runtime/') && within('sdk/') && !within('sdk/build/')) say('the runtime uses the SDK only through its build library (sdk/build/)');
  if (file.startsWith('sdk/') && within('runtime/') && target !== 'runtime/policy-host/index.ts') {
    say("the SDK reaches the runtime only through the policy host's public surface (runtime/policy-host/index.ts)");
  }
  return out;
}

/** Strongly connected components of more than one file, or of one file importing itself (Tarjan). */
function circles(files, edges) {
  let next = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const found = [];
  const visit = (v) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) !== index.get(v)) return;
    const component = [];
    for (let w = stack.pop(); ; w = stack.pop()) {
      onStack.delete(w);
      component.push(w);
      if (w === v) break;
    }
    if (component.length > 1 || (edges.get(v) ?? []).includes(v)) found.push(component.sort());
  };
  for (const f of files) if (!index.has(f)) visit(f);
  return found;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === normalize(process.argv[1])) {
  const at = process.argv.indexOf('--root');
  const root = at >= 0 ? process.argv[at + 1] : fileURLToPath(new URL('..', import.meta.url));
  const problems = checkImports(root);
  if (problems.length > 0) {
    process.stderr.write(`check-imports: ${problems.length} problem(s) with the imports under ${root}\n${problems.map((p) => `- ${p}`).join('\n')}\n`);
    process.exit(1);
  }
  process.stdout.write(`check-imports: ${sourceFiles(root).length} files, no circle of files or rooms, every wall holds\n`);
}
