// What differs between the runtimes the gateway runs on, behind one interface. The core (routing, pipeline, policy
// host, proxy, sync, telemetry) is written against the node: built-ins that Node and Deno both provide, and never
// imports an adapter; where the two behave differently in a way that matters, the difference is a part of this
// interface, and each runtime's adapter (node/, deno/) supplies its own. The composition roots choose the adapter
// (index.ts) and hand its parts to the core.

import type { ConnectorFactory } from '../network/connector.ts';
import type { BudgetClocks } from '../policy-host/index.ts';
import type { LogWriter } from '../telemetry/log-sink.ts';

export interface RuntimeAdapter {
  readonly runtime: 'node' | 'deno';
  /** Wall-clock and CPU time, which the policies' CPU budgets read. */
  readonly clocks: BudgetClocks;
  /** Connections to backends and to the destinations of policies' HTTP effects. */
  readonly connector: ConnectorFactory;
  /** The process's standard output, for the bounded log sink; made on first use. */
  stdout(): LogWriter;
}
