// How the gateway opens connections to backends and to the destinations of policies' HTTP effects: an undici
// connector. The runtime adapter supplies the factory (runtime/adapters/): Deno's needs a fix undici's own lacks.

import { buildConnector } from 'undici';

/** An undici connector that trusts `tls.ca` besides the system's certificate authorities. */
export type ConnectorFactory = (tls?: { ca?: string }) => buildConnector.connector;

/** undici's own connector, as a pool builds it when given none. */
export const undiciConnector: ConnectorFactory = (tls = {}) => buildConnector(tls.ca ? { ca: tls.ca } : {});
