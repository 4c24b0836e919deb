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

/** Matches path segments against a template; returns decoded parameters, or null. */
export function matchTemplate(template: UrlTemplate, segments: readonly string[]): Map<string, string> | null {
  if (segments.length !== template.segments.length) return null;
  let params: Map<string, string> | null = null;
  for (let i = 0; i < segments.length; i++) {
    const t = template.segments[i]!;
    const s = segments[i]!;
    if ('literal' in t) {
      if (t.literal !== s) return null;
    } else {
      params ??= new Map();
      params.set(t.param, safeDecode(s));
    }
  }
  return params ?? new Map();
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
