// A poll loop: `check` now and then every interval, never two at once, until stopped. The configuration file watcher
// and the control plane's config sync both poll this way.

export class Poller {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  private inFlight: Promise<void> | null = null;

  constructor(
    private readonly check: () => Promise<void>,
    private readonly intervalMs: number,
  ) {}

  /** Starts polling (the first check runs at once). Calling it again does nothing. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops polling; resolves when a check under way has finished. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
  }

  /** A check now, or the one under way; resolves when it has finished. */
  poll(): Promise<void> {
    this.inFlight ??= this.check().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  private schedule(ms: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.poll().finally(() => this.schedule(this.intervalMs));
    }, ms);
    // A poll loop alone does not keep the process alive (shutdown closes the listeners, then stops it).
    this.timer.unref?.();
  }
}
