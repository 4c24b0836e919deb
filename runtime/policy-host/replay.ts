// Calls of a deterministic handler answered without running it (abi/policy-abi.md, section 2, `deterministic`).
//
// A module may declare that what its handlers change depends only on what they read through `get`. The host then
// records what a call read (field, name, value, in order) and what it changed (each write and its status), and keeps
// the calls it recorded as a tree: each step is a read, each branch a value it returned, each leaf what the call
// changed. A later call of the same handler of the same binding walks the tree, reading each field from its own
// exchange; when every value has a branch, the changes at the leaf are made again, and the module is not called.
// In bench:policy's hot loop a replay of cors, key-auth, rewrite-uri or set-header took 0.1 to 1.2 us where their
// calls took 1.8 to 6.5; in a gateway, where their code and memory are cold between requests, the modules' share of
// bench:proxy's five policies fell from 15 to 5 us a request (the rate limit's, which counts and is not replayed).
//
// What keeps it sound:
// - A call is kept only if it did nothing but read fields, write fields and respond: a call that asked for an effect,
//   logged, emitted a metric, read the clock, listed names, checked a signature, used WASI or Extism's variables, read
//   a body or a value of more than MAX_VALUE_CHARS, or failed, is not kept (`stop`).
// - Reads are checked against the exchange as it is before the call. A read of a field the call may have changed
//   itself (any field but CONFIG, CONTEXT, ROUTE_PARAM, CLIENT_ADDRESS and ERROR) after its first write stops the
//   recording, so a kept read is one the module made of the state the walk reads.
// - Writes are made again through the exchange, with its checks, inside a transaction: one whose status differs from
//   the recorded one (a query that has grown past its limit, say) rolls the replay back, and the module is called.
// - The tree of a handler holds at most MAX_CALLS calls and MAX_CHARS characters (names, values, steps), and the trees
//   of a gateway together at most the characters of their ReplayBudget; past any of these a tree is emptied, and nothing
//   is recorded for its next REST_CALLS calls (traffic whose values rarely repeat does not pay for recording on every
//   call). Clients sending values that never repeat to many APIs cannot make the gateway keep more than the budget.
// A module that declares itself deterministic and is not (a counter kept in a global, say) only changes its own
// behaviour: what a replay does is what the same module did before with the same values, checked again.

import { Field } from '../../abi/index.ts';
import type { CallRecorder, CallView, WriteOp } from './instance.ts';

/** Longest name or value a kept call may read or write, in characters (a header value is rarely longer). */
export const MAX_VALUE_CHARS = 4096;
/** Most reads and writes one kept call may have made. */
export const MAX_STEPS = 64;
/** Most calls a handler's tree keeps. */
export const MAX_CALLS = 512;
/**
 * What a handler's tree may hold, in characters of the names and values it keeps (2 bytes each at most) plus
 * STEP_CHARS for each read and change (the objects that hold them): a module whose every call reads other values
 * makes the host keep some hundreds of KB for it at most.
 */
const MAX_CHARS = 128 * 1024;
const STEP_CHARS = 64;
/** Calls of a handler not recorded after its tree was emptied. */
export const REST_CALLS = 4096;
/** What the trees of one gateway may hold together, in the characters MAX_CHARS counts (some tens of MB at most). */
export const GATEWAY_REPLAY_CHARS = 4 * 1024 * 1024;

/** The characters the trees sharing it hold: one for a policy host's bindings. */
export class ReplayBudget {
  used = 0;
  constructor(readonly maxChars: number = GATEWAY_REPLAY_CHARS) {}
}

/** Slots of one read (field, name, value) and of one change (op, field, name, value, status) in a recording. */
const READ_STRIDE = 3;
const CHANGE_STRIDE = 5;

/** What a read returned: a text, null (NOT_FOUND) or a status. */
type ReadValue = string | number | null;

/** What a replay makes again: a write of a field, or `respond`. */
type ChangeOp = WriteOp | 'respond';

/** Fields no write of the call can change: read after a write, they still read what the exchange held before it. */
function fixedDuringCall(field: number): boolean {
  return (
    field === Field.CONFIG ||
    field === Field.CONTEXT ||
    field === Field.ROUTE_PARAM ||
    field === Field.CLIENT_ADDRESS ||
    field === Field.ERROR
  );
}

/** What one call of a handler read and changed, while it runs. */
export class CallRecording implements CallRecorder {
  /** Still replayable: nothing the call did so far stops it from being kept. */
  open = true;
  /** Reads in order: field, name, value. */
  readonly reads: unknown[] = [];
  /** Changes in order: op, field, name, value, status. */
  readonly changes: unknown[] = [];
  chars = 0;
  private wrote = false;

  /**
   * `computedKeys`: the configuration keys the binding computes for each call. The others hold the values the binding
   * was made with for its whole life, so reading one is no input to key on (the whole configuration, name "", is one
   * when a key is computed).
   */
  constructor(private readonly computedKeys: ReadonlySet<string> | null) {}

  /** The call did something a replay cannot make again, or read what its tree cannot key on. */
  stop(): void {
    this.open = false;
  }

