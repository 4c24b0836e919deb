// The allowedHosts grammar and its matching (runtime/policy-host/egress.ts), called directly: how each entry parses or
// what is wrong with it, which entry admits a URL, what checkEgress throws, and which addresses only an exact entry
// reaches. egress.test.ts shows the same rules at work in the policy host and in gateways; this file pins the rules
// themselves, each message whole, so that a change to any of them is seen.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  addressClass,
  addressKey,
  allowedHostsProblems,
  checkEgress,
  defaultPort,
  EgressRefused,
  matchHost,
  parseHostPattern,
  portOf,
  type EgressGrant,
} from '../runtime/policy-host/egress.ts';
import { CallAbort } from '../runtime/policy-host/errors.ts';

const EXAMPLE = '"orders.internal:8443"';

/** What parseHostPattern says is wrong with `text` (fails the test when it parses). */
function problemOf(text: string): string {
  const parsed = parseHostPattern(text);
  assert.ok('problem' in parsed, `${text} parsed as ${JSON.stringify(parsed)}`);
  return parsed.problem;
}

/** The text of the entry of `hosts` that admits `url`, or null. */
const admitting = (url: string, hosts: string[]) => matchHost(new URL(url), hosts)?.text ?? null;

/** What checkEgress throws for `url` (fails the test when it does not throw a CallAbort for want of a capability). */
function refusal(url: string, grant: EgressGrant, hosts: string[] | undefined, policy = 'p'): string {
  try {
    const access = checkEgress(new URL(url), grant, hosts, policy);
    assert.fail(`${url} with ${JSON.stringify(hosts)} was let through (${access})`);
  } catch (err) {
    assert.ok(err instanceof CallAbort, String(err));
    assert.equal(err.reason, 'capability');
    return err.message;
  }
}

describe('an allowedHosts entry parses into its kind, host and port', () => {
  test('an exact name, with and without a port, lower-cased', () => {
    assert.deepEqual(parseHostPattern('orders.internal:8443'), { text: 'orders.internal:8443', kind: 'exact', host: 'orders.internal', port: 8443 });
    assert.deepEqual(parseHostPattern('Orders.Internal'), { text: 'Orders.Internal', kind: 'exact', host: 'orders.internal', port: null });
    assert.deepEqual(parseHostPattern('db_1.internal:1'), { text: 'db_1.internal:1', kind: 'exact', host: 'db_1.internal', port: 1 });
    assert.deepEqual(parseHostPattern('example.com.:65535'), { text: 'example.com.:65535', kind: 'exact', host: 'example.com.', port: 65535 });
  });

  test('IPv4 and bracketed IPv6 addresses, as URLs spell them', () => {
    assert.deepEqual(parseHostPattern('10.0.0.1:80'), { text: '10.0.0.1:80', kind: 'exact', host: '10.0.0.1', port: 80 });
    assert.deepEqual(parseHostPattern('[::1]:8443'), { text: '[::1]:8443', kind: 'exact', host: '[::1]', port: 8443 });
    assert.deepEqual(parseHostPattern('[fe80::1]'), { text: '[fe80::1]', kind: 'exact', host: '[fe80::1]', port: null });
    assert.deepEqual(parseHostPattern('[FE80::1]:1'), { text: '[FE80::1]:1', kind: 'exact', host: '[fe80::1]', port: 1 });
  });

  test('wildcards: the names below a domain, or every host', () => {
    assert.deepEqual(parseHostPattern('*.svc.example.com:443'), { text: '*.svc.example.com:443', kind: 'subdomains', host: '.svc.example.com', port: 443 });
    assert.deepEqual(parseHostPattern('*.Example.COM'), { text: '*.Example.COM', kind: 'subdomains', host: '.example.com', port: null });
    assert.deepEqual(parseHostPattern('*:8080'), { text: '*:8080', kind: 'any', host: '', port: 8080 });
    assert.deepEqual(parseHostPattern('*'), { text: '*', kind: 'any', host: '', port: null });
  });

  test('what is wrong with an entry is said in words the writer can act on', () => {
    assert.equal(problemOf('https://orders.internal'), `has a scheme: write the host and port without a scheme (${EXAMPLE})`);
    const notHostAndPort = `is not a host and port: write the host and port only (${EXAMPLE})`;
    for (const text of ['orders.internal/api', 'orders internal', 'orders.internal?x', 'orders.internal#x', 'user@orders.internal', 'orders\\internal', 'a\tb']) {
      assert.equal(problemOf(text), notHostAndPort, text);
    }
    assert.equal(problemOf('[::1'), 'has an IPv6 address without its closing "]"');
    assert.equal(problemOf('[::1]8443'), 'has something other than ":port" after the IPv6 address');
    assert.equal(problemOf('::1:80'), 'is an IPv6 address without brackets: write it as "[::1]:8443"');
    assert.equal(problemOf('host:'), 'has an empty port: leave out the ":" for the default port (80/443), or name the port');
    assert.equal(problemOf('[::1]:'), 'has an empty port: leave out the ":" for the default port (80/443), or name the port');
    assert.equal(problemOf('host:*'), 'has the port "*": name each port (1-65535); a grant never opens every port of a host');
    assert.equal(problemOf('host:8o'), 'has the port "8o": a port is a number from 1 to 65535');
    assert.equal(problemOf('host: 80'), notHostAndPort);
    assert.equal(problemOf('host:-1'), 'has the port "-1": a port is a number from 1 to 65535');
    assert.equal(problemOf('host:0'), 'has a port outside 1-65535');
    assert.equal(problemOf('host:65536'), 'has a port outside 1-65535');
    const misplaced = 'has a wildcard in the wrong place: "*.example.com" for the names below example.com, "*" alone for any host';
    for (const text of ['a.*.example.com', '*.*.example.com', 'api*.example.com', '**', '*example.com']) assert.equal(problemOf(text), misplaced, text);
    const notDomain = 'puts a wildcard before something that is not a domain name: "*.example.com" is the names below example.com';
    // An address, something a URL reads another way (a number is an IPv4 address), a character no name has.
    for (const text of ['*.10.0.0.1', '*.[1]', '*.1', '*.exa%41mple.com', '*.exa$mple.com', '*.-a.com']) assert.equal(problemOf(text), notDomain, text);
    const notHost = 'is not a host name, an IPv4 address or an [IPv6] address';
    // 255 characters in labels of 63: one more than a DNS name holds.
    const tooLong = [1, 2, 3, 4].map(() => 'a'.repeat(63)).join('.');
    assert.equal(tooLong.length, 255);
    assert.equal((parseHostPattern(tooLong.slice(1)) as { kind?: string }).kind, 'exact');
    for (const text of ['exa$mple.com', '[::g]', '-a.com', tooLong]) assert.equal(problemOf(text), notHost, text);
    assert.equal(problemOf('0177.0.0.1:80'), 'is read as "127.0.0.1": write it that way');
    assert.equal(problemOf('[0::1]'), 'is read as "[::1]": write it that way');
  });
});

