// The endpoints of a Service as kube-proxy keeps them: each gateway's probe is polled on a short period, and traffic
// goes round robin to the gateways whose last probe answered 200. A gateway that turns not-ready is left out from the
// next poll on; a request picked just before that still goes to it (which the gateway's shutdown delay is for).

import { Agent, request } from 'undici';

export interface Endpoint {
  name: string;
  /** Base URL of the gateway's data plane. */
  url: string;
  ready: boolean;
}

/** A change of an endpoint's readiness, as the poller saw it. */
export interface ReadinessChange {
  endpoint: string;
  ready: boolean;
  /** What the probe answered: 200, 503, or the connection error's code. */
  seen: number | string;
  /** Date.now() of the poll's answer. */
  at: number;
}

export class ReadyEndpoints {
  private readonly endpoints: Endpoint[] = [];
  private readonly agent = new Agent({ connections: 2 });
  private timer: NodeJS.Timeout | null = null;
  private turn = 0;
  private polling = false;
  readonly changes: ReadinessChange[] = [];

  constructor(
    private readonly probePath: string,
    private readonly intervalMs: number,
  ) {}

  /** Adds a gateway, not ready until its probe answers 200. */
  add(name: string, url: string): Endpoint {
    const endpoint = { name, url, ready: false };
    this.endpoints.push(endpoint);
    return endpoint;
  }

  get(name: string): Endpoint {
    const endpoint = this.endpoints.find((e) => e.name === name);
    if (!endpoint) throw new Error(`no endpoint ${name}`);
    return endpoint;
  }

  /** The next ready endpoint, round robin; null when none is ready. */
  next(): Endpoint | null {
    for (let i = 0; i < this.endpoints.length; i++) {
      const endpoint = this.endpoints[this.turn++ % this.endpoints.length]!;
      if (endpoint.ready) return endpoint;
    }
    return null;
  }

  start(): void {
    const tick = () => {
      // A poll slower than the period (a loaded machine) is not stacked on.
      if (!this.polling) {
        this.polling = true;
        void this.pollAll().finally(() => (this.polling = false));
      }
    };
    this.timer = setInterval(tick, this.intervalMs);
    tick();
  }

  /** Polls every endpoint once now (also before start(), to wait for a fleet to be ready). */
  async pollAll(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => this.poll(e)));
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.agent.destroy();
  }

  private async poll(endpoint: Endpoint): Promise<void> {
    let seen: number | string;
    try {
      const res = await request(`${endpoint.url}${this.probePath}`, {
        dispatcher: this.agent,
        headersTimeout: 1000,
        bodyTimeout: 1000,
      });
      await res.body.dump();
      seen = res.statusCode;
    } catch (err) {
      seen = (err as { code?: string }).code ?? (err as Error).message;
    }
    const ready = seen === 200;
    if (ready !== endpoint.ready) {
      endpoint.ready = ready;
      this.changes.push({ endpoint: endpoint.name, ready, seen, at: Date.now() });
    }
  }
}
