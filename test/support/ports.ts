// A free TCP port on 127.0.0.1, for a process that must be told its port before it starts.
//
// The port is drawn below the kernel's range of ephemeral ports (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999
// by default). A port the kernel handed out for listen(0) comes from that range, and once given back it could be the
// local port of the next outgoing connection of any test running beside this one: a gateway told to listen on it then
// failed with EADDRINUSE in the clean-clone CI (test/egress.test.ts). Ports below the range are never picked for
// outgoing connections; two tests drawing the same one at once is left to chance (one in thousands of draws).

import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

/** The lowest port of the draw. */
const LOWEST = 10_000;

/** The first ephemeral port, or null where the kernel does not say (the draw then falls back to listen(0)). */
function ephemeralStart(): number | null {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > LOWEST + 1000 ? low : null;
  } catch {
    return null;
  }
}

const below = ephemeralStart();

/** Listens on `port` (0: any) and closes again; the port, or null when it is taken. */
function tryPort(port: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(null) : reject(err)));
    server.listen(port, '127.0.0.1', () => {
      const { port: bound } = server.address() as AddressInfo;
      server.close(() => resolve(bound));
    });
  });
}

/** A port nothing listens on, outside the ephemeral range where the kernel says what that range is. */
export async function freePort(): Promise<number> {
  if (below !== null) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = await tryPort(LOWEST + Math.floor(Math.random() * (below - LOWEST)));
      if (port !== null) return port;
    }
  }
  const port = await tryPort(0);
  if (port === null) throw new Error('no free port on 127.0.0.1');
  return port;
}

/**
 * A port where connections to 127.0.0.1 are refused: port 1 is privileged and no test listens there. A port taken with
 * listen(0) and given back can be the next one another test's server listens on: the clean-clone CI once saw
 * test/appinsights.test.ts's "refused" backend answer 404, a test running beside it having started a server there.
 */
export const REFUSED_PORT = 1;
