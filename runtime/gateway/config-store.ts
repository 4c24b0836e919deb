// The one owner of the configuration in force. Every document reaches the gateway through offer(): the file at start
// and each change the watcher sees, each revision config sync takes from the control plane or from its backup. A
// document is parsed, checked and bound in full first, then swapped in at once; one that fails leaves the
// configuration in force untouched. Requests keep the configuration they started with (LiveConfig.enter/leave); the
// one replaced closes its backend pools once its last request is done.

import type { Logger } from '../telemetry/logger.ts';
import type { MetricsRegistry } from '../telemetry/metrics.ts';
import type { LiveConfig } from './live-config.ts';

/** A document made ready to serve: what the gateway runs, and the secret values no log line may show. */
export interface PreparedConfig {
  live: LiveConfig;
  secrets: readonly string[];
}

/** Parses, checks and binds a document (the composition root knows from where: a file, or the control plane). */
export type PrepareConfig = (text: string) => Promise<PreparedConfig>;

export class ConfigStore {
  private live: LiveConfig | null = null;
  private readonly reloads;

  constructor(
    private readonly prepare: PrepareConfig,
    private readonly logger: Logger,
    metrics: MetricsRegistry,
  ) {
    this.reloads = metrics.counter('gatehouse_config_reloads_total', 'Configuration documents applied or rejected, by result.');
  }

  /** The configuration in force; null until a first document is applied. */
  get current(): LiveConfig | null {
    return this.live;
  }

  /**
   * Puts `text` in force once it is checked and bound, or throws why not (a ConfigError lists every problem), the
   * configuration in force staying as it was. `counted`: false for the first document of a start, which is not a reload.
   */
  async offer(text: string, counted = true): Promise<LiveConfig> {
    let next: PreparedConfig;
    try {
      next = await this.prepare(text);
    } catch (err) {
      if (counted) this.reloads.inc({ result: 'rejected' });
      throw err;
    }
    const previous = this.live;
    this.live = next.live;
    next.live.activate();
    this.logger.maskSecrets(next.secrets);
    if (previous) void previous.retire().catch((err: unknown) => this.logger.warn('closing old backends failed', { error: String(err) }));
    if (counted) this.reloads.inc({ result: 'applied' });
    return next.live;
  }
}
