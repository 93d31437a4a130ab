/**
 * When the database monitor syncs next: at most once per `monitor-interval` that finds
 * something new, as v0.3.13's ticker, but a commit that file-system events announce after a
 * quiet spell is not held to the tick. A pure bookkeeping of times (a monotonic clock, in
 * milliseconds); the monitor loop does the waiting.
 *
 * @module
 */

import type { DirWake } from "../os/dir_watch.ts";

/** The monitor's pace: fed each sync's outcome, it says how long to wait before the next one. */
export class SyncPace {
  #startedAt = -Infinity;
  /** When the last sync that found something new started. */
  #busyAt = -Infinity;
  /** The wait before the last sync ended on an event. */
  #wokeByEvent = false;
  /** That sync found nothing: the event was not a commit (a connection closing raises one too). */
  #spurious = false;

  /** A pace of one sync per `intervalMs`. */
  constructor(readonly intervalMs: number) {}

  /** Notes a sync that started at `startedAt` and whether it found something new. */
  synced(startedAt: number, foundNew: boolean): void {
    this.#startedAt = startedAt;
    if (foundNew) this.#busyAt = startedAt;
    this.#spurious = this.#wokeByEvent && !foundNew;
    this.#wokeByEvent = false;
  }

  /**
   * Milliseconds to wait at `now` before the next sync, after a wait for changes that ended as
   * `woke` (undefined: the monitor polls, it did not wait). A change that events announce
   * waits out the interval from the last sync that found something new, not from the quiet
   * tick after it, so a commit after a pause goes at once. Once an event brought nothing new,
   * the next one waits out the interval as a tick would: events alone never sync faster than
   * the ticks.
   */
  delay(woke: DirWake | undefined, now: number): number {
    this.#wokeByEvent = woke === "event";
    const eager = (woke === "event" || woke === "changed") && !this.#spurious;
    const from = eager ? this.#busyAt : this.#startedAt;
    return Math.max(0, this.intervalMs - (now - from));
  }
}
