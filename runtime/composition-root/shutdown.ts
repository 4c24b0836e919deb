// How a running gateway stops. Not ready first: it serves on for the shutdown delay, so that load balancers see the
// probe fail and stop sending. Then no new connections, in-flight requests given up to the shutdown timeout,
// telemetry flushed in what is left of it, and every part closed; requests still running at the timeout are cut off
// (their backend connections destroyed, not waited on).

import type { GatewayEffects } from '../pipeline/effects.ts';
import type { Listener } from '../server/http-server.ts';
import type { Forwarder } from '../proxy/forward.ts';
import type { CounterStore } from '../state/counter-store.ts';
import type { CacheStore } from '../state/cache-store.ts';
import type { ConfigSync } from '../sync/config-sync.ts';
import type { ControlPlaneClient } from '../sync/control-plane-client.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { RequestTelemetry } from '../telemetry/request-telemetry.ts';
import type { EchoBackend } from '../server/echo.ts';
import type { Gateway } from '../gateway/gateway.ts';

/** Telemetry gets this long to flush at shutdown even when in-flight requests used up the shutdown timeout. */
export const TELEMETRY_FLUSH_MIN_MS = 1000;

/** What a running gateway holds open. */
export interface GatewayParts {
  gateway: Gateway;
  logger: Logger;
  /** The data plane's listeners. */
  listeners: Listener[];
  admin: Listener;
  /** The configuration file's watcher and its `source:` policies' (stopped together). */
  watcher: { stop(): Promise<void> } | null;
  sync: ConfigSync | null;
  controlPlane: ControlPlaneClient | null;
  telemetry: RequestTelemetry | null;
  forwarder: Forwarder;
  effects: GatewayEffects;
  echo: EchoBackend;
  counters: CounterStore;
  cache: CacheStore;
}

export interface ShutdownTimes {
  /** How long the gateway answers not-ready while still serving (default 0). */
  shutdownDelayMs?: number;
  /** How long in-flight requests get once the gateway stops accepting. */
  shutdownTimeoutMs: number;
}

/**
 * The gateway's stop(delayMs): a second call joins the first, and ends its delay early when it asks for none (a
 * second SIGTERM). `delayMs` defaults to the shutdown delay.
 */
export function shutdown(parts: GatewayParts, times: ShutdownTimes): (delayMs?: number) => Promise<void> {
  const { gateway, logger } = parts;
  let stopping: Promise<void> | null = null;
  let endDelay: (() => void) | null = null;
  return (delayMs = times.shutdownDelayMs ?? 0) => {
    if (stopping && delayMs === 0) endDelay?.();
    return (stopping ??= (async () => {
      gateway.beginShutdown();
      if (delayMs > 0) {
        // Configuration sync goes on meanwhile: the gateway still serves, so it serves the current configuration.
        logger.info('not ready: serving on until load balancers have seen it', { delayMs, inFlight: gateway.inFlightCount() });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          endDelay = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        endDelay = null;
      }
      logger.info('no longer accepting connections: draining', { inFlight: gateway.inFlightCount() });
      const deadline = performance.now() + times.shutdownTimeoutMs;
      void parts.watcher?.stop();
      // A poll under way finishes (and writes its backup) before the process goes.
      const syncStopped = parts.sync?.stop();
      // WebSocket connections get close 1001 now, not at the start of the delay: they are served through it.
      const closed = Promise.all([...parts.listeners.map((l) => l.close()), gateway.closeWebSockets()]);
      const drained = gateway.drained().then(() => closed);
      let timeout: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        drained.then(() => false),
        new Promise<boolean>((r) => (timeout = setTimeout(() => r(true), times.shutdownTimeoutMs))),
      ]);
      // Cleared rather than unref'd: the process goes as soon as it is stopped, under Node and Deno alike.
      clearTimeout(timeout);
      if (timedOut) logger.warn('shutdown timeout: in-flight requests cut off', { inFlight: gateway.inFlightCount() });
      // The requests just finished are in it: telemetry is flushed in what is left of the shutdown timeout.
      const flushed = parts.telemetry?.close(Math.max(TELEMETRY_FLUSH_MIN_MS, deadline - performance.now()));
      await syncStopped;
      await parts.controlPlane?.close();
      await parts.admin.close();
      // Past the timeout, requests still running are cut: their backend connections are destroyed, not waited on.
      await gateway.config?.close(timedOut);
      await parts.forwarder.close(timedOut);
      await parts.effects.close(timedOut);
      await parts.echo.close();
      await parts.counters.close?.();
      await parts.cache.close?.();
      await flushed;
      logger.info('stopped');
    })());
  };
}
