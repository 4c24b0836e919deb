// The access log: one JSON line a request. Its shape is fixed, so it is serialised by code that knows it rather than
// by walking a record object (the generic path cost about a tenth of the gateway's time per proxied request).

import { roundMs, type ExchangeError, type PolicyTiming } from '../policy-host/exchange.ts';
import { jsonString } from '../telemetry/logger.ts';

export interface AccessRecord {
  requestId: string;
  method: string;
  path: string;
  api: string;
  operation: string;
  status: number;
  /** Time to the response head. */
  durationMs: number;
  /** Backend time to its response head; null when the request never reached a backend. */
  backendMs: number | null;
  policies: readonly PolicyTiming[];
  error: ExchangeError | null;
  client: string;
  /** HTTP/1.1, HTTP/2... */
  protocol: string;
}

/** The record's fields as JSON members (`,"requestId":"…",…`), for Logger.logMembers. */
export function accessLogMembers(r: AccessRecord): string {
  let out =
    `,"requestId":${jsonString(r.requestId)},"method":${jsonString(r.method)},"path":${jsonString(r.path)}` +
    `,"api":${jsonString(r.api)},"operation":${jsonString(r.operation)},"status":${r.status}` +
    `,"durationMs":${roundMs(r.durationMs)},"backendMs":${r.backendMs === null ? 'null' : roundMs(r.backendMs)},"policies":[`;
  for (let i = 0; i < r.policies.length; i++) {
    const t = r.policies[i]!;
    out += `${i === 0 ? '' : ','}{"binding":${jsonString(t.binding)},"phase":"${t.phase}","ms":${t.ms},"outcome":"${t.outcome}"}`;
  }
  out += ']';
  const e = r.error;
  if (e) {
    out += `,"error":{"source":"${e.source}","reason":${jsonString(e.reason)},"message":${jsonString(e.message)}}`;
  }
  return `${out},"client":${jsonString(r.client)},"protocol":"${r.protocol}"`;
}
