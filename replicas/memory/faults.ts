/**
 * Injectable faults of the in-memory replica client: fail the n-th call of
 * an operation, stall one until the test releases or aborts it, or cut a
 * read's body short. Counting starts when a fault is armed, so a test arms
 * a fault for "the next call" without knowing what ran before.
 *
 * @module
 */

import { LitestreamError } from "../../lib/errors.ts";
import type { ReplicaClient } from "../../lib/replica_client.ts";

/** The storage operations of a `ReplicaClient`, by method name. */
export type Operation = Exclude<
  keyof ReplicaClient,
  "type" | "location" | "store" | "describe" | "describeRecord" | "watchWal"
>;

/** The operations that return an object's bytes. */
export type ReadOperation = "readSnapshot" | "readWalSegment" | "readRecord";

/** A stalled call, held until `release()` or `abort()`. */
export interface Stall {
  /** Resolves when the stalled call has started (and is waiting). */
  readonly reached: Promise<void>;
  /** Lets the call proceed. */
  release(): void;
  /** Makes the call fail with `reason` (default: a `LitestreamError` naming the operation). */
  abort(reason?: unknown): void;
}

interface Armed {
  op: Operation;
  /** The call number (of `op`, counted by `Faults`) the fault applies to. */
  at: number;
  kind:
    | { fail: unknown }
    | { stall: Stall; wait: Promise<void>; reached: () => void }
    | { keepBytes: number };
}

/** Armed faults and per-operation call counts of one client. */
export class Faults {
  /** Calls so far, by operation (failed and stalled ones included). */
  readonly calls: Record<Operation, number> = {
    generations: 0,
    snapshots: 0,
    walSegments: 0,
    readSnapshot: 0,
    readWalSegment: 0,
    writeSnapshot: 0,
    writeWalSegment: 0,
    deleteSnapshot: 0,
    deleteWalSegments: 0,
    deleteGeneration: 0,
    records: 0,
    readRecord: 0,
    writeRecord: 0,
    deleteRecords: 0,
    readLease: 0,
    writeLease: 0,
  };
  #armed: Armed[] = [];

  /**
   * Makes the `nth` call of `op` from now (1 = the next) throw `error`
   * (default: a `LitestreamError` naming the operation). A failed write
   * consumes its data but stores nothing.
   */
  fail(op: Operation, nth = 1, error?: unknown): void {
    const err = error ?? new LitestreamError(`memory replica: injected ${op} failure`);
    this.#armed.push({ op, at: this.calls[op] + nth, kind: { fail: err } });
  }

  /** Holds the `nth` call of `op` from now (1 = the next) before it does anything. */
  stall(op: Operation, nth = 1): Stall {
    let release!: () => void;
    let abort!: (reason: unknown) => void;
    let reached!: () => void;
    const wait = new Promise<void>((res, rej) => {
      release = res;
      abort = rej;
    });
    wait.catch(() => {}); // observed by the stalled call
    const stall: Stall = {
      reached: new Promise<void>((res) => reached = res),
      release,
      abort: (reason) =>
        abort(reason ?? new LitestreamError(`memory replica: stalled ${op} aborted`)),
    };
    this.#armed.push({ op, at: this.calls[op] + nth, kind: { stall, wait, reached } });
    return stall;
  }

  /**
   * Makes the `nth` read of `op` from now (1 = the next) return only the
   * object's first `keepBytes` bytes, then end normally: a truncated body.
   */
  truncate(op: ReadOperation, keepBytes: number, nth = 1): void {
    this.#armed.push({ op, at: this.calls[op] + nth, kind: { keepBytes } });
  }

  /**
   * Counts a call of `op`, waits out a stall armed for it, and returns the
   * failure to throw or the byte limit of a truncated read, if one is armed.
   */
  async enter(op: Operation): Promise<{ fail?: unknown; keepBytes?: number }> {
    const n = ++this.calls[op];
    const mine = this.#armed.filter((a) => a.op === op && a.at === n);
    this.#armed = this.#armed.filter((a) => !mine.includes(a));
    const out: { fail?: unknown; keepBytes?: number } = {};
    for (const { kind } of mine) {
      if ("stall" in kind) {
        kind.reached();
        await kind.wait;
      } else if ("fail" in kind) out.fail = kind.fail;
      else out.keepBytes = kind.keepBytes;
    }
    return out;
  }
}
