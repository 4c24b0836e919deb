// URL templates of operations: `/orders/{orderId}/lines/{line}`; `{name}` matches exactly one non-empty segment.

export type TemplateSegment = { literal: string } | { param: string };

export interface UrlTemplate {
  source: string;
  segments: TemplateSegment[];
  /** Literal segments count: more literal templates win over more general ones. */
  literals: number;
}

/** Parses a template; throws with a message naming the problem (the config loader validates templates first). */
export function parseTemplate(source: string): UrlTemplate {
  if (!source.startsWith('/')) throw new Error(`template ${source} must start with /`);
  const segments: TemplateSegment[] = [];
  const names = new Set<string>();
  for (const part of splitPath(source)) {
    const m = /^\{([A-Za-z_][A-Za-z0-9_-]*)\}$/.exec(part);
    if (m) {
      if (names.has(m[1]!)) throw new Error(`template ${source} repeats parameter ${m[1]}`);
      names.add(m[1]!);
      segments.push({ param: m[1]! });
    } else if (part.includes('{') || part.includes('}')) {
      throw new Error(`template ${source}: a parameter must be a whole segment ({name}), not "${part}"`);
    } else {
      segments.push({ literal: part });
    }
  }
  return { source, segments, literals: segments.filter((s) => 'literal' in s).length };
}

/** Path segments without empty ones: `/a//b/` → [a, b]. */
export function splitPath(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

/** A parameter's segment that has no text: its percent-escapes are not UTF-8 (`%ff`), or a `%` escapes nothing. */
export class UndecodableParameter {
  constructor(
    readonly param: string,
    readonly segment: string,
  ) {}
}

/**
 * Matches path segments against a template; returns decoded parameters, null when the template does not match, or
 * the parameter whose segment cannot be decoded (a policy reads parameters as text: `%ff` has none, and passing the
 * raw segment on would make `%ff` and `%25ff` the same value).
 */
export function matchTemplate(template: UrlTemplate, segments: readonly string[]): Map<string, string> | UndecodableParameter | null {
  if (segments.length !== template.segments.length) return null;
  let params: Map<string, string> | null = null;
  for (let i = 0; i < segments.length; i++) {
    const t = template.segments[i]!;
    if ('literal' in t && t.literal !== segments[i]) return null;
  }
  for (let i = 0; i < segments.length; i++) {
    const t = template.segments[i]!;
    if ('literal' in t) continue;
    const s = segments[i]!;
    let value: string;
    try {
      value = decodeURIComponent(s);
    } catch {
      return new UndecodableParameter(t.param, s);
    }
    params ??= new Map();
    params.set(t.param, value);
  }
  return params ?? new Map();
}
