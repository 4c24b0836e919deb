// Requests the gateway refuses before routing them: what a client may not send, whatever the configuration says.
// Each reason goes back to the client in a 400 problem body.

import { dotSegment, dotSegmentMessage } from '../routing/request-path.ts';
import type { GatewayRequest } from './messages.ts';

/** Why `req` is refused, or null. (Framing errors, bad header syntax and oversized heads never reach here: the HTTP
 *  server answers them itself; see docs/operations.md, "Hostile input".) */
export function refusalReason(req: GatewayRequest): string | null {
  // Two Host headers could route the request by one and reach the backend with the other (RFC 9112, 3.2: a MUST).
  const hosts = req.headers.get('host');
  if (hosts && hosts.length > 1) return 'the request has more than one Host header';
  const dot = dotSegment(req.path);
  if (dot !== null) return dotSegmentMessage(dot);
  return null;
}