describe('allowedHostsProblems: each bad entry named by its place', () => {
  const listProblem = (grant: string) =>
    `grants.${grant}.allowedHosts: must be a non-empty list of hosts with their ports (${EXAMPLE}, "*.svc.example.com:443")`;

  test('a grant that is not an object holding a non-empty list', () => {
    for (const value of [null, undefined, 'orders.internal', ['orders.internal'], {}, { allowedHosts: [] }, { allowedHosts: 'orders.internal' }]) {
      assert.deepEqual(allowedHostsProblems('http', value), [listProblem('http')], JSON.stringify(value));
    }
    assert.deepEqual(allowedHostsProblems('backend', { allowedHosts: {} }), [listProblem('backend')]);
    // Not even when something else that is not a plain object carries the list.
    const carrying = <T extends object>(value: T) => Object.assign(value, { allowedHosts: ['orders.internal'] });
    assert.deepEqual(allowedHostsProblems('http', carrying(['orders.internal'])), [listProblem('http')]);
    assert.deepEqual(allowedHostsProblems('http', carrying(() => undefined)), [listProblem('http')]);
  });

  test('a good list has no problems; each bad entry and each unknown field is one, in order', () => {
    assert.deepEqual(allowedHostsProblems('backend', { allowedHosts: ['orders.internal:8443', '*.svc.example.com:443', '*'] }), []);
    assert.deepEqual(allowedHostsProblems('backend', { allowedHosts: ['orders.internal:8443', 7, '', 'host:0', null], ports: [80], hosts: 1 }), [
      `grants.backend.allowedHosts[1]: must be a host and port like ${EXAMPLE} (got 7)`,
      `grants.backend.allowedHosts[2]: must be a host and port like ${EXAMPLE} (got "")`,
      'grants.backend.allowedHosts[3]: "host:0" has a port outside 1-65535',
      `grants.backend.allowedHosts[4]: must be a host and port like ${EXAMPLE} (got null)`,
      'grants.backend.ports: unknown field (known: allowedHosts)',
      'grants.backend.hosts: unknown field (known: allowedHosts)',
    ]);
  });
});

