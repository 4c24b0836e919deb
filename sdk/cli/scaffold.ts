// `gatehouse-policy new`: a small working policy to start from, with its descriptor, config schema, tests and README.

import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { POLICY_NAME } from '../../abi/index.ts';
import { displayPath, policyNameFromFolder } from '../build/index.ts';

function policySource(name: string): string {
  return `// ${name}: refuses requests that lack a configured header, and marks the responses it let through.
import { config, jsonString, request, respond, response, CONTINUE } from "@gatehouse/policy-sdk";

// Inbound phase: runs before the request goes to the backend.
export function on_inbound(): i32 {
  // schema.json requires "header", so the gateway never runs this policy without it: "!" asserts it is not null.
  const name = config.getString("header")!;
  if (request.header(name) === null) {
    return respond(401, '{"error":' + jsonString("missing header " + name) + "}", "application/json");
  }
  return CONTINUE;
}

// Outbound phase: runs with the backend's response.
export function on_outbound(): i32 {
  response.setHeader("x-checked-by", "${name}");
  return CONTINUE;
}
`;
}

function policyJson(name: string): string {
  return (
    JSON.stringify(
      {
        name,
        version: '0.1.0',
        description: 'Refuses requests without a configured header; marks the responses it let through.',
        requestBody: false,
        responseBody: false,
      },
      null,
      2,
    ) + '\n'
  );
}

function schemaJson(): string {
  return (
    JSON.stringify(
      {
        type: 'object',
        properties: {
          header: {
            type: 'string',
            minLength: 1,
            pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
            description: 'The request header every request must carry.',
          },
        },
        required: ['header'],
        additionalProperties: false,
      },
      null,
      2,
    ) + '\n'
  );
}

function testJson(name: string): string {
  const cases = [
    {
      name: 'a request with the header continues',
      phase: 'inbound',
      config: { header: 'x-api-key' },
      request: { method: 'GET', path: '/orders', headers: { 'x-api-key': 'secret' } },
      expect: { outcome: 'continue' },
    },
    {
      name: 'a request without the header gets 401',
      phase: 'inbound',
      config: { header: 'x-api-key' },
      request: { method: 'GET', path: '/orders' },
      expect: {
        outcome: 'respond',
        status: 401,
        response: {
          headers: { 'content-type': 'application/json' },
          body: '{"error":"missing header x-api-key"}',
        },
      },
    },
    {
      name: 'responses are marked',
      phase: 'outbound',
      config: { header: 'x-api-key' },
      response: { status: 200, headers: { 'content-type': 'text/plain' }, body: 'ok' },
      expect: { outcome: 'continue', response: { headers: { 'x-checked-by': name } } },
    },
    {
      name: 'a configuration without "header" is refused',
      config: {},
      expect: { outcome: 'invalid-config', error: 'header' },
    },
  ];
  return JSON.stringify({ cases }, null, 2) + '\n';
}

function readme(name: string, dir: string): string {
  const shown = displayPath(dir);
  return `# ${name}

Refuses requests that lack a configured header (401, JSON body), and adds \`x-checked-by: ${name}\` to the responses it
let through. Written in AssemblyScript with \`@gatehouse/policy-sdk\` (see \`sdk/README.md\`).

| config | type | meaning |
| --- | --- | --- |
| \`header\` | string, required | the request header every request must carry |

\`\`\`json
{ "policy": "${name}", "config": { "header": "x-api-key" } }
\`\`\`

| file | what |
| --- | --- |
| \`policy.ts\` | the handlers: \`on_inbound\`, \`on_outbound\` |
| \`policy.json\` | name, version, whether the policy reads bodies |
| \`schema.json\` | JSON Schema of the configuration, checked before the policy runs |
| \`policy.test.json\` | test cases |

\`\`\`sh
npx gatehouse-policy test ${shown}                                # build and run the cases
npx gatehouse-policy build ${shown}/policy.ts -o ${shown}/${name}.wasm  # build the module
\`\`\`
`;
}

/**
 * Creates a new policy in `dir`: policy.ts, policy.json, schema.json, policy.test.json and README.md. Refuses to
 * overwrite any existing file. Returns the paths created.
 */
export async function scaffoldPolicy(dir: string, options: { name?: string } = {}): Promise<string[]> {
  const folder = path.resolve(dir);
  const name = options.name ?? policyNameFromFolder(folder);
  if (!POLICY_NAME.test(name)) {
    throw new Error(
      `"${name}" is not a valid policy name: use lowercase letters, digits and dashes, at most 64 characters` +
        (options.name === undefined ? ' (pass --name, or pick another folder name)' : ''),
    );
  }
  const files: [string, string][] = [
    ['policy.ts', policySource(name)],
    ['policy.json', policyJson(name)],
    ['schema.json', schemaJson()],
    ['policy.test.json', testJson(name)],
    ['README.md', readme(name, folder)],
  ];
  const existing = files.map(([f]) => path.join(folder, f)).filter((f) => existsSync(f));
  if (existing.length > 0) {
    throw new Error(
      `refusing to overwrite ${existing.map(displayPath).join(', ')}: pick a new folder, or remove ${existing.length === 1 ? 'it' : 'them'} first`,
    );
  }
  await mkdir(folder, { recursive: true });
  const created: string[] = [];
  for (const [file, text] of files) {
    const target = path.join(folder, file);
    // "wx": fail rather than overwrite a file created since the check above.
    await writeFile(target, text, { flag: 'wx' });
    created.push(target);
  }
  return created;
}
