// The gateway configuration of the proxy benchmark (scripts/bench-proxy.ts) and the soak (scripts/soak.ts): one API in
// front of one backend, with or without the five-policy chain issue 3 names, and what clients send to get through it.

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
 */
export const FIVE_POLICY_CHAIN: Array<{ phase: 'inbound' | 'outbound'; policy: string; config: Record<string, unknown> }> = [
  { phase: 'inbound', policy: 'cors', config: { allowedOrigins: [ORIGIN], exposeHeaders: ['x-request-id'] } },
  { phase: 'inbound', policy: 'key-auth', config: { keys: [{ id: 'bench-client', key: API_KEY }], identityHeader: 'x-consumer-id' } },
  { phase: 'inbound', policy: 'rate-limit', config: { calls: 1_000_000_000, renewalPeriod: 3600 } },
  { phase: 'inbound', policy: 'rewrite-uri', config: { template: '/v2/items' } },
  { phase: 'outbound', policy: 'set-header', config: { name: 'x-gatehouse', value: 'bench' } },
];

/** The configuration document (YAML): API `bench` on `/` in front of `backendUrl`, with the chain when asked. */
export function benchGatewayYaml(backendUrl: string, withPolicies: boolean, writtenBy: string): string {
  const lines = ['# Written by ' + writtenBy, 'version: 1', 'apis:', '  - id: bench', '    pathPrefix: /', '    backend:', `      url: ${backendUrl}`];
  if (withPolicies) {
    lines.push('    policies:');
    for (const phase of ['inbound', 'outbound'] as const) {
      const entries = FIVE_POLICY_CHAIN.filter((e) => e.phase === phase);
      if (entries.length > 0) lines.push(`      ${phase}:`);
      for (const entry of entries) {
        lines.push(`        - policy: ${entry.policy}`);
        lines.push(`          config: ${JSON.stringify(entry.config)}`);
      }
    }
  }
  return lines.join('\n') + '\n';
}
