// Connections to destinations a policy reached through a wildcard grant entry (`*.svc.example.com:443`, `*:443`):
// the name is resolved once, every address it has is checked, and the socket is opened to a checked address, so a
// name that resolves elsewhere the next time (DNS rebinding) cannot get past the check, and neither can one that points
// at this machine. The Host header and the TLS server name stay the name, so certificates and virtual hosts work as
// they would. The rules themselves are runtime/policy-host/egress.ts's; this file does the resolving and connecting,
// with node:dns, node:os and the runtime's connector (connector.ts).

import { lookup } from 'node:dns';
import { networkInterfaces } from 'node:os';
import { Agent, type buildConnector } from 'undici';
import { addressClass, addressKey, defaultPort, EgressRefused } from '../policy-host/egress.ts';
import { undiciConnector, type ConnectorFactory } from './connector.ts';

/** How long this machine's addresses are reused before they are read again (interfaces rarely change). */
const INTERFACES_TTL_MS = 5000;

/** Every address of a host name, in the order to try them. */
export type ResolveAll = (hostname: string) => Promise<string[]>;

/** The system resolver (getaddrinfo, /etc/hosts included), as connections without a guard would resolve. */
const systemResolve: ResolveAll = (hostname) =>
  new Promise((resolve, reject) =>
    lookup(hostname, { all: true, verbatim: true }, (err, addresses) => (err ? reject(err) : resolve(addresses.map((a) => a.address)))),
  );

/**
 * Knows the gateway's own listeners and refuses wildcard-admitted connections to them, and to loopback, link-local and
 * unspecified addresses. One per gateway: its listeners register their ports with it.
 */
export class EgressGuard {
  private readonly ownPorts = new Set<number>();
  private local: { keys: Set<string>; readAt: number } | null = null;
  private readonly resolveAll: ResolveAll;
  /** Opens the connections, checked (connector()) or not (direct()). */
  readonly direct: ConnectorFactory;

  /**
   * `resolve`: how names become addresses; the system resolver unless a test stands in for DNS. `connect`: the
   * runtime adapter's connector; undici's own when none is given.
   */
  constructor(options: { resolve?: ResolveAll; connect?: ConnectorFactory } = {}) {
    this.resolveAll = options.resolve ?? systemResolve;
    this.direct = options.connect ?? undiciConnector;
  }

  /**
   * A port the gateway listens on (data plane, admin). It is refused on every address of this machine, whichever
   * interface the listener is bound to: a listener on 0.0.0.0 answers on all of them.
   */
  addOwnListener(port: number): void {
    this.ownPorts.add(port);
  }

  /** Why a wildcard-admitted connection to `address:port` is refused ("127.0.0.1, a loopback address"), or null. */
  refusal(address: string, port: number): string | null {
    const special = addressClass(address);
    if (special !== null) return `${address}, ${special === 'unspecified' ? 'an' : 'a'} ${special} address`;
    if (this.ownPorts.has(port) && this.isLocal(address)) return `${address}:${port}, one of this gateway's own listeners`;
    return null;
  }

  private isLocal(address: string): boolean {
    const key = addressKey(address);
    if (key === null) return false;
    const now = Date.now();
    if (this.local === null || now - this.local.readAt > INTERFACES_TTL_MS) {
      const keys = new Set<string>();
      for (const list of Object.values(networkInterfaces())) {
        for (const a of list ?? []) {
          const k = addressKey(a.address);
          if (k !== null) keys.add(k);
        }
      }
      this.local = { keys, readAt: now };
    }
    return this.local.keys.has(key);
  }

  /**
   * An undici connector that resolves the host (every address), refuses the connection if any address is refused,
   * and otherwise connects to those addresses in the resolver's order until one answers. `tls.ca`: a CA to trust.
   */
  connector(tls: { ca?: string } = {}): buildConnector.connector {
    const connect = this.direct(tls);
    return (options, callback) => {
      const port = options.port === '' || options.port === undefined ? defaultPort(options.protocol) : Number(options.port);
      this.resolveAll(options.hostname).then(
        (addresses) => {
          const refused = this.refusedName(options.hostname, port, addresses);
          if (refused !== null) return callback(refused, null);
          if (addresses.length === 0) return callback(new Error(`${options.hostname} has no address`), null);
          try {
            connectInTurn(connect, options, addresses, callback);
          } catch (err) {
            callback(err as Error, null);
          }
        },
        (err: Error) => callback(err, null),
      );
    };
  }

  /** The refusal of `hostname:port` when any of its addresses is refused, naming the address; null when none is. */
  private refusedName(hostname: string, port: number, addresses: string[]): EgressRefused | null {
    for (const address of addresses) {
      const why = this.refusal(address, port);
      if (why === null) continue;
      const host = hostname.includes(':') ? `[${hostname}]` : hostname;
      const what = addressKey(hostname) === null ? `${host} resolved to ${why}` : why;
      return new EgressRefused(
        `${what}: a wildcard grant entry never reaches loopback, link-local or unspecified addresses, or this ` +
          `gateway's own listeners; name "${host}:${port}" exactly in the grant to reach it`,
      );
    }
    return null;
  }

  /** An undici Agent whose connections go through connector(); options as undici's Agent takes them. */
  agent(options: Omit<Agent.Options, 'connect'> = {}): Agent {
    return new Agent({ ...options, connect: this.connector() });
  }
}

/** Connects to `addresses` one after the other until one answers; the original host name stays the TLS server name. */
function connectInTurn(
  connect: buildConnector.connector,
  options: buildConnector.Options,
  addresses: string[],
  callback: buildConnector.Callback,
  i = 0,
): void {
  // undici derives the server name from `host` (name:port) when none is given; it is kept, only `hostname` changes.
  connect({ ...options, hostname: addresses[i]! }, (...args) => {
    if (args[0] !== null && i + 1 < addresses.length) return connectInTurn(connect, options, addresses, callback, i + 1);
    callback(...args);
  });
}
