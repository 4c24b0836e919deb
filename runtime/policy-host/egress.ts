// Where a policy may send traffic: the one grammar of the `allowedHosts` entries of the `http` and `backend` grants,
// matching a URL against them, and the addresses only an exact entry reaches (abi/policy-abi.md, sections 5 and 6).
// Nothing here resolves names or opens sockets: runtime/network/egress-guard.ts does, with these rules, when a destination
// was admitted by a wildcard.

import { CallAbort } from './errors.ts';

/** The grants whose `allowedHosts` this file reads. */
export type EgressGrant = 'http' | 'backend';

/** One entry of an `allowedHosts` list, parsed. */
export interface HostPattern {
  /** As written, for messages. */
  text: string;
  /** `exact`: this host only; `subdomains`: any name below a domain (`*.example.com`); `any`: every host (`*`). */
  kind: 'exact' | 'subdomains' | 'any';
  /** exact: the host as URL.hostname spells it (IPv6 in brackets); subdomains: the domain with its leading dot. */
  host: string;
  /** null: the default port of the URL's scheme (80 for http, 443 for https). */
  port: number | null;
}

/** An address only an exact entry reaches: the machine itself, its link, or no address at all. */
export type AddressClass = 'loopback' | 'link-local' | 'unspecified';

/** A connection the platform refused after resolving a name (a wildcard entry admitted it, its address did not pass). */
export class EgressRefused extends Error {
  readonly code = 'GATEHOUSE_EGRESS_REFUSED';

  constructor(message: string) {
    super(message);
    this.name = 'EgressRefused';
  }
}

const EXAMPLE = '"orders.internal:8443"';
/** Host names as DNS has them: letters, digits, `-` and `_` in dot-separated labels (a final dot allowed), lower case. */
const NAME = /^(?=.{1,254}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/;
const IPV4 = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

/** The host as a URL would read it (`0x7f.1` → `127.0.0.1`, `[0::1]` → `[::1]`), or null when no URL can hold it. */
function urlHost(host: string): string | null {
  try {
    return new URL(`http://${host}/`).hostname;
  } catch {
    return null;
  }
}

/** An entry parsed, or what is wrong with it (to follow the entry, quoted, in a message). */
export function parseHostPattern(text: string): HostPattern | { problem: string } {
  if (text.includes('://')) return { problem: `has a scheme: write the host and port without a scheme (${EXAMPLE})` };
  if (/[\s/?#@\\]/.test(text)) return { problem: `is not a host and port: write the host and port only (${EXAMPLE})` };
  let host = text;
  let portText: string | null = null;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return { problem: 'has an IPv6 address without its closing "]"' };
    host = text.slice(0, close + 1);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return { problem: 'has something other than ":port" after the IPv6 address' };
      portText = rest.slice(1);
    }
  } else {
    const colons = text.split(':').length - 1;
    if (colons > 1) return { problem: 'is an IPv6 address without brackets: write it as "[::1]:8443"' };
    if (colons === 1) [host, portText] = text.split(':') as [string, string];
  }
  let port: number | null = null;
  if (portText !== null) {
    if (portText === '') return { problem: 'has an empty port: leave out the ":" for the default port (80/443), or name the port' };
    if (portText === '*') {
      return { problem: 'has the port "*": name each port (1-65535); a grant never opens every port of a host' };
    }
    if (!/^\d+$/.test(portText)) return { problem: `has the port "${portText}": a port is a number from 1 to 65535` };
    port = Number(portText);
    if (port < 1 || port > 65535) return { problem: 'has a port outside 1-65535' };
  }
  host = host.toLowerCase();
  if (host === '*') return { text, kind: 'any', host: '', port };
  if (host.startsWith('*.')) {
    const domain = host.slice(2);
    if (domain.includes('*')) return { problem: wildcardProblem };
    if (IPV4.test(domain) || domain.startsWith('[') || urlHost(domain) !== domain || !NAME.test(domain)) {
      return { problem: 'puts a wildcard before something that is not a domain name: "*.example.com" is the names below example.com' };
    }
    return { text, kind: 'subdomains', host: `.${domain}`, port };
  }
  if (host.includes('*')) return { problem: wildcardProblem };
  const canonical = urlHost(host);
  if (canonical === null || !(IPV4.test(canonical) || canonical.startsWith('[') || NAME.test(canonical))) {
    return { problem: 'is not a host name, an IPv4 address or an [IPv6] address' };
  }
  // `0177.0.0.1` is 127.0.0.1 to a URL (octal); an entry spelt another way than URLs read it would mislead its reader.
  if (canonical !== host) return { problem: `is read as "${canonical}": write it that way` };
  return { text, kind: 'exact', host: canonical, port };
}

const wildcardProblem = 'has a wildcard in the wrong place: "*.example.com" for the names below example.com, "*" alone for any host';

/**
 * Problems of an `allowedHosts` list, each starting with its path (`grants.backend.allowedHosts[1]: ...`); empty when
 * every entry parses.
 */
export function allowedHostsProblems(grant: EgressGrant, value: unknown): string[] {
  const hosts = (value as { allowedHosts?: unknown } | null)?.allowedHosts;
  const path = `grants.${grant}.allowedHosts`;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !Array.isArray(hosts) || hosts.length === 0) {
    return [`${path}: must be a non-empty list of hosts with their ports (${EXAMPLE}, "*.svc.example.com:443")`];
  }
  const problems: string[] = [];
  hosts.forEach((entry, i) => {
    if (typeof entry !== 'string' || entry === '') {
      problems.push(`${path}[${i}]: must be a host and port like ${EXAMPLE} (got ${JSON.stringify(entry)})`);
      return;
    }
    const parsed = parseHostPattern(entry);
    if ('problem' in parsed) problems.push(`${path}[${i}]: ${JSON.stringify(entry)} ${parsed.problem}`);
  });
  for (const key of Object.keys(value)) {
    if (key !== 'allowedHosts') problems.push(`grants.${grant}.${key}: unknown field (known: allowedHosts)`);
  }
  return problems;
}

