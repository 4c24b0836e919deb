// The format of policy.test.json, as data: the runner checks every file against it before running a case (a key it
// does not know is an error naming the key, where it is and the keys allowed there), and the tables of the format in
// sdk/README.md and docs/testing.md are generated from it (`caseFormatMarkdown`; test/policy-test-runner.test.ts fails
// when a page and the format differ), so that what is documented is what the runner reads.

/** The shape of one value in a test file. */
export type FieldSpec =
  | { type: 'string' | 'integer' | 'number' | 'boolean' | 'json' | 'null'; doc: string; enum?: readonly string[] }
  | { type: 'object'; doc: string; keys: Readonly<Record<string, FieldSpec>>; required?: readonly string[] }
  /** An object whose keys are names the author chooses (headers, variables), each value of `values`. */
  | { type: 'map'; doc: string; values: FieldSpec }
  | { type: 'array'; doc: string; items: FieldSpec }
  /** One of several shapes (a header given as text or as a list of values). */
  | { type: 'anyOf'; doc: string; options: readonly FieldSpec[] };

const text = (doc: string): FieldSpec => ({ type: 'string', doc });
const int = (doc: string): FieldSpec => ({ type: 'integer', doc });
const headers = (doc: string): FieldSpec => ({
  type: 'map',
  doc,
  values: { type: 'anyOf', doc: 'a value, or a list of values', options: [text('the value'), { type: 'array', doc: 'the values', items: text('a value') }] },
});
const matcher = (doc: string): FieldSpec => ({
  type: 'anyOf',
  doc,
  options: [
    text('the exact value'),
    { type: 'null', doc: 'absent' },
    { type: 'object', doc: 'a regular expression the value matches', keys: { matches: text('a regular expression (JavaScript syntax)') }, required: ['matches'] },
  ],
});
const bodyKeys = {
  body: text('the body as UTF-8 text'),
  bodyBase64: text('the body as base64, for bytes that are not text (instead of `body`)'),
};

const REQUEST: FieldSpec = {
  type: 'object',
  doc: 'the request the handler starts from',
  keys: {
    method: text('method (default `GET`)'),
    path: text('path, without the query (default `/`); starts with `apiPathPrefix`, as the client sent it'),
    query: text('raw query, without `?` (default empty)'),
    headers: headers('headers by name (a list for a header sent several times)'),
    ...bodyKeys,
    clientAddress: text('the client\'s address (default `127.0.0.1`)'),
    backendUrl: text('the API\'s backend URL the exchange reports (BACKEND_URL; default `http://backend.test`)'),
  },
};

const RESPONSE: FieldSpec = {
  type: 'object',
  doc: 'the response the handler starts from: the backend\'s answer in `outbound`, the error response in `on-error`',
  keys: { status: int('status (default 200)'), headers: headers('headers by name'), ...bodyKeys },
};

const HTTP_ANSWER: FieldSpec = {
  type: 'object',
  doc: 'a canned answer to the HTTP effect (`httpCall`); given only for URLs the `http` grant allows, as in a gateway',
  keys: {
    method: text('method it answers (default `GET`)'),
    url: text('the exact URL it answers'),
    status: int('status (default 200)'),
    headers: { type: 'map', doc: 'headers', values: text('a value') },
    body: text('body'),
    error: text('a network failure instead of an answer (`HttpResult.error`)'),
  },
  required: ['url'],
};

const HOSTS: FieldSpec = {
  type: 'object',
  doc: 'hosts and ports',
  keys: { allowedHosts: { type: 'array', doc: '`host:port`, `*.domain:port`, `*:port`', items: text('an entry') } },
  required: ['allowedHosts'],
};

const SUBSET = (doc: string): FieldSpec => ({ type: 'json', doc });

