// Policies as the repository (or an npm install of it) has them: each built-in is a folder of `<builtinDir>` with an
// AssemblyScript policy.ts, built with the SDK when first used (then served from the SDK's build cache), and `source:`
// entries are built the same way.

import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { buildPolicy, PolicyBuildError } from '../../sdk/build/index.ts';
import { BUILTIN_NAME, PolicySourceError, type BuiltinPolicy, type PolicySources } from './policy-sources.ts';

export class RepositoryPolicySources implements PolicySources {
  /**
   * @param builtinDir the folder of the built-in policies (the repository's `policies/`)
   * @param cacheDir the SDK's build cache; default `<repo>/.cache/policy-builds`
   */
  constructor(
    private readonly builtinDir: string,
    private readonly cacheDir?: string,
  ) {}

  builtinNames(): readonly string[] {
    return listBuiltins(this.builtinDir);
  }

  builtin(name: string): BuiltinPolicy | null {
    const file = join(this.builtinDir, name, 'policy.ts');
    if (!BUILTIN_NAME.test(name) || !existsSync(file)) return null;
    return {
      name,
      key: `source:${file}`,
      wasm: () => this.build(file),
      needs: () => needsOfBuiltin(this.builtinDir, name),
    };
  }

  buildSource(source: string): Promise<Uint8Array> {
    return this.build(source);
  }

  private async build(source: string): Promise<Uint8Array> {
    try {
      return (await buildPolicy({ source, cacheDir: this.cacheDir })).wasm;
    } catch (err) {
      if (!(err instanceof PolicyBuildError)) throw err;
      if (err.diagnostics.length === 0) throw new PolicySourceError([`the policy cannot be built: ${err.message}`]);
      throw new PolicySourceError(
        err.diagnostics.map((d) => {
          const at = d.line > 0 ? `${d.file}:${d.line}:${d.column}` : d.file;
          return `the policy cannot be built: ${at}: ${d.message}`;
        }),
      );
    }
  }
}

/** Built-in policy names: the folders of `dir` that hold a policy.ts. */
function listBuiltins(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'policy.ts')))
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
}

async function needsOfBuiltin(builtinDir: string, name: string): Promise<readonly string[]> {
  try {
    const policy = JSON.parse(await readFile(join(builtinDir, name, 'policy.json'), 'utf8')) as { needs?: unknown };
    return Array.isArray(policy.needs) ? policy.needs.filter((n): n is string => typeof n === 'string') : [];
  } catch {
    return []; // the build reports a bad policy.json
  }
}
