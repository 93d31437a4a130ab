/**
 * Checkpoints, ours and the application's: v0.3.13's policy for when we checkpoint (spec
 * §4.9), and the process-wide sentinel that notices, for idle databases, another process's checkpoint
 * waiting on our read transaction (see `DB.checkpointerWaiting`).
 *
 * @module
 */

import { LitestreamError } from "../errors.ts";
import { frameSize, WAL_HEADER_SIZE } from "../sqlite/wal.ts";

/** SQLite checkpoint modes Litestream uses. */
export type CheckpointMode = "PASSIVE" | "RESTART" | "TRUNCATE";

/** The thresholds of the checkpoint policy (page counts; 0 disables a rule). */
export interface CheckpointThresholds {
  minCheckpointPageCount: number;
  maxCheckpointPageCount: number;
  truncatePageCount: number;
}

/**
 * Which checkpoint is due by v0.3.13's policy (spec §4.9): TRUNCATE past the truncate
 * threshold of the real WAL, RESTART past the max of the shadow, PASSIVE past the min or
 * when the time-based checkpoint is due. Sizes are frame-aligned bytes.
 */
export function checkpointModeFor(
  t: CheckpointThresholds,
  sizes: { shadow: number; wal: number; frame: number },
  timeDue: boolean,
): CheckpointMode | undefined {
  const walSize = (n: number) => WAL_HEADER_SIZE + n * sizes.frame;
  if (t.truncatePageCount > 0 && sizes.wal >= walSize(t.truncatePageCount)) return "TRUNCATE";
  if (t.maxCheckpointPageCount > 0 && sizes.shadow >= walSize(t.maxCheckpointPageCount)) {
    return "RESTART";
  }
  if (sizes.shadow >= walSize(t.minCheckpointPageCount)) return "PASSIVE";
  return timeDue ? "PASSIVE" : undefined;
}

/**
 * Milliseconds until the time-based checkpoint is due (0: due now), or undefined while none
 * can be: rule 4 of spec §4.9, the last checkpoint (the database file's mtime) older than the
 * interval and the WAL longer than one frame. A sync stat of the path: safe for SQLite's
 * locks, and cheap on idle ticks.
 */
export function checkpointDueIn(
  dbPath: string,
  intervalMs: number,
  shadowSize: number,
  pageSize: number,
): number | undefined {
  if (intervalMs <= 0 || shadowSize <= WAL_HEADER_SIZE + frameSize(pageSize)) return undefined;
  let mtime = 0;
  try {
    mtime = Deno.statSync(dbPath).mtime?.getTime() ?? 0;
  } catch { /* gone: due at once, and the full pass finds out */ }
  return Math.max(0, mtime + intervalMs + 1 - Date.now());
}

/** A due time-based checkpoint is held for a burst of commits at most this long (see {@link CommitBurst}). */
export const TIME_CHECKPOINT_MAX_HOLD_MS = 10_000;

/**
 * When this process's databases last found new frames, and since when they have without a
 * pause. A checkpoint due only to time (rule 4) is never urgent, but after a quiet minute the
 * first commit to each database makes one due: a commit to a thousand idle databases would start a
 * thousand checkpoints among their thousand uploads. They are held until the process has been
 * quiet for a monitor interval; under a steady load (busy for
 * {@link TIME_CHECKPOINT_MAX_HOLD_MS} in a row) they are not held at all.
 */
export class CommitBurst {
  #last = -Infinity;
  #since = -Infinity;

  /** A database found new frames at `now`; findings more than `quietMs` apart begin new bursts. */
  noted(now: number, quietMs: number): void {
    if (now - this.#last > quietMs) this.#since = now;
    this.#last = now;
  }

  /** Milliseconds a due time-based checkpoint waits at `now` (0: it runs). */
  holdMs(now: number, quietMs: number): number {
    if (now - this.#since >= TIME_CHECKPOINT_MAX_HOLD_MS) return 0;
    return Math.max(0, quietMs - (now - this.#last));
  }
}

/** The process's one {@link CommitBurst}, shared by its databases. */
export const commitBurst: CommitBurst = new CommitBurst();

/**
 * Whether other processes' checkpoints are let through (`DB.checkpointerWaiting`): yes unless
 * `LITESTREAM_ADMIT_CHECKPOINTS=0`, which makes them wait for ours, as with v0.3.13. Any value
 * but `0` or `1` is an error naming the variable, not a silent default.
 */
export function admitCheckpointsEnabled(): boolean {
  let value: string | undefined;
  try {
    value = Deno.env.get("LITESTREAM_ADMIT_CHECKPOINTS");
  } catch {
    return true; // no --allow-env: the default
  }
  if (value === undefined || value === "" || value === "1") return true;
  if (value === "0") return false;
  throw new LitestreamError(`LITESTREAM_ADMIT_CHECKPOINTS: expected 0 or 1, not "${value}"`);
}

interface Entry {
  probe: () => boolean;
  periodMs: number;
  /** When the probe runs next (performance.now() time). */
  due: number;
  controller: AbortController;
  /**
   * The probe found a checkpointer (the signal is aborted). Read by every sweep for every
   * database: a plain field, not the signal's getter.
   */
  fired: boolean;
}

/**
 * One timer for the whole process that runs every waiting database's checkpoint probe (two
 * `fcntl` calls) at that database's own period, instead of a timer per database; it stops
 * when no database waits. A probe that finds a waiting checkpointer aborts that database's
 * signal.
 */
export class CheckpointSentinel {
  readonly #entries = new Set<Entry>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the pending timer fires. */
  #at = Infinity;

  /** Probes `probe` every `periodMs` until disposed; the signal aborts when it returns true. */
  watch(probe: () => boolean, periodMs: number): { signal: AbortSignal } & Disposable {
    const entry: Entry = {
      probe,
      periodMs,
      due: performance.now() + periodMs,
      controller: new AbortController(),
      fired: false,
    };
    this.#entries.add(entry);
    this.#schedule();
    return {
      signal: entry.controller.signal,
      [Symbol.dispose]: () => {
        this.#entries.delete(entry);
        if (this.#entries.size === 0) this.#stop();
      },
    };
  }

  /** How many databases it watches (for tests). */
  get size(): number {
    return this.#entries.size;
  }

  #schedule(): void {
    let next = Infinity;
    for (const e of this.#entries) if (!e.fired) next = Math.min(next, e.due);
    if (next === Infinity || next >= this.#at) return;
    this.#stop();
    this.#at = next;
    this.#timer = setTimeout(() => this.#sweep(), Math.max(0, next - performance.now()));
  }

  #sweep(): void {
    this.#timer = undefined;
    this.#at = Infinity;
    const now = performance.now();
    for (const e of this.#entries) {
      // Probing up to a quarter period early lets probes that fall due close together share one
      // timer firing: a thousand databases are probed in one sweep a period, not one each.
      if (e.fired || e.due - now > e.periodMs / 4) continue;
      e.due = now + e.periodMs;
      try {
        if (e.probe()) {
          e.fired = true;
          e.controller.abort();
        }
      } catch {
        // A failing probe (file gone) only means the database's next sync finds out.
      }
    }
    this.#schedule();
  }

  #stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#at = Infinity;
  }
}

/** The process's one sentinel. */
export const checkpointSentinel: CheckpointSentinel = new CheckpointSentinel();