const EXPECT: FieldSpec = {
  type: 'object',
  doc: 'what must hold after the call (every key optional)',
  keys: {
    outcome: { type: 'string', doc: 'how the call ended', enum: ['continue', 'respond', 'fail', 'invalid-config'] },
    status: int('the response status'),
    error: text('a substring of the failure (or configuration error) message'),
    request: {
      type: 'object',
      doc: 'the request after the call',
      keys: {
        method: text('method'),
        path: text('path'),
        query: text('raw query'),
        headers: { type: 'map', doc: 'headers: a value, `null` for absent, or `{"matches": "regex"}`', values: matcher('expected value') },
        body: text('body as text'),
        backendUrl: text('where the request goes (BACKEND_URL after the call)'),
      },
    },
    response: {
      type: 'object',
      doc: 'the response after the call',
      keys: {
        status: int('status (same as `expect.status`)'),
        headers: { type: 'map', doc: 'headers: a value, `null` for absent, or `{"matches": "regex"}`', values: matcher('expected value') },
        body: text('the whole body, as text'),
        bodyContains: text('a substring of the body'),
      },
    },
    variables: { type: 'map', doc: 'variables after the call: a value, or `null` for absent', values: { type: 'anyOf', doc: 'value', options: [text('the value'), { type: 'null', doc: 'absent' }] } },
    logContains: text('a substring of some log line written during the call'),
    logs: {
      type: 'array',
      doc: 'log lines written during the call: each entry must match a line of its own, in order (other lines may come between)',
      items: {
        type: 'object',
        doc: 'a log line',
        keys: {
          level: { type: 'string', doc: 'level', enum: ['trace', 'debug', 'info', 'warn', 'error'] },
          contains: text('a substring of the message'),
          matches: text('a regular expression the message matches'),
          fields: SUBSET('fields the record has, with these values (deep subset)'),
        },
      },
    },
    metrics: {
      type: 'array',
      doc: 'metrics the call emitted (`emitMetric`), all of them, in order',
      items: {
        type: 'object',
        doc: 'an emission',
        keys: {
          name: text('metric name'),
          value: { type: 'number', doc: 'value added' },
          dimensions: { type: 'map', doc: 'its dimensions, all of them', values: text('a value') },
        },
        required: ['name'],
      },
    },
    effects: {
      type: 'array',
      doc: 'effects the call performed (counters, leases, meters, HTTP), all of them, in order',
      items: {
        type: 'object',
        doc: 'an effect',
        keys: {
          kind: { type: 'string', doc: 'kind', enum: ['counter', 'http', 'lease', 'meter'] },
          request: SUBSET('what the policy asked (deep subset of the effect request, e.g. `{"key": "user:alice"}`; a counter\'s key as the policy wrote it)'),
          result: SUBSET('what it got (deep subset of the result, e.g. `{"allowed": true, "count": 2}`)'),
        },
        required: ['kind'],
      },
    },
  },
};

/** What a call needs: the keys a case and each of its steps may give (a step's override the case's). */
const CALL_KEYS: Record<string, FieldSpec> = {
  phase: { type: 'string', doc: 'the handler called (default `inbound`)', enum: ['inbound', 'backend', 'outbound', 'on-error'] },
  request: REQUEST,
  response: RESPONSE,
  variables: { type: 'map', doc: 'variables set before the call (VARIABLE)', values: text('value') },
  routeParams: { type: 'map', doc: 'parameters of the matched URL template (ROUTE_PARAM)', values: text('value') },
  api: text('the API\'s name (CONTEXT `api`; default `test-api`)'),
  apiPathPrefix: text('the API\'s routed path prefix (CONTEXT `api-path-prefix`, e.g. `/shop`; default empty)'),
  operation: text('the operation (CONTEXT `operation`; default `test-operation`)'),
  requestId: text('the request id (CONTEXT `request-id`; default `test-request`)'),
  error: {
    type: 'object',
    doc: 'the failure `on-error` handles (ERROR)',
    keys: {
      source: { type: 'string', doc: 'what failed (default `policy`)', enum: ['policy', 'backend', 'gateway'] },
      reason: text('reason (default `trap`)'),
      message: text('message (default `test failure`)'),
      policy: text('the policy that failed (default empty)'),
    },
  },
  http: { type: 'array', doc: 'canned answers to the HTTP effect', items: HTTP_ANSWER },
  repeat: int('run the call this many times in a row (the expectations apply to the last)'),
  expect: EXPECT,
};