describe('ports', () => {
  test('the default port is 443 for https, 80 for anything else; a URL without a port connects to it', () => {
    assert.equal(defaultPort('https:'), 443);
    assert.equal(defaultPort('http:'), 80);
    assert.equal(defaultPort('ws:'), 80);
    assert.equal(portOf(new URL('https://a.example/')), 443);
    assert.equal(portOf(new URL('http://a.example/')), 80);
    assert.equal(portOf(new URL('http://a.example:8443/')), 8443);
    assert.equal(portOf(new URL('https://a.example:80/')), 80);
  });
});

describe('matchHost: the entry that admits a URL', () => {
  test('an exact entry admits its host on its port; without a port, on the default port of the scheme only', () => {
    assert.equal(admitting('https://orders.internal:8443/x', ['orders.internal:8443']), 'orders.internal:8443');
    assert.equal(admitting('https://orders.internal:9443/x', ['orders.internal:8443']), null);
    assert.equal(admitting('https://orders.internal/x', ['orders.internal:8443']), null);
    assert.equal(admitting('https://orders.internal/x', ['orders.internal']), 'orders.internal');
    assert.equal(admitting('http://orders.internal/x', ['orders.internal']), 'orders.internal');
    assert.equal(admitting('http://orders.internal:443/x', ['orders.internal']), null);
    assert.equal(admitting('https://orders.internal:80/x', ['orders.internal']), null);
    assert.equal(admitting('http://orders.internal:80/x', ['orders.internal:80']), 'orders.internal:80');
    assert.equal(admitting('http://[::1]:8082/', ['[::1]:8082']), '[::1]:8082');
    assert.equal(admitting('http://[0:0::1]:8082/', ['[::1]:8082']), '[::1]:8082');
  });

  test('an exact entry admits its own name only, not a longer name that ends with it', () => {
    for (const url of ['http://evilexample.com/', 'http://api.example.com/', 'http://a.b.example.com/', 'http://example.com.evil.net/']) {
      assert.equal(admitting(url, ['example.com']), null, url);
    }
    assert.equal(admitting('http://example.com/', ['example.com']), 'example.com');
    // A URL may name a host with an empty first label: no entry names it, not even the wildcard whose domain it spells.
    assert.equal(new URL('http://.example.com/').hostname, '.example.com');
    assert.equal(admitting('http://.example.com/', ['*.example.com', '*']), null);
  });

  test('*.domain admits the names below the domain, at any depth, not the domain itself nor a name that only ends like it', () => {
    const hosts = ['*.example.com:443'];
    assert.equal(admitting('https://a.example.com/', hosts), '*.example.com:443');
    assert.equal(admitting('https://a.b.example.com/', hosts), '*.example.com:443');
    assert.equal(admitting('https://A.Example.COM/', hosts), '*.example.com:443');
    for (const url of ['https://example.com/', 'https://evilexample.com/', 'https://a.example.com.evil.net/', 'https://a.example.co/', 'https://a.example.com./']) {
      assert.equal(admitting(url, hosts), null, url);
    }
    assert.equal(admitting('https://a.example.com:8443/', hosts), null, 'another port');
    // A URL host may hold characters no DNS name has: no wildcard admits them.
    assert.equal(admitting('https://a*b.example.com/', hosts), null);
    assert.equal(admitting('https://a*b.example.com/', ['*:443']), null);
  });

  test('a wildcard domain never admits an address, even one spelt to end like it', () => {
    // A domain that ends in a number is an IPv4 address to a URL; an entry can only say it as a name.
    assert.equal(admitting('http://10.0.0.1/', ['*.0.0.1']), null);
    assert.equal(admitting('http://[::1]/', ['*.1']), null);
  });

  test('"*" admits every name and every address on its port', () => {
    assert.equal(admitting('http://10.1.2.3:8082/', ['*:8082']), '*:8082');
    assert.equal(admitting('http://[2001:db8::1]:8082/', ['*:8082']), '*:8082');
    assert.equal(admitting('http://orders.internal:8082/', ['*:8082']), '*:8082');
    assert.equal(admitting('http://orders.internal:8083/', ['*:8082']), null);
    assert.equal(admitting('https://orders.internal/', ['*']), '*');
    assert.equal(admitting('https://orders.internal:8443/', ['*']), null);
  });

  test('an exact entry wins over a wildcard listed before it; entries that do not parse admit nothing', () => {
    assert.equal(admitting('http://orders.internal:8082/', ['*:8082', '*.internal:8082', 'orders.internal:8082']), 'orders.internal:8082');
    assert.equal(admitting('http://a.internal:8082/', ['*:8082', '*.internal:8082']), '*:8082');
    assert.equal(admitting('http://a.internal:8082/', ['host:0', '*.internal:8082']), '*.internal:8082');
    assert.equal(admitting('http://host/', ['host:0', 'https://host']), null);
  });

  test('a list is parsed once and reused, and a new list is parsed anew', () => {
    const hosts = ['orders.internal:8443'];
    assert.equal(admitting('https://orders.internal:8443/', hosts), 'orders.internal:8443');
    assert.equal(admitting('https://orders.internal:8443/', hosts), 'orders.internal:8443');
    assert.equal(admitting('https://orders.internal:8443/', ['billing.internal:8443']), null);
  });
});

