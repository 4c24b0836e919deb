// A free TCP port on 127.0.0.1, for a process that must be told its port before it starts.

import { createServer, type AddressInfo } from 'node:net';

/** Asks the kernel for a free port and gives it back at once (another process could take it meanwhile, rarely). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
