// The checks every request passes before routing (runtime/gateway/request-checks.ts), called directly with requests as
// the platform adapter hands them over: what they refuse, the reason the client reads, and what they let through.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { headerMap } from '../runtime/policy-host/exchange.ts';
import type { GatewayRequest } from '../runtime/gateway/messages.ts';
import { refusalReason } from '../runtime/gateway/request-checks.ts';

function request(path: string, headers: Record<string, string | string[]> = { host: 'api.test' }): GatewayRequest {
  return { method: 'GET', path, query: '', headers: headerMap(headers), remoteAddress: '127.0.0.1', scheme: 'http', protocol: 'HTTP/1.1', body: null };
}

const DOT_REFUSAL = '"." and ".." segments are refused, they could reach outside the API\'s backend path';

describe('request checks', () => {
  test('an ordinary request, with one Host header or none, is not refused', () => {
    assert.equal(refusalReason(request('/orders/42')), null);
    assert.equal(refusalReason(request('/v1.2/file.txt')), null);
    assert.equal(refusalReason(request('/orders', {})), null);
  });

  test('two Host headers are refused, whatever the path', () => {
    assert.equal(refusalReason(request('/orders', { host: ['api.test', 'other.test'] })), 'the request has more than one Host header');
    assert.equal(refusalReason(request('/../x', { host: ['api.test', 'api.test'] })), 'the request has more than one Host header');
  });

  test('a dot segment, plain or encoded, is refused with the segment named', () => {
    assert.equal(refusalReason(request('/api/../admin')), `the path has the dot segment "..": ${DOT_REFUSAL}`);
    assert.equal(refusalReason(request('/api/./x')), `the path has the dot segment ".": ${DOT_REFUSAL}`);
    assert.equal(
      refusalReason(request('/api/%2e%2e/admin')),
      `the path has the segment "%2e%2e", a dot segment once decoded: ${DOT_REFUSAL}`,
    );
  });
});