describe('checkEgress', () => {
  test('a refusal after resolving carries its code and name', () => {
    const refused = new EgressRefused('orders.test resolved to 127.0.0.1');
    assert.equal(refused.code, 'GATEHOUSE_EGRESS_REFUSED');
    assert.equal(refused.name, 'EgressRefused');
    assert.equal(refused.message, 'orders.test resolved to 127.0.0.1');
  });

  test('an exact entry is reached as named; a wildcard entry through the address checks', () => {
    assert.equal(checkEgress(new URL('http://127.0.0.1:8082/'), 'http', ['127.0.0.1:8082'], 'p'), 'exact');
    assert.equal(checkEgress(new URL('http://orders.internal:8082/'), 'backend', ['*:8082'], 'p'), 'wildcard');
    assert.equal(checkEgress(new URL('https://a.svc.example.com/'), 'backend', ['*.svc.example.com:443'], 'p'), 'wildcard');
    assert.equal(checkEgress(new URL('http://10.1.2.3:8082/'), 'http', ['*:8082'], 'p'), 'wildcard');
  });

  test('without the grant: the policy, what it tried and the grant it needs', () => {
    assert.equal(
      refusal('https://orders.internal:8443/api', 'http', undefined, 'lookup'),
      'policy lookup may not call orders.internal:8443: it needs the "http" grant naming it (grants.http.allowedHosts: ["orders.internal:8443"])',
    );
    assert.equal(
      refusal('https://orders.internal/api', 'backend', undefined, 'router'),
      'policy router may not send the request to orders.internal:443: it needs the "backend" grant naming it (grants.backend.allowedHosts: ["orders.internal:443"])',
    );
  });

  test('a host the grant does not name: the list it holds', () => {
    assert.equal(
      refusal('http://orders.internal:9000/', 'backend', ['orders.internal:8443', '*.svc.example.com:443'], 'router'),
      'policy router may not send the request to orders.internal:9000: grants.backend.allowedHosts (orders.internal:8443, *.svc.example.com:443) does not name it',
    );
  });

  test('loopback, link-local and unspecified addresses are reached only through an exact entry, which the message spells out', () => {
    assert.equal(
      refusal('http://127.0.0.1:8082/', 'http', ['*:8082'], 'lookup'),
      'policy lookup may not call 127.0.0.1:8082: 127.0.0.1 is a loopback address, reached only when grants.http.allowedHosts names it exactly ("127.0.0.1:8082"), not through "*:8082"',
    );
    assert.equal(
      refusal('http://0.0.0.0/', 'backend', ['*'], 'router'),
      'policy router may not send the request to 0.0.0.0:80: 0.0.0.0 is an unspecified address, reached only when grants.backend.allowedHosts names it exactly ("0.0.0.0:80"), not through "*"',
    );
    assert.match(refusal('http://169.254.169.254/', 'http', ['*']), /169\.254\.169\.254 is a link-local address/);
    assert.match(refusal('http://[fe80::1]/', 'http', ['*']), /\[fe80::1\] is a link-local address/);
  });
});