const STEP: FieldSpec = {
  type: 'object',
  doc: 'one call of a sequence, on the case\'s binding (counters and other effects carry over); `request` and `response` are merged key by key over the case\'s',
  keys: { name: text('what the step shows (in failure messages)'), ...CALL_KEYS },
};

export const CASE: FieldSpec = {
  type: 'object',
  doc: 'a test case: one binding of the policy, and a call (or `steps`)',
  keys: {
    name: text('what the case shows (the line of the report)'),
    config: { type: 'json', doc: 'the binding\'s configuration (checked against schema.json)' },
    namedValues: {
      type: 'map',
      doc: 'named values the configuration refers to as `{{name}}`, as a gateway\'s `namedValues` (a `secret` one is masked as `***` in the logs)',
      values: {
        type: 'anyOf',
        doc: 'the value',
        options: [text('the value'), { type: 'object', doc: 'a value', keys: { value: text('the value'), secret: { type: 'boolean', doc: 'masked in logs' } }, required: ['value'] }],
      },
    },
    grants: {
      type: 'object',
      doc: 'the binding\'s grants',
      keys: {
        counters: { type: 'boolean', doc: 'counters, leases, meters' },
        http: { ...HOSTS, doc: 'the HTTP effect, to these hosts and ports' } as FieldSpec,
        backend: { ...HOSTS, doc: 'writing BACKEND_URL to these hosts and ports' } as FieldSpec,
        wasi: { type: 'boolean', doc: 'WASI' },
        filesystem: { type: 'map', doc: 'guest path to host directory (through WASI)', values: text('host directory') },
      },
    },
    limits: {
      type: 'object',
      doc: 'the binding\'s limits (default: the gateway\'s)',
      keys: {
        memoryBytes: int('memory'),
        outputBytes: int('bytes handed to the host per call'),
        cpuMs: int('CPU per call'),
        logLines: int('log lines per call'),
        logBytes: int('log bytes per call'),
      },
    },
    ...CALL_KEYS,
    steps: { type: 'array', doc: 'calls in sequence on one binding, each with its own `expect` (instead of the case\'s `expect`)', items: STEP },
  },
};

export const TEST_FILE: FieldSpec = {
  type: 'object',
  doc: 'a test file',
  keys: { cases: { type: 'array', doc: 'the cases, run in order', items: CASE } },
  required: ['cases'],
};

/** A problem in a test file: where (a JSON path like `cases[2].expect.request.header`) and what. */
export interface FormatProblem {
  path: string;
  message: string;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The allowed key `key` was most likely meant to be (a typo, a plural or a case away), or null. */
export function nearestKey(key: string, allowed: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of allowed) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== null && bestDistance <= Math.max(1, Math.floor(key.length / 3)) ? best : null;
}

function describe(spec: FieldSpec): string {
  switch (spec.type) {
    case 'anyOf':
      return spec.options.map(describe).join(' or ');
    case 'map':
      return 'an object';
    case 'array':
      return 'a list';
    case 'json':
      return 'any JSON value';
    case 'integer':
      return 'an integer';
    case 'object':
      return 'an object';
    case 'null':
      return 'null';
    default:
      return spec.enum ? `one of ${spec.enum.map((e) => JSON.stringify(e)).join(', ')}` : `a ${spec.type}`;
  }
}

/** Whether `value` has the outer shape of `spec` (for choosing among the options of an `anyOf`). */
function shapeFits(spec: FieldSpec, value: unknown): boolean {
  switch (spec.type) {
    case 'json':
      return true;
    case 'null':
      return value === null;
    case 'string':
    case 'boolean':
      return typeof value === spec.type;
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'array':
      return Array.isArray(value);
    case 'object':
    case 'map':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    case 'anyOf':
      return spec.options.some((o) => shapeFits(o, value));
  }
}

