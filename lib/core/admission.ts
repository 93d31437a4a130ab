/**
 * Letting another process's checkpoint through. Our long read transaction keeps other
 * connections from checkpointing past frames we have not copied (spec §4.2); an application's
 * FULL, RESTART or TRUNCATE checkpoint then waits its whole busy timeout holding SQLite's write
 * lock, and the application's writers freeze behind it. Once the WAL-index shows every
 * committed frame in the shadow WAL, nothing is lost by letting it through, provided our read
 * never lets a frame beyond the shadow be backfilled (see `admit`): the WAL restart it makes
 * is the next index of the same generation, as if we had checkpointed.
 *
 * SQLite facts this rests on: a checkpointer backfills past a reader only up to its read mark,
 * restarts the WAL only when no reader holds read marks 1–4, and backfills nothing while a
 * reader holds read mark 0, which SQLite gives a read begun on a fully backfilled WAL.
 *
 * `LITESTREAM_ADMIT_CHECKPOINTS=0` turns it off (see `checkpoint.ts`).
 *
 * @module
 */

import { equalBytes } from "../os/bytes.ts";
import { sleep } from "../os/async.ts";
import { decodeWalHeader, frameSize, WAL_HEADER_SIZE } from "../sqlite/wal.ts";
import { checkpointSentinel } from "./checkpoint.ts";
import type { DbHandles } from "./handles.ts";
import type { ShadowState } from "./shadow_wal.ts";

/**
 * Longest we stay out of the way of another process's checkpoint. It holds SQLite's write
 * lock all the while, so nothing can be committed meanwhile; the bound only keeps us from
 * waiting forever on a checkpointer that is stuck.
 */
const ADMIT_MAX_MS = 30_000;

/**
 * How often a checkpointer waiting on us is looked for on a database whose application has
 * run one in the last {@linkcode RECENT_MS}: it holds SQLite's write lock while it waits, so
 * this bounds how long the application's writers stall. Elsewhere once a monitor-interval.
 */
const FAST_PROBE_MS = 20;
const RECENT_MS = 10 * 60_000;

/**
 * How often it is looked for between two ticks on a database being written: an application
 * that writes may checkpoint next. Idle databases are probed once a monitor-interval.
 */
export const ACTIVE_PROBE_MS = 100;

/** The checkpoints let through for one database, and the one restart each may make. */
export class CheckpointAdmission {
  /**
   * The shadow header under which the WAL's next restart loses nothing: a checkpoint was let
   * through, or our own left every frame copied and backfilled (`restartSafe`).
   */
  #under: Uint8Array | undefined;
  /** When one was last let through (performance.now() time). */
  #lastAt = -Infinity;

  /** True when this database's application has run such a checkpoint lately. */
  get recent(): boolean {
    return performance.now() - this.#lastAt < RECENT_MS;
  }

  /**
   * The process-wide sentinel's watch for a checkpointer waiting on us (`waiting`), every
   * `periodMs`, or every {@linkcode FAST_PROBE_MS} while {@linkcode recent}.
   */
  watch(waiting: () => boolean, periodMs: number): { signal: AbortSignal } & Disposable {
    return checkpointSentinel.watch(waiting, this.recent ? FAST_PROBE_MS : periodMs);
  }

  /**
   * Lets the waiting checkpointer through when the WAL-index shows every committed frame in
   * `shadow`; returns its pid and how long it took, or undefined when it did not. Our read
   * transaction is not given up, only begun again: first at the WAL's end, which no longer
   * limits the backfill but still blocks a restart; then, once everything is backfilled,
   * afresh, which SQLite serves from read mark 0: that lets the restart through but blocks
   * the backfill of any later frame, so no later restart can drop a frame before we copy it.
   *
   * The checkpointer seen waiting may give up (its busy timeout) at any moment, and a commit
   * land before our new read begins: that read would let the commit be backfilled, and read
   * mark 0 would then let a restart drop it. So the WAL-index is read again once the new
   * read has begun, and only one still at the shadow's end goes on to read mark 0.
   */
  async admit(
    h: DbHandles,
    shadow: ShadowState,
    pageSize: number,
  ): Promise<{ pid?: number; ms: number } | undefined> {
    if (walState(h, shadow, pageSize) !== "copied") return undefined;
    const pid = h.checkpointerPid();
    const started = performance.now();
    this.#under = shadow.headerBytes;
    await h.renewReadTx();
    const state = walState(h, shadow, pageSize);
    if (state !== "copied" && state !== "restarted") {
      // Frames beyond the shadow: our read pins them against a restart until they are copied.
      this.#under = undefined;
      return undefined;
    }
    while (
      state === "copied" && h.checkpointerHoldsLocks() &&
      performance.now() - started < ADMIT_MAX_MS
    ) {
      const index = h.walIndex();
      // Restarted: what we let through is done, and the new WAL's frames are not copied yet.
      if (!index || !equalBytes(index.salt, salt(shadow))) break;
      if (index.nBackfill < index.mxFrame) {
        await sleep(1);
        continue;
      }
      // Backfilled, so no further than the shadow's end: our read mark must no longer hold the
      // restart back.
      await h.renewReadTx();
      break;
    }
    this.#lastAt = performance.now();
    return { pid, ms: Math.round(this.#lastAt - started) };
  }

  /**
   * True when the WAL has a new header after we let a checkpoint through under `shadow`'s: the
   * one restart that can have happened since. Salts cannot tell: a connection that never
   * restarted the WAL itself writes random ones.
   */
  isRestart(shadow: ShadowState, walHeader: Uint8Array): boolean {
    if (!this.admittedUnder(shadow)) return false;
    if (equalBytes(walHeader, shadow.headerBytes)) return false;
    const next = decodeWalHeader(walHeader);
    return typeof next !== "string" && next.pageSize === shadow.header.pageSize;
  }

  /**
   * True when a checkpoint was let through under `shadow`'s header: the WAL's one restart since
   * (a new header, or a TRUNCATE emptying it) may be under way or done.
   */
  admittedUnder(shadow: ShadowState): boolean {
    return !!this.#under && equalBytes(this.#under, shadow.headerBytes);
  }

  /**
   * Notes that a restart of the WAL under `shadow`'s header would lose nothing: our own
   * checkpoint copied and backfilled every frame, and our read began on read mark 0, which keeps
   * any later frame from being backfilled. The application may restart the WAL then without
   * waiting for us (a fully backfilled WAL needs no admission); that restart is followed like one
   * let through, not taken for a loss.
   */
  restartSafe(shadow: ShadowState): void {
    this.#under = shadow.headerBytes;
  }

  /** Forgets what was let through: our read transaction was not held throughout. */
  forget(): void {
    this.#under = undefined;
  }
}

/** The shadow's salts, as the WAL header and the WAL-index hold them. */
function salt(shadow: ShadowState): Uint8Array {
  return shadow.headerBytes.subarray(16, 24);
}

/**
 * What the WAL-index says of the WAL against `shadow`: every committed frame copied, frames
 * beyond it (or an unreadable index: the same caution), or restarted since.
 */
function walState(
  h: DbHandles,
  shadow: ShadowState,
  pageSize: number,
): "copied" | "beyond" | "restarted" {
  const index = h.walIndex();
  if (!index) return "beyond";
  if (!equalBytes(index.salt, salt(shadow))) return "restarted";
  return index.mxFrame === (shadow.size - WAL_HEADER_SIZE) / frameSize(pageSize)
    ? "copied"
    : "beyond";
}
