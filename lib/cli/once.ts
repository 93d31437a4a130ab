/**
 * `replicate -once`: every database synced to every replica once (a snapshot where a replica
 * has none of the current generation, or with `-force-snapshot`), then exit: for cron jobs
 * and CI without a long-running process. Between runs nobody holds the read transaction that
 * stops the application's checkpoints, so a run that finds the WAL restarted since the last
 * one cannot prove continuity and starts a new generation (logged), as `replicate` does after
 * any stop.
 *
 * @module
 */

import { formatPos } from "../names.ts";
import type { DbConfig } from "./config.ts";
import type { Managed } from "./server.ts";

/**
 * The database settings for a one-shot run: no checkpoints of ours. A checkpoint ends with a
 * write that restarts the WAL, which would upload a new index on every run of an idle
 * database; the application's own checkpoints run freely between runs anyway.
 */
export function onceSettings(db: DbConfig): DbConfig {
  return {
    ...db,
    checkpointInterval: 0,
    minCheckpointPageCount: Number.MAX_SAFE_INTEGER,
    maxCheckpointPageCount: 0,
    truncatePageCount: 0,
  };
}

/** Syncs every database and replica once; returns one line per failure, naming it. */
export async function replicateOnce(
  managed: Managed[],
  options: { forceSnapshot: boolean },
): Promise<string[]> {
  const failures: string[] = [];
  const message = (err: unknown) => err instanceof Error ? err.message : String(err);
  for (const { db, replicas } of managed) {
    try {
      await db.sync();
      if (!db.open) throw new Error("database does not exist");
    } catch (err) {
      failures.push(`${db.path}: ${message(err)}`);
      continue;
    }
    await Promise.all(replicas.map(async (r) => {
      try {
        // A replica ahead of the shadow makes the first sync start a new generation; the
        // next ones snapshot and ship it.
        for (let i = 0; i < 3 && !r.caughtUp() && !r.refused(); i++) await r.sync();
        if (r.refused()) throw new Error("another replicator holds it (see the log)");
        if (options.forceSnapshot) await r.snapshot();
        if (!r.caughtUp()) throw new Error("the replica did not catch up");
        r.log.info("replicated once", { position: formatPos(r.pos()) });
      } catch (err) {
        failures.push(`${db.path}: replica ${r.name} (${r.client.location}): ${message(err)}`);
      } finally {
        // A one-shot run holds no replica between runs.
        await r.release().catch((err) => r.log.warn("lease not released", { error: err }));
      }
    }));
  }
  await Promise.all(
    managed.map(({ db }) =>
      db.close().catch((err) => db.log.error("close failed", { error: err }))
    ),
  );
  return failures;
}
