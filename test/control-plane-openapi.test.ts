// The control plane's OpenAPI file describes exactly the routes the control plane serves: no more, no fewer.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { repoRoot } from '../runtime/assets/repo-root.ts';

test('docs/control-plane.openapi.yaml lists every route of runtime/control-plane/app.ts, and only those', () => {
  const spec = parse(readFileSync(join(repoRoot(), 'docs', 'control-plane.openapi.yaml'), 'utf8')) as {
    paths: Record<string, Record<string, unknown>>;
  };
  const documented = new Set<string>();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of Object.keys(item)) if (method !== 'parameters') documented.add(`${method.toUpperCase()} ${path}`);
  }
  // The routes as the source declares them (`app.get('/admin/apis/:id', ...)`), in OpenAPI's path syntax.
  const source = readFileSync(join(repoRoot(), 'runtime', 'control-plane', 'app.ts'), 'utf8');
  const served = new Set<string>();
  for (const m of source.matchAll(/app\.(get|put|post|delete)\('([^']+)'/g)) {
    served.add(`${m[1]!.toUpperCase()} ${m[2]!.replace(/:([a-z0-9]+)/gi, '{$1}')}`);
  }
  assert.ok(served.size >= 15, `found ${served.size} routes in app.ts`);
  assert.deepEqual([...documented].sort(), [...served].sort());
});
