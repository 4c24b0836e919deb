// The gateway's WebSocket connections: how many are open (per gateway and per API, handshakes under way included, so
// that a flood of upgrades meets the limit before it opens backend connections), their metrics, and closing them all
// with 1001 at shutdown. They belong to the gateway, not to a configuration: one applied meanwhile leaves them open,
// and its limits apply to the upgrades that come after it.

import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Logger } from '../telemetry/logger.ts';
import type { MetricsRegistry } from '../telemetry/metrics.ts';
import { labelKey } from '../telemetry/labels.ts';
import { Tunnel, type TunnelLimits } from '../proxy/websocket.ts';

/** Connection durations, in seconds: from a quick exchange to a connection held through a working day. */
const DURATION_BUCKETS_S = [1, 10, 60, 300, 900, 3600, 14_400, 43_200];

export type UpgradeResult = 'upgraded' | 'refused' | 'not-allowed' | 'limit' | 'backend-refused' | 'backend-failed';

/** A place held for a connection from the start of its handshake: released, or turned into a tunnel. */
export interface Reservation {
  readonly api: string;
  release(): void;
}

export class WebSocketConnections {
  private readonly tunnels = new Set<Tunnel>();
  private readonly byApi = new Map<string, number>();
  private reserved = 0;
  private readonly upgrades;
  private readonly bytes;
  private readonly duration;

  constructor(
    private readonly logger: Logger,
    metrics: MetricsRegistry,
  ) {
    this.upgrades = metrics.counter('gatehouse_websocket_upgrades_total', 'WebSocket upgrade requests, by API and result (upgraded, refused, not-allowed, limit, backend-refused, backend-failed).');
    this.bytes = metrics.counter('gatehouse_websocket_bytes_total', 'Bytes passed through WebSocket connections, by API and direction (to-backend, to-client).');
    this.duration = metrics.histogram('gatehouse_websocket_duration_seconds', 'How long WebSocket connections stayed open, in seconds, by API.', DURATION_BUCKETS_S);
    metrics.gauge('gatehouse_websocket_connections', 'WebSocket connections open, handshakes under way included.', () => this.reserved);
  }

  counted(api: string, result: UpgradeResult): void {
    this.upgrades.inc({ api, result });
  }

  /**
   * Holds a place for a connection to `api`, or says which limit is reached: `gatewayMax` for the gateway,
   * `apiMax` (0: none) for the API.
   */
  reserve(api: string, gatewayMax: number, apiMax: number): Reservation | string {
    const onApi = this.byApi.get(api) ?? 0;
    if (this.reserved >= gatewayMax) return `the gateway holds ${this.reserved} WebSocket connections, its limit (settings.webSocket.maxConnections)`;
    if (apiMax > 0 && onApi >= apiMax) return `API ${api} holds ${onApi} WebSocket connections, its limit (webSocket.maxConnections)`;
    this.reserved++;
    this.byApi.set(api, onApi + 1);
    let released = false;
    return {
      api,
      release: () => {
        if (released) return;
        released = true;
        this.reserved--;
        const left = (this.byApi.get(api) ?? 1) - 1;
        if (left === 0) this.byApi.delete(api);
        else this.byApi.set(api, left);
      },
    };
  }

  /**
   * Pipes the client's socket and the backend's (the 101 head goes first); the reservation is released when both are
   * closed, `ended` called with the bytes each way.
   */
  open(
    reservation: Reservation,
    client: Duplex,
    backend: Socket,
    limits: TunnelLimits,
    start: { head101: string; clientHead: Buffer; backendEarly: Buffer; requestId: string },
    ended: (toBackend: number, toClient: number) => void,
  ): void {
    const api = reservation.api;
    const toBackend = labelKey({ api, direction: 'to-backend' });
    const toClient = labelKey({ api, direction: 'to-client' });
    const tunnel = new Tunnel(client, backend, limits, {
      bytes: (direction, n) => this.bytes.incKey(direction === 'toBackend' ? toBackend : toClient, n),
      ended: (end) => {
        this.tunnels.delete(tunnel);
        reservation.release();
        this.duration.observe({ api }, end.durationMs / 1000);
        this.logger.info('websocket closed', {
          requestId: start.requestId,
          api,
          durationMs: Math.round(end.durationMs),
          toBackend: end.toBackend,
          toClient: end.toClient,
          closedBy: end.closedBy ?? 'peer',
        });
        ended(end.toBackend, end.toClient);
      },
    });
    this.tunnels.add(tunnel);
    tunnel.start(start.head101, start.clientHead, start.backendEarly);
  }

  /** Connections piping (handshakes under way not included). */
  get piping(): number {
    return this.tunnels.size;
  }

  /** Shutdown: every connection gets close 1001; resolves when all are closed (CLOSE_GRACE_MS at most). */
  async closeAll(): Promise<void> {
    const all = [...this.tunnels];
    if (all.length > 0) this.logger.info('closing WebSocket connections', { open: all.length });
    for (const t of all) t.close(1001, 'gateway shutting down');
    await Promise.all(all.map((t) => t.done));
  }
}
