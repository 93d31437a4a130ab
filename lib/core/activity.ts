/**
 * What a database monitor or a replica did lately, for `/healthz`, the heartbeat and `status`:
 * the last successful sync, the last error, and since when it has been behind (the time of the
 * oldest change it has not yet passed on). Plain fields set by the loops; no timers.
 *
 * @module
 */

/** The last error of a sync, with its time (milliseconds since the epoch). */
export interface ActivityError {
  message: string;
  at: number;
}

/** Sync outcomes of one database monitor or one replica. */
export class SyncActivity {
  /** When the last sync succeeded (ms since the epoch). */
  lastSyncAt: number | undefined;
  /** The last failure (kept after a success, for `status`). */
  lastError: ActivityError | undefined;
  /** Since when every sync has failed; undefined after a success. */
  failingSince: number | undefined;
  /** When the oldest change not yet passed on was seen; undefined while caught up. */
  behindSince: number | undefined;

  /** Notes a change to pass on (the first one since caught up starts the lag clock). */
  changed(at = Date.now()): void {
    this.behindSince ??= at;
  }

  /**
   * Notes a successful sync that started at `startedAt`: caught up, or still behind by
   * changes made since it started (it passed on everything older).
   */
  succeeded(caughtUp: boolean, startedAt: number, at = Date.now()): void {
    this.lastSyncAt = at;
    this.failingSince = undefined;
    this.behindSince = caughtUp ? undefined : startedAt;
  }

  /** Notes a failed sync. */
  failed(err: unknown, at = Date.now()): void {
    this.lastError = { message: err instanceof Error ? err.message : String(err), at };
    this.failingSince ??= at;
  }
}
