// The launchers of the repository's commands: gatehouse-policy (sdk/bin/) and gatehouse (the root package's bin/). The
// commands are TypeScript; Node runs the build in dist/, made by scripts/build.mjs, which a launcher runs first when the
// command's bundle is missing or older than its sources.
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

function findRepoRoot(start) {
  for (let dir = start; ; dir = path.dirname(dir)) {
    try {
      if (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).name === 'gatehouse') return dir;
    } catch {
      // no package.json here
    }
    if (path.dirname(dir) === dir) return null;
  }
}

/** Newest modification time of the TypeScript below `dirs`. */
function newestSource(dirs) {
  let newest = 0;
  const walk = (dir) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const dir of dirs) walk(dir);
  return newest;
}

/**
 * Runs `runCli(argv)` of the bundle `entry` (relative to the repository), building first when needed.
 * `launcherUrl`: the launcher's import.meta.url (npm links bins through node_modules/.bin: the link is resolved to find
 * the repository); `sources`: folders whose TypeScript the bundle is made from.
 */
export async function launch(command, launcherUrl, entry, sources) {
  const here = path.dirname(realpathSync(fileURLToPath(launcherUrl)));
  const root = findRepoRoot(here);
  if (!root) {
    // Installed from a packed tarball (or copied), the package is cut off from the checkout whose CLI it runs.
    process.stderr.write(
      `${command}: cannot find the gatehouse repository above ${here}: the command runs from a checkout of it; ` +
        `install the SDK as a link to the checkout's folder (npm install --save-dev file:/path/to/gatehouse/sdk), not from a tarball\n`,
    );
    process.exit(1);
  }
  const main = path.join(root, entry);
  const missing = !existsSync(main);
  if (missing || statSync(main).mtimeMs < newestSource(sources.map((s) => path.join(root, s)))) {
    process.stderr.write(`${command}: ${missing ? 'building' : 'rebuilding'} the CLI first (node scripts/build.mjs)...\n`);
    const built = spawnSync(process.execPath, [path.join(root, 'scripts', 'build.mjs')], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (built.status !== 0 || !existsSync(main)) {
      process.stderr.write(`${command}: the build failed; run "node scripts/build.mjs" in ${root} to see why\n`);
      process.exit(1);
    }
  }
  // The commands load @extism/extism, whose import of node:wasi prints an ExperimentalWarning even though policies run
  // without WASI; keep the command's output to what it has to say.
  const emitWarning = process.emitWarning;
  process.emitWarning = function (warning, ...rest) {
    const type = typeof rest[0] === 'string' ? rest[0] : rest[0]?.type;
    if (type === 'ExperimentalWarning' && String(warning).includes('WASI')) return;
    return emitWarning.call(process, warning, ...rest);
  };
  const { runCli } = await import(pathToFileURL(main).href);
  process.exitCode = await runCli(process.argv.slice(2));
}
