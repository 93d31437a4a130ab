/**
 * Retention (spec §5.5): deleting from a replica what no restore inside the retention window
 * needs. Every generation keeps its oldest snapshot inside the window and what follows it; a
 * generation with none goes, except the current one; the last restorable snapshot always stays.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { ReplicaClient, SnapshotInfo } from "../replica_client.ts";

/** What {@linkcode enforceRetention} needs to know of the replica it prunes. */
export interface RetentionContext {
  /** The generation being replicated: never deleted. */
  current: string;
  /** Objects created before this time (ms since the epoch) are outside the window. */
  cutoff: number;
  /** Takes a snapshot now, for when none is inside the window. */
  snapshot(): Promise<SnapshotInfo>;
  log: Logger;
}

/**
 * Deletes the snapshots, WAL segments, checksum records and generations the window no longer
 * needs. Returns the creation time (ms since the epoch) of the oldest snapshot it kept: until
 * that one leaves the window, only new uploads give a later pass anything to do.
 */
export async function enforceRetention(
  client: ReplicaClient,
  { current, cutoff, snapshot, log }: RetentionContext,
): Promise<number> {
  const generations = await client.generations();
  const snapshots = (await Promise.all(generations.map((g) => client.snapshots(g)))).flat();
  const retained = snapshots.filter((s) => s.createdAt.getTime() >= cutoff);
  if (retained.length === 0) retained.push(await snapshot());
  for (const generation of generations) {
    const keep = retained.filter((s) => s.generation === generation)
      .sort((a, b) => a.index - b.index)[0];
    if (!keep) {
      if (generation === current) continue;
      await client.deleteGeneration(generation);
      log.info("generation deleted", { generation });
      continue;
    }
    for (const s of snapshots) {
      if (s.generation === generation && s.index < keep.index) {
        await client.deleteSnapshot(generation, s.index);
      }
    }
    const records = (await client.records(generation)).filter((r) =>
      parseInt(r.name, 16) < keep.index
    );
    if (records.length > 0) {
      await client.deleteRecords(generation, records.map((r) => r.name));
    }
    const old = (await client.walSegments(generation)).filter((s) => s.index < keep.index);
    if (old.length > 0) {
      await client.deleteWalSegments(old);
      log.info("wal segments deleted", { generation, before: keep.index, count: old.length });
    }
  }
  return Math.min(...retained.map((s) => s.createdAt.getTime()));
}
