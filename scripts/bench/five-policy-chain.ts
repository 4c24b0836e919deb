// The gateway configuration of the proxy benchmark (scripts/bench-proxy.ts) and the soak (scripts/soak.ts): one API in
// front of one backend, with or without the five-policy chain issue 3 names, and what clients send to get through it.

import { join } from 'node:path';
import { repoRoot } from '../../runtime/assets/repo-root.ts';

/** The API key the load generators and checks send; the chain's key-auth accepts it (keys have 8 characters at least). */
export const API_KEY = 'bench-key-0001';
/** Every request also carries an Origin, as a browser's would, so that the chain's cors policy does its whole job. */
export const ORIGIN = 'https://app.example.com';

/**
 * The five-policy chain (key check, rate limit, set header, rewrite URI, CORS), with the built-in policies, in the
 * order a configuration would have them. The rate limit is far above what a load generator sends, so that every
 * request does the whole chain. bench-proxy.ts checks that each policy acted before measuring: the backend sees the
 * caller's identity instead of the key and the rewritten path, the client sees the outbound header and the CORS
 * headers, and a request without the key is refused.
 *
 * `when`: the entry's condition in the variant with conditions (issue 18's `five-policy-conditions-ratio`): each holds
 * for the load generators' requests, and each reads a different part of the request, as a configuration's would.
 */
export const FIVE_POLICY_CHAIN: Array<{ phase: 'inbound' | 'outbound'; policy: string; config: Record<string, unknown>; when: string }> = [
  { phase: 'inbound', policy: 'cors', config: { allowedOrigins: [ORIGIN], exposeHeaders: ['x-request-id'] }, when: "request.headers[?'origin'].orValue('') != ''" },
  { phase: 'inbound', policy: 'key-auth', config: { keys: [{ id: 'bench-client', key: API_KEY }], identityHeader: 'x-consumer-id' }, when: "request.method != 'OPTIONS'" },
  { phase: 'inbound', policy: 'rate-limit', config: { calls: 1_000_000_000, renewalPeriod: 3600 }, when: "!request.path.startsWith('/internal/')" },
  { phase: 'inbound', policy: 'rewrite-uri', config: { template: '/v2/items' }, when: "request.path.startsWith('/')" },
  { phase: 'outbound', policy: 'set-header', config: { name: 'x-gatehouse', value: 'bench' }, when: 'response.status < 500' },
];

/** The five built-ins' handlers in one module (test/fixtures/policies/five-in-one), for bench:proxy's gatehouse-5f. */
const FIVE_IN_ONE = join(repoRoot(), 'test', 'fixtures', 'policies', 'five-in-one');
/** A policy that only spends CPU (test/fixtures/policies/cpu-burn), for bench:proxy's gatehouse-burn. */
const CPU_BURN = join(repoRoot(), 'test', 'fixtures', 'policies', 'cpu-burn');
/**
 * Its passes over 1 KiB a call: about 20 us of CPU a request in a gateway here, near what the five policies add in
 * user time, so that the two targets' system time can be compared at about the same throughput.
 */
const CPU_BURN_ROUNDS = 2;

/** What a bench gateway runs in front of its backend (benchGatewayYaml). */
export type BenchPolicies = boolean | 'with-conditions' | 'in-one-module' | 'cache' | 'read-body' | 'cpu-burn';

/**
 * The configuration document (YAML): API `bench` on `/` in front of `backendUrl`, with the chain when asked, with
 * each entry's `when:` condition for 'with-conditions', or with the five in one module ('in-one-module': an inbound
 * and an outbound entry, each with the five's configurations merged).
 */
export function benchGatewayYaml(backendUrl: string, withPolicies: BenchPolicies, writtenBy: string): string {
  const lines = ['# Written by ' + writtenBy, 'version: 1', 'apis:', '  - id: bench', '    pathPrefix: /', '    backend:', `      url: ${backendUrl}`];
  if (withPolicies === 'cpu-burn') {
    lines.push('    policies:', '      inbound:', `        - source: ${JSON.stringify(CPU_BURN)}`, `          config: { rounds: ${CPU_BURN_ROUNDS} }`);
  } else if (withPolicies === 'in-one-module') {
    const config = JSON.stringify(Object.assign({}, ...FIVE_POLICY_CHAIN.map((e) => e.config)));
    lines.push('    policies:');
    for (const phase of ['inbound', 'outbound']) {
      lines.push(`      ${phase}:`, `        - source: ${JSON.stringify(FIVE_IN_ONE)}`, `          config: ${config}`, '          grants: { counters: true }');
    }
  } else if (withPolicies === 'read-body') {
    // A policy that reads the response body and changes nothing (no match): the gateway holds, decodes and sends on.
    lines.push('    policies:', '      outbound:', '        - policy: find-and-replace', '          config: { from: "not in the body", to: x }');
  } else if (withPolicies === 'cache') {
    // The response cache alone: every request after the first is a hit (the harness's echo requests are kept apart).
    lines.push('    policies:', '      inbound:', '        - cache-lookup: { varyByHeaders: [x-bench-echo] }', '      outbound:', '        - cache-store: { duration: 3600 }');
  } else if (withPolicies) {
    lines.push('    policies:');
    for (const phase of ['inbound', 'outbound'] as const) {
      const entries = FIVE_POLICY_CHAIN.filter((e) => e.phase === phase);
      if (entries.length > 0) lines.push(`      ${phase}:`);
      for (const entry of entries) {
        lines.push(`        - policy: ${entry.policy}`);
        if (withPolicies === 'with-conditions') lines.push(`          when: ${JSON.stringify(entry.when)}`);
        lines.push(`          config: ${JSON.stringify(entry.config)}`);
      }
    }
  }
  return lines.join('\n') + '\n';
}
