// Tokens signed as a control plane signs them, with its own token key: read from its database, to make tokens its admin
// API would not (expired, too long-lived, or of the earlier format).

import { createHmac } from 'node:crypto';
import { withControlPlaneDb } from './control-plane-db.ts';

/** The token key of the control plane whose data folder is `dataDir`. */
export function tokenKeyOf(dataDir: string): Buffer {
  const hex = withControlPlaneDb(dataDir, `process.stdout.write(db.prepare("SELECT value FROM secrets WHERE name='gateway-token-key'").get().value.toString('hex'))`);
  return Buffer.from(hex, 'hex');
}

/**
 * A token of the earlier format, `gw1.<gateway>.<generation>.<expiry>.<signature>` (no id), signed as control planes
 * issued them before tokens had ids: what a gateway running at the upgrade holds.
 */
export function earlierFormatToken(key: Buffer, gateway: string, generation: number, expires: number): string {
  const body = `gw1.${gateway}.${generation}.${expires}`;
  return `${body}.${createHmac('sha256', key).update(body).digest('base64url')}`;
}
