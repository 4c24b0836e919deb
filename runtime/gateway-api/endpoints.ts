// The gateway API: what a gateway and its control plane say to each other over HTTP, defined once for both sides
// (runtime/sync/ calls it, runtime/control-plane/app.ts answers it). docs/control-plane.openapi.yaml describes the same
// endpoints for other clients.
//
// Every call carries the gateway token (tokens.ts) as `Authorization: GatewayKey <token>`.
// - GET config: the gateway's configuration document (JSON), with its ETag and REVISION_HEADER; conditional with
//   If-None-Match (304 when unchanged).
// - GET modules/<sha256>: a policy module's bytes, with the control plane's signature of them in SIGNATURE_HEADER
//   (module-signatures.ts).
// - POST heartbeat: HeartbeatPayload, answered HeartbeatReply.
// - POST telemetry: TelemetryPayload, answered TelemetryReply.
// Refusals are RFC 9457 problems (`detail`, and `reason` for a refused token).

import type { MinuteAggregate } from '../telemetry/aggregates.ts';

/** What telemetry carries: the gateway's per-minute aggregates (telemetry/aggregates.ts). */
export type { MinuteAggregate };

/** The routes, as the control plane declares them (`:sha256` is a module's digest). */
export type GatewayRoute = '/gateway/v1/config' | '/gateway/v1/modules/:sha256' | '/gateway/v1/heartbeat' | '/gateway/v1/telemetry';

export const CONFIG_PATH = '/gateway/v1/config' satisfies GatewayRoute;
export const HEARTBEAT_PATH = '/gateway/v1/heartbeat' satisfies GatewayRoute;
export const TELEMETRY_PATH = '/gateway/v1/telemetry' satisfies GatewayRoute;

const MODULE_ROUTE = '/gateway/v1/modules/:sha256' satisfies GatewayRoute;

/** The path of the module whose sha256 is `sha256` (hex). */
export const modulePath = (sha256: string): string => MODULE_ROUTE.replace(':sha256', sha256);

/** The revision of the configuration document served (a decimal number). */
export const REVISION_HEADER = 'x-gatehouse-revision';
/** The base64 Ed25519 signature of a module served. */
export const SIGNATURE_HEADER = 'x-gatehouse-signature';

const AUTHORIZATION_SCHEME = 'GatewayKey ';

/** The Authorization header of a gateway's call. */
export const gatewayAuthorization = (token: string): string => `${AUTHORIZATION_SCHEME}${token}`;

/** The token of an Authorization header; '' when it carries none. */
export const tokenOfAuthorization = (header: string): string =>
  header.startsWith(AUTHORIZATION_SCHEME) ? header.slice(AUTHORIZATION_SCHEME.length) : '';

/** Whether the control plane accepted the token at the last answer that tells (a 5xx does not). */
export type TokenState = 'unknown' | 'accepted' | 'refused';

/**
 * What an instance says of its configuration sync. Gateways of earlier versions send none of it: the control plane
 * reads each missing field as NO_SYNC_REPORT has it.
 */
export interface SyncReport {
  /** Where the configuration it serves came from: the control plane, its backup, or nowhere yet (null). */
  configSource: 'control-plane' | 'backup' | null;
  /** The last revision it refused, why (at most 200 characters) and when. */
  rejectedRevision: number | null;
  rejectedReason: string | null;
  rejectedAt: string | null;
  /** Whether the control plane accepted its token at its last poll. */
  tokenState: TokenState;
  /** Its last poll that the control plane answered, and the failed polls since. */
  lastSyncAt: string | null;
  syncFailures: number;
}

export const NO_SYNC_REPORT: SyncReport = {
  configSource: null,
  rejectedRevision: null,
  rejectedReason: null,
  rejectedAt: null,
  tokenState: 'unknown',
  lastSyncAt: null,
  syncFailures: 0,
};

/** The body of POST heartbeat (docs/control-plane.md lists the fields). */
export interface HeartbeatPayload extends SyncReport {
  /** The process's id, new at each start. */
  instance: string;
  host: string;
  /** The gateway's version (package.json's). */
  version: string;
  /** The revision in force, from the control plane or from the backup; null while nothing is. */
  revision: number | null;
  uptimeSeconds: number;
  /** `ready` or `not-ready`. */
  health: string;
}

export interface HeartbeatReply {
  /** The control plane's latest revision. */
  revision: number;
}

/** The body of POST telemetry. */
export interface TelemetryPayload {
  instance: string;
  /** Aggregates the gateway dropped, all told, because it could not deliver them in time. */
  dropped: number;
  /** At most 1000. */
  aggregates: readonly MinuteAggregate[];
}

export interface TelemetryReply {
  accepted: number;
}
