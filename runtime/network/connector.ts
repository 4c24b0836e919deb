// How the gateway opens connections to backends and to the destinations of policies' HTTP effects: an undici
// connector. The runtime adapter supplies the factory (runtime/adapters/): Deno's needs a fix undici's own lacks.

import { buildConnector } from 'undici';

/**
 * An undici connector that trusts `ca` besides the system's certificate authorities; with `h2`, its connections speak
 * HTTP/2: offered through ALPN on TLS (the backend may still choose HTTP/1.1), with prior knowledge on cleartext.
 */
export type ConnectorFactory = (options?: { ca?: string; h2?: boolean }) => buildConnector.connector;

/** undici's own connector, as a pool builds it when given none. */
export const undiciConnector: ConnectorFactory = (options = {}) =>
  buildConnector({ ...(options.ca ? { ca: options.ca } : {}), ...(options.h2 ? { allowH2: true, useH2c: true } : {}) } as buildConnector.BuildOptions);
