// Reads a Dockerfile the way `docker build` does, as far as the deployment tests need: parser directives, comments,
// line continuations, stages, flags (`--from=build`), exec form (JSON arrays) and ENV pairs. No Docker engine needed.

export interface Instruction {
  keyword: string;
  /** What follows the keyword and its flags, continuations joined. */
  args: string;
  /** `--from=build` and the like, before the arguments. */
  flags: Record<string, string>;
  /** The JSON array of exec form (`["node", "main.js"]`), else null. */
  exec: string[] | null;
  line: number;
}

export interface Stage {
  image: string;
  name: string | null;
  instructions: Instruction[];
}

export interface Dockerfile {
  directives: Record<string, string>;
  stages: Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split('\n');
  const directives: Record<string, string> = {};
  let i = 0;
  // Parser directives: `# name=value` lines at the very top.
  for (; i < lines.length; i++) {
    const m = /^#\s*([a-z]+)\s*=\s*(\S+)\s*$/i.exec(lines[i]!);
    if (!m) break;
    directives[m[1]!.toLowerCase()] = m[2]!;
  }
  const stages: Stage[] = [];
  while (i < lines.length) {
    const start = i;
    let logical = '';
    // A logical line: physical lines ending in `\` continue; comment lines inside it are dropped, as Docker does.
    for (; i < lines.length; i++) {
      const raw = lines[i]!;
      if (logical !== '' && /^\s*#/.test(raw)) continue;
      const continued = /\\\s*$/.test(raw);
      logical += continued ? raw.replace(/\\\s*$/, '') : raw;
      if (!continued) {
        i++;
        break;
      }
    }
    const trimmed = logical.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const [, keyword = '', rest = ''] = /^(\S+)\s*([\s\S]*)$/.exec(trimmed) ?? [];
    const instruction = withFlags(keyword.toUpperCase(), rest, start + 1);
    if (instruction.keyword === 'FROM') {
      const [image = '', as, name] = instruction.args.split(/\s+/);
      stages.push({ image, name: as?.toUpperCase() === 'AS' ? (name ?? null) : null, instructions: [] });
      continue;
    }
    if (stages.length === 0) throw new Error(`line ${start + 1}: ${instruction.keyword} before the first FROM`);
    stages.at(-1)!.instructions.push(instruction);
  }
  return { directives, stages };
}

function withFlags(keyword: string, rest: string, line: number): Instruction {
  const flags: Record<string, string> = {};
  let args = rest;
  for (let m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(args); m; m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(args)) {
    flags[m[1]!] = m[2] ?? 'true';
    args = args.slice(m[0].length);
  }
  args = args.trim();
  // HEALTHCHECK's own command follows CMD.
  const command = keyword === 'HEALTHCHECK' ? args.replace(/^CMD\s+/, '') : args;
  let exec: string[] | null = null;
  if (command.startsWith('[')) {
    const parsed = JSON.parse(command) as unknown;
    if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === 'string')) throw new Error(`line ${line}: exec form must be an array of strings`);
    exec = parsed;
  }
  return { keyword, args, flags, exec, line };
}

/** The name=value pairs of ENV instructions (both `ENV a=b c="d e"` and the old `ENV a b`). */
export function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of stage.instructions.filter((x) => x.keyword === 'ENV')) {
    const tokens = ins.args.match(/(?:[^\s"]+|"[^"]*")+/g) ?? [];
    if (tokens.length >= 2 && !tokens[0]!.includes('=')) {
      env[tokens[0]!] = unquote(ins.args.slice(tokens[0]!.length).trim());
      continue;
    }
    for (const token of tokens) {
      const eq = token.indexOf('=');
      if (eq > 0) env[token.slice(0, eq)] = unquote(token.slice(eq + 1));
    }
  }
  return env;
}

function unquote(value: string): string {
  return value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

/** The instructions of one kind in a stage, in order. */
export function instructions(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((x) => x.keyword === keyword);
}

/**
 * Whether `.dockerignore` patterns leave `path` (relative to the context) out. Patterns as Docker reads them: `*`,
 * `?`, `**`, a leading `!` to take a path back; a pattern matching a folder leaves out everything in it.
 */
export function dockerIgnores(patterns: string[], path: string): boolean {
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = (negated ? raw.slice(1) : raw).replace(/^\/+|\/+$/g, '');
    const regex = new RegExp(`^${globToRegex(pattern)}(?:/.*)?$`);
    if (regex.test(path)) ignored = !negated;
  }
  return ignored;
}

/** `**` is any number of folders (none included), `*` and `?` stay within one path segment. */
function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (glob.startsWith('**/', i)) {
      out += '(?:.*/)?';
      i += 2;
    } else if (glob.startsWith('**', i)) {
      out += '.*';
      i += 1;
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return out;
}

/** The patterns of a .dockerignore text: comments and blank lines dropped. */
export function dockerIgnorePatterns(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}
