// The data every generated WAT module carries: names, values and requests that host functions are pointed at. Each
// entry is hostile in its own way (a framing header, a value with CR LF, a URL with credentials, a JWK whose public
// exponent is thousands of bits long...). Only the RSA key varies with the case; the rest is fixed text.

import type { Rng } from './prng.ts';

function base64url(bytes: Uint8Array): string {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * An RSA public JWK with a modulus of `bits` and a public exponent of `eBits` (less than the modulus, as OpenSSL
 * requires; it refuses exponents over 64 bits for moduli over 3072 bits): verifying costs the host a modular
 * exponentiation as long as the exponent, milliseconds where a normal key (e = 65537) costs microseconds. The
 * penetration test held the event loop 5-6 s with such keys.
 */
export function hostileRsaJwk(rng: Rng, bits: number, eBits: number): string {
  const n = rng.bytes(bits / 8);
  n[0]! |= 0x80;
  n[n.length - 1]! |= 1;
  const e = rng.bytes(Math.ceil(eBits / 8));
  const top = eBits - 8 * (e.length - 1);
  e[0] = (e[0]! & ((1 << top) - 1)) | (1 << (top - 1));
  e[e.length - 1]! |= 1;
  return JSON.stringify({ kty: 'RSA', n: base64url(n), e: base64url(e) });
}

/** The modulus of the pool's slow RSA key, in bytes: a signature must be this long to reach the exponentiation. */
export const SLOW_RSA_BYTES = 384;

/** The pool for one case. Keys name what each entry is for; the generator picks among them by role. */
export function dataPool(rng: Rng): Record<string, string | Uint8Array> {
  return {
    // names
    hdr: 'x-fuzz',
    hdrUpper: 'X-Fuzz-Upper',
    framing: 'content-length',
    badName: 'bad name\r\n',
    longName: 'x-' + 'a'.repeat(300),
    vary: 'vary',
    q: 'q',
    api: 'api',
    phase: 'phase',
    reqid: 'request-id',
    prefix: 'api-path-prefix',
    unknownName: 'no-such-name',
    errSource: 'source',
    errMessage: 'message',
    configUrl: 'url',
    // values
    val: 'v',
    valInject: 'ok\r\nx-injected: 1',
    valNul: 'a\u0000b',
    valWide: '\u4e2d\u6587',
    valLatin: 'caf\u00e9',
    urlEvil: 'http://127.0.0.1:9/evil',
    urlHttps: 'https://evil.example/base',
    urlCreds: 'http://user:pw@127.0.0.1/',
    urlQuery: 'http://127.0.0.1/?a=1',
    pathDots: '/a/../b',
    pathOk: '/fuzzed/path',
    pathPct: '/a/%2e%2e/b',
    queryRaw: 'a=1&b=2&q=3',
    method: 'DELETE',
    badMethod: 'GE T',
    status200: '200',
    status600: '600',
    statusText: 'abc',
    // effect requests
    counterReq: '{"key":"k","limit":100,"periodSeconds":60}',
    counterHuge: '{"key":"k","limit":1e308,"periodSeconds":1,"amount":1e308}',
    counterBad: '{"key":"","limit":-1}',
    leaseReq: '{"key":"k","limit":20,"ttlSeconds":300}',
    meterReq: '{"key":"k","periodSeconds":86400,"unit":"kilobytes"}',
    notJson: 'not json {',
    jsonArray: '[1,2]',
    httpBadHost: '{"method":"GET","url":"http://example.invalid/"}',
    httpFtp: '{"url":"ftp://127.0.0.1/"}',
    httpClosedPort: '{"url":"http://127.0.0.1:9/","timeoutMs":30000}',
    httpPrefix: '{"method":"POST","url":"',
    httpSuffix: '","body":"fuzz"}',
    // verify
    algRS: 'RS256',
    algES: 'ES256',
    algHS: 'HS256',
    algNone: 'none',
    jwkRsa: hostileRsaJwk(rng, 2048, 17),
    jwkRsaHugeE: hostileRsaJwk(rng, SLOW_RSA_BYTES * 8, SLOW_RSA_BYTES * 8 - 1),
    jwkEc: '{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}',
    jwkPrivate: '{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}',
    jwkBad: '{"kty":"RSA"}',
    signed: 'header.payload',
    sig: rng.bytes(512),
    // metric
    metricName: 'fuzz_metric',
    metricBadName: '9bad name',
    dims: 'a\u0000b\u0000',
    dimsOdd: 'a\u0000',
    dimsMany: Array.from({ length: 12 }, (_, i) => `d${i}\u0000v\u0000`).join(''),
    // messages
    logMsg: 'fuzz log line',
    failMsg: 'deliberate failure from the fuzzer',
  };
}

/** Which pool entries fit which argument role (hostile ones included on purpose). */
export const ROLES = {
  name: ['hdr', 'hdrUpper', 'framing', 'badName', 'longName', 'vary', 'q', 'api', 'phase', 'reqid', 'prefix', 'unknownName', 'errSource', 'errMessage', 'configUrl'],
  value: ['val', 'valInject', 'valNul', 'valWide', 'valLatin', 'urlEvil', 'urlHttps', 'urlCreds', 'urlQuery', 'pathDots', 'pathOk', 'pathPct', 'queryRaw', 'method', 'badMethod', 'status200', 'status600', 'statusText'],
  request: ['counterReq', 'counterHuge', 'counterBad', 'leaseReq', 'meterReq', 'notJson', 'jsonArray', 'httpBadHost', 'httpFtp', 'httpClosedPort'],
  alg: ['algRS', 'algES', 'algHS', 'algNone'],
  key: ['jwkRsa', 'jwkRsaHugeE', 'jwkEc', 'jwkPrivate', 'jwkBad'],
  data: ['signed', 'logMsg'],
  sig: ['sig'],
  metric: ['metricName', 'metricBadName'],
  dims: ['dims', 'dimsOdd', 'dimsMany'],
  message: ['logMsg', 'failMsg', 'longName', 'valWide'],
} as const;