/** Parsed lists, by the list a binding's grants hold (the same array on every request). */
const parsedLists = new WeakMap<readonly string[], HostPattern[]>();

function patternsOf(hosts: readonly string[]): HostPattern[] {
  let patterns = parsedLists.get(hosts);
  if (!patterns) {
    // Bindings are checked when created (host.ts); an entry that does not parse here matches nothing.
    patterns = hosts.map(parseHostPattern).filter((p): p is HostPattern => !('problem' in p));
    parsedLists.set(hosts, patterns);
  }
  return patterns;
}

export function defaultPort(protocol: string): number {
  return protocol === 'https:' ? 443 : 80;
}

/** The port a URL connects to. */
export function portOf(url: URL): number {
  return url.port === '' ? defaultPort(url.protocol) : Number(url.port);
}

/**
 * The entry that admits `url`, or null. An exact entry wins over wildcards, so that a host both name is reached as
 * named exactly.
 */
export function matchHost(url: URL, hosts: readonly string[]): HostPattern | null {
  const host = url.hostname;
  const port = portOf(url);
  const portMatches = (p: HostPattern) => (p.port === null ? port === defaultPort(url.protocol) : p.port === port);
  const patterns = patternsOf(hosts);
  const exact = patterns.find((p) => p.kind === 'exact' && p.host === host && portMatches(p));
  if (exact) return exact;
  // A wildcard reaches names (a URL host may hold `*` or `%`, which no DNS name has) and, for `*`, addresses.
  const isAddress = IPV4.test(host) || host.startsWith('[');
  return (
    patterns.find(
      (p) =>
        portMatches(p) &&
        (p.kind === 'any'
          ? isAddress || NAME.test(host)
          : p.kind === 'subdomains' && !isAddress && NAME.test(host) && host.endsWith(p.host) && host.length > p.host.length),
    ) ?? null
  );
}

/** How a checked destination is reached: `exact`, as named; `wildcard`, through a connection that checks addresses. */
export type EgressAccess = 'exact' | 'wildcard';

/**
 * Whether policy `policy`, holding `hosts` in its grant `grant` (undefined: not granted), may reach `url`. Throws
 * CallAbort('capability') naming the policy, the host and port, and the grant entry it needs; a loopback, link-local or
 * unspecified address needs an exact entry. Names admitted by a wildcard are checked again on their addresses when
 * connecting (runtime/network/egress-guard.ts).
 */