const keyPath = (path: string, key: string) => (/^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`);

/** Every problem of `value` against `spec`, at `path`. */
export function checkFormat(spec: FieldSpec, value: unknown, path: string, problems: FormatProblem[] = []): FormatProblem[] {
  if (spec.type === 'anyOf') {
    const fit = spec.options.find((o) => shapeFits(o, value));
    if (!fit) problems.push({ path, message: `must be ${describe(spec)}, not ${typeName(value)}` });
    else checkFormat(fit, value, path, problems);
    return problems;
  }
  if (!shapeFits(spec, value)) {
    problems.push({ path, message: `must be ${describe(spec)}, not ${typeName(value)}` });
    return problems;
  }
  if ((spec.type === 'string') && spec.enum && !spec.enum.includes(value as string)) {
    problems.push({ path, message: `must be ${describe(spec)}, not ${JSON.stringify(value)}` });
  } else if (spec.type === 'array') {
    (value as unknown[]).forEach((item, i) => checkFormat(spec.items, item, `${path}[${i}]`, problems));
  } else if (spec.type === 'map') {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) checkFormat(spec.values, v, keyPath(path, k), problems);
  } else if (spec.type === 'object') {
    const allowed = Object.keys(spec.keys);
    const object = value as Record<string, unknown>;
    for (const [k, v] of Object.entries(object)) {
      const keySpec = Object.hasOwn(spec.keys, k) ? spec.keys[k] : undefined;
      if (keySpec === undefined) {
        const near = nearestKey(k, allowed);
        problems.push({
          path: keyPath(path, k),
          message: `unknown key ${JSON.stringify(k)}${near ? ` (did you mean "${near}"?)` : ''}; allowed here: ${allowed.join(', ')}`,
        });
      } else {
        checkFormat(keySpec, v, keyPath(path, k), problems);
      }
    }
    for (const k of spec.required ?? []) {
      if (!Object.hasOwn(object, k)) problems.push({ path, message: `"${k}" is required` });
    }
  }
  return problems;
}

/**
 * The keys of the format as rows `path | type | what`, with `path` as a user writes it (`expect.request.headers`,
 * `steps[].expect`): what the documentation lists.
 */
export function formatRows(spec: FieldSpec = CASE, prefix = ''): { path: string; type: string; doc: string }[] {
  const rows: { path: string; type: string; doc: string }[] = [];
  const walk = (s: FieldSpec, at: string) => {
    if (at !== '') rows.push({ path: at, type: describe(s), doc: s.doc });
    if (s.type === 'object') {
      // A step repeats the case's call keys: list only the step's own and say the rest are as the case's.
      for (const [k, v] of Object.entries(s.keys)) {
        if (at.endsWith('steps[]') && k !== 'name' && Object.hasOwn(CALL_KEYS, k)) continue;
        walk(v, at === '' ? k : `${at}.${k}`);
      }
    } else if (s.type === 'array') {
      walk(s.items, `${at}[]`);
    } else if (s.type === 'anyOf') {
      for (const o of s.options) if (o.type === 'object') for (const [k, v] of Object.entries(o.keys)) walk(v, `${at}.${k}`);
    } else if (s.type === 'map' && s.values.type === 'anyOf') {
      for (const o of s.values.options) if (o.type === 'object') for (const [k, v] of Object.entries(o.keys)) walk(v, `${at}.<name>.${k}`);
    }
  };
  walk(spec, prefix);
  return rows;
}

/** The step keys that are the case's call keys, for the sentence under the table. */
export const STEP_CALL_KEYS: readonly string[] = Object.keys(CALL_KEYS);

export const FORMAT_TABLE_START = '<!-- policy.test.json format: generated from sdk/cli/test-case-format.ts (npm run docs:test-format) -->';
export const FORMAT_TABLE_END = '<!-- end of the generated format -->';

/** The table of every key of a case, as the documentation carries it between the two markers. */
export function caseFormatMarkdown(): string {
  const escape = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [
    FORMAT_TABLE_START,
    '',
    '| key | type | what |',
    '| --- | --- | --- |',
    ...formatRows().map((r) => `| \`${r.path}\` | ${escape(r.type)} | ${escape(r.doc)} |`),
    '',
    `A step (\`steps[]\`) takes the case's call keys too (${STEP_CALL_KEYS.map((k) => `\`${k}\``).join(', ')}), with the same meaning.`,
    '',
    FORMAT_TABLE_END,
  ];
  return lines.join('\n');
}