  read(field: number, name: string, value: string | Uint8Array | number | null): void {
    if (!this.open) return;
    if (typeof value === 'object' && value !== null) return this.stop();
    if (field === Field.CONFIG && (this.computedKeys === null || (name !== '' && !this.computedKeys.has(name)))) return;
    if (this.wrote && !fixedDuringCall(field)) return this.stop();
    const size = name.length + (typeof value === 'string' ? value.length : 0);
    if (!this.fits(size)) return;
    this.reads.push(field, name, value);
  }

  change(op: ChangeOp, field: number, name: string, value: string | Uint8Array | number | null, status: number): void {
    if (!this.open) return;
    this.wrote = true;
    const size = name.length + (value === null || typeof value === 'number' ? 0 : typeof value === 'string' ? value.length : value.byteLength);
    if (!this.fits(size)) return;
    // A body is kept as a copy of what the module wrote: the exchange may hand the one it was given to the client.
    this.changes.push(op, field, name, value instanceof Uint8Array ? value.slice() : value, status);
  }

  private fits(size: number): boolean {
    if (size > MAX_VALUE_CHARS || this.reads.length / READ_STRIDE + this.changes.length / CHANGE_STRIDE >= MAX_STEPS) {
      this.stop();
      return false;
    }
    this.chars += size + STEP_CHARS;
    return true;
  }
}

/** A read of the tree: where the calls that made it went on, by the value it returned. */
class ReadStep {
  readonly next = new Map<ReadValue, ReadStep | Outcome>();
  constructor(
    readonly field: number,
    readonly name: string,
  ) {}
}

/** What a kept call changed, in order: op, field, name, value, status. */
class Outcome {
  constructor(readonly changes: readonly unknown[]) {}
}

/** The calls of one handler of one binding that can be answered again (see the header). */
export class ReplayTable {
  private root: ReadStep | Outcome | undefined = undefined;
  private calls = 0;
  private chars = 0;
  /** Calls left before recording starts again, after the tree was emptied. */
  private resting = 0;

  /**
   * `computedKeys`: the binding's configuration keys computed for each call, if any (CallRecording); `budget`: what it
   * shares with the other trees of the gateway.
   */
  constructor(
    private readonly computedKeys: ReadonlySet<string> | null,
    private readonly budget: ReplayBudget,
  ) {}

  /** A recording for the next call, or null while resting. */
  recording(): CallRecording | null {
    if (this.resting > 0) {
      this.resting--;
      return null;
    }
    return new CallRecording(this.computedKeys);
  }

  /** What a call would change, read from `view` as it is now; null when no kept call read the same values. */
  lookup(view: CallView): Outcome | null {
    let node = this.root;
    while (node instanceof ReadStep) {
      const value = view.read(node.field, node.name);
      // A body: no kept call read one.
      if (typeof value === 'object' && value !== null) return null;
      node = node.next.get(value);
    }
    return node ?? null;
  }

  /** Makes `outcome`'s changes again; false when one's status differs from the recorded call's (the caller rolls back). */
  static apply(outcome: Outcome, view: CallView): boolean {
    const changes = outcome.changes;
    for (let i = 0; i < changes.length; i += CHANGE_STRIDE) {
      const op = changes[i] as ChangeOp;
      const value = changes[i + 3];
      const status =
        op === 'respond'
          ? view.respond(value as number)
          : view.write(op, changes[i + 1] as number, changes[i + 2] as string, value instanceof Uint8Array ? value.slice() : (value as string | null));
      if (status !== changes[i + 4]) return false;
    }
    return true;
  }

  /** Drops every kept call and gives their characters back to the budget. */
  empty(): void {
    this.budget.used -= this.chars;
    this.root = undefined;
    this.calls = 0;
    this.chars = 0;
  }

  /** Keeps a call that succeeded with its recording open. */
  keep(recording: CallRecording): void {
    const size = recording.chars;
    if (this.calls >= MAX_CALLS || this.chars + size > MAX_CHARS || this.budget.used + size > this.budget.maxChars) {
      this.empty();
      this.resting = REST_CALLS;
      return;
    }
    this.calls++;
    this.chars += size;
    this.budget.used += size;
    const reads = recording.reads;
    const outcome = new Outcome(recording.changes);
    if (reads.length === 0) {
      this.root = outcome;
      return;
    }
    // The module read something else at this point than the calls kept before (its own state differed, a
    // configuration read once, say): the new path replaces what was there.
    let node = stepFor(this.root, reads[0], reads[1]);
    this.root = node;
    for (let i = 0; ; i += READ_STRIDE) {
      const value = reads[i + 2] as ReadValue;
      if (i + READ_STRIDE >= reads.length) {
        node.next.set(value, outcome);
        return;
      }
      const next = stepFor(node.next.get(value), reads[i + READ_STRIDE], reads[i + READ_STRIDE + 1]);
      node.next.set(value, next);
      node = next;
    }
  }
}

/** `kept` when it is the read of `field` `name`, else a new step for that read, which replaces what was kept there. */
function stepFor(kept: ReadStep | Outcome | undefined, field: unknown, name: unknown): ReadStep {
  return kept instanceof ReadStep && kept.field === field && kept.name === name ? kept : new ReadStep(field as number, name as string);
}