export function checkEgress(url: URL, grant: EgressGrant, hosts: readonly string[] | undefined, policy: string): EgressAccess {
  const target = `${url.hostname}:${portOf(url)}`;
  const verb = grant === 'http' ? 'call' : 'send the request to';
  if (hosts === undefined) {
    throw new CallAbort(
      'capability',
      `policy ${policy} may not ${verb} ${target}: it needs the "${grant}" grant naming it (grants.${grant}.allowedHosts: ["${target}"])`,
    );
  }
  const entry = matchHost(url, hosts);
  if (entry === null) {
    throw new CallAbort('capability', `policy ${policy} may not ${verb} ${target}: grants.${grant}.allowedHosts (${hosts.join(', ')}) does not name it`);
  }
  if (entry.kind === 'exact') return 'exact';
  const special = addressClass(url.hostname);
  if (special !== null) {
    throw new CallAbort(
      'capability',
      `policy ${policy} may not ${verb} ${target}: ${url.hostname} is ${article(special)} ${special} address, reached only when ` +
        `grants.${grant}.allowedHosts names it exactly ("${target}"), not through "${entry.text}"`,
    );
  }
  return 'wildcard';
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

// --- addresses ------------------------------------------------------------------------------------------------------

/** The four bytes of a dotted IPv4 address, or null. */
function ipv4Bytes(text: string): number[] | null {
  if (!IPV4.test(text)) return null;
  const bytes = text.split('.').map(Number);
  return bytes.every((b) => b <= 255) ? bytes : null;
}

/** The eight 16-bit groups of an IPv6 address (brackets and a zone allowed, a dotted IPv4 tail too), or null. */
function ipv6Groups(text: string): number[] | null {
  let s = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (!s.includes(':')) return null;
  const tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    const v4 = ipv4Bytes(s.slice(lastColon + 1));
    if (!v4) return null;
    tail.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    // `::ffff:1.2.3.4` → `::ffff`; `::1.2.3.4` → `::` (the `::` stays whole).
    const before = s.slice(0, lastColon + 1);
    s = before.endsWith('::') ? before : s.slice(0, lastColon);
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => (/^[0-9a-f]{1,4}$/i.test(g) ? parseInt(g, 16) : NaN)));
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const given = head.length + rest.length + tail.length;
  if ([...head, ...rest].some(Number.isNaN)) return null;
  if (halves.length === 1 ? given !== 8 : given > 7) return null;
  return [...head, ...new Array<number>(8 - given).fill(0), ...rest, ...tail];
}

/** The IPv4 address an IPv6 address stands for: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d). */
function embeddedIPv4(g: number[]): number[] | null {
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  const mapped = zeros(0, 5) && g[5] === 0xffff;
  const compatible = zeros(0, 6) && (g[6] !== 0 || g[7]! > 1);
  const nat64 = g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6);
  if (!mapped && !compatible && !nat64) return null;
  return [g[6]! >> 8, g[6]! & 0xff, g[7]! >> 8, g[7]! & 0xff];
}

function ipv4Class(b: number[]): AddressClass | null {
  if (b[0] === 127) return 'loopback';
  if (b[0] === 0) return 'unspecified'; // 0.0.0.0/8: "this network"; Linux connects 0.0.0.0 to the machine itself
  if (b[0] === 169 && b[1] === 254) return 'link-local'; // cloud metadata services live here (169.254.169.254)
  return null;
}

/**
 * What kind of address only an exact entry reaches this is, or null (an ordinary address, or a name). Takes the host
 * as URL.hostname spells it or as a resolver returns it; IPv4 written inside IPv6 is judged as the IPv4 address.
 */
export function addressClass(host: string): AddressClass | null {
  const v4 = ipv4Bytes(host);
  if (v4) return ipv4Class(v4);
  const g = ipv6Groups(host);
  if (!g) return null;
  if (g.every((x) => x === 0)) return 'unspecified';
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return 'loopback';
  if ((g[0]! & 0xffc0) === 0xfe80) return 'link-local';
  const embedded = embeddedIPv4(g);
  return embedded ? ipv4Class(embedded) : null;
}

/**
 * One spelling per address, for comparing addresses from different sources (a resolver, the network interfaces):
 * dotted IPv4, IPv4 inside IPv6 as that IPv4, other IPv6 as eight groups. Null for a name.
 */
export function addressKey(host: string): string | null {
  const v4 = ipv4Bytes(host);
  if (v4) return v4.join('.');
  const g = ipv6Groups(host);
  if (!g) return null;
  const embedded = embeddedIPv4(g);
  return embedded ? embedded.join('.') : g.map((x) => x.toString(16)).join(':');
}