describe('addresses only an exact entry reaches', () => {
  test('IPv4: 127/8 loopback, 0/8 unspecified, 169.254/16 link-local; others and names are ordinary', () => {
    assert.equal(addressClass('127.0.0.1'), 'loopback');
    assert.equal(addressClass('127.255.0.9'), 'loopback');
    assert.equal(addressClass('0.0.0.0'), 'unspecified');
    assert.equal(addressClass('0.1.2.3'), 'unspecified');
    assert.equal(addressClass('169.254.169.254'), 'link-local');
    assert.equal(addressClass('169.254.0.1'), 'link-local');
    for (const host of ['10.0.0.1', '128.0.0.1', '1.0.0.0', '169.253.1.1', '170.254.1.1', '254.169.1.1', '256.0.0.1', '127.0.0.256', 'localhost', 'example.com']) {
      assert.equal(addressClass(host), null, host);
    }
  });

  test('IPv6, with or without brackets and a zone: ::, ::1, fe80::/10, and the IPv4 addresses written inside IPv6', () => {
    const cases: [string, string | null][] = [
      ['::', 'unspecified'],
      ['[::]', 'unspecified'],
      ['0:0:0:0:0:0:0:0', 'unspecified'],
      ['::1', 'loopback'],
      ['[::1]', 'loopback'],
      ['::2', 'unspecified'], // ::0.0.0.2, IPv4-compatible
      ['1::1', null],
      ['::1:0', 'unspecified'], // ::0.1.0.0
      ['fe80::1', 'link-local'],
      ['fe80::1%eth0', 'link-local'],
      ['[fe80::1%25eth0]', 'link-local'],
      ['febf:ffff::1', 'link-local'],
      ['fec0::1', null],
      ['fe7f::1', null],
      ['2001:db8::1', null],
      ['::ffff:127.0.0.1', 'loopback'],
      ['[::ffff:7f00:1]', 'loopback'],
      ['::ffff:169.254.0.1', 'link-local'],
      ['::ffff:0.0.0.0', 'unspecified'],
      ['::ffff:10.0.0.1', null],
      ['::127.0.0.1', 'loopback'],
      ['::0.0.0.2', 'unspecified'],
      ['64:ff9b::127.0.0.1', 'loopback'],
      ['64:ff9b::a9fe:a9fe', 'link-local'],
      ['64:ff9b:1::127.0.0.1', null],
      ['65:ff9b::127.0.0.1', null],
      ['64:ff9a::127.0.0.1', null],
      ['1::ffff:127.0.0.1', null],
      ['0:0:0:0:1:ffff:7f00:1', null],
      ['0:0:0:0:0:fffe:7f00:1', null],
      ['0:0:0:0:0:0:7f00:1', 'loopback'],
      ['1:0:0:0:0:0:7f00:1', null],
      ['0:0:0:0:0:1:7f00:1', null],
      ['64:ff9b:0:0:0:1:7f00:1', null],
      ['::ffff:1.2.3', null],
      ['1::2::3', null],
      ['::g', null],
      ['1:2:3:4:5:6:7', null],
      ['1:2:3:4:5:6:7:8:9', null],
      ['1:2:3:4:5:6:7::8', null],
      ['12345::1', null],
      ['x', null],
      ['[::1', null],
      ['[::1x', null],
      ['x::1]', null],
      ['fe80x::1', null],
    ];
    for (const [host, expected] of cases) assert.equal(addressClass(host), expected, host);
  });

  test('addressKey: one spelling per address, whatever its source wrote', () => {
    const cases: [string, string | null][] = [
      ['10.0.0.1', '10.0.0.1'],
      ['255.255.255.255', '255.255.255.255'],
      ['256.0.0.1', null],
      ['example.com', null],
      ['::', '0:0:0:0:0:0:0:0'],
      ['::1', '0:0:0:0:0:0:0:1'],
      ['[::1]', '0:0:0:0:0:0:0:1'],
      ['2001:DB8::A:1', '2001:db8:0:0:0:0:a:1'],
      ['2001:db8:0:0:0:0:a:1', '2001:db8:0:0:0:0:a:1'],
      ['fe80::1%eth0', 'fe80:0:0:0:0:0:0:1'],
      ['::ffff:10.0.0.1', '10.0.0.1'],
      ['[::ffff:a00:1]', '10.0.0.1'],
      ['::10.0.0.1', '10.0.0.1'],
      ['64:ff9b::10.0.0.1', '10.0.0.1'],
      ['1:2:3:4:5:6:10.0.0.1', '1:2:3:4:5:6:a00:1'],
      ['1::10.0.0.1', '1:0:0:0:0:0:a00:1'],
      ['::ffff:10.0.0.256', null],
      ['1::2::3', null],
      ['1:2:3:4:5:6:7', null],
      ['1:2:3:4:5:6:7:8:9', null],
      [':::', null],
      ['1:2:3:4:5:6::7', '1:2:3:4:5:6:0:7'],
      ['12345::1', null],
      ['0x1::1', null],
      ['1234x::1', null],
      ['1::g', null],
      ['::1]', null],
      ['1:2:3:4:5:6:7::8', null],
      ['1.2.3', null],
      ['10', null],
      ['1.1.2.3.4', null],
    ];
    for (const [host, expected] of cases) assert.equal(addressKey(host), expected, host);
  });
});
