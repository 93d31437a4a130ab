/**
 * Validation of one replica inside the replicating process (the `validate`
 * command without a running replicator, and `validation-interval`).
 *
 * @module
 */

import type { DB } from "./db.ts";
import { comparePos, formatPos } from "../names.ts";
import type { Replica } from "./replica.ts";
import { compareAt, type ValidationReport, waitForPosition } from "../validate/position.ts";

/**
 * Checksums the database at its current position, makes the replica reach
 * it, and compares with a restore to that position. A replica whose only
 * snapshots were taken after the position (a fresh generation) is validated
 * on a second attempt, once an older snapshot exists. A position that
 * validates is stored as a checksum record in the replica.
 */
export async function validateInProcess(
  db: DB,
  replica: Replica,
  timeout: number,
): Promise<ValidationReport> {
  let report: ValidationReport | undefined;
  for (let attempt = 0; attempt < 2; attempt++) {
    const started = performance.now();
    // Snapshots listed before the position is taken cannot hold pages from beyond it.
    const generation = db.generation;
    const snapshots = generation ? await replica.client.snapshots(generation) : [];
    const { pos, checksum } = await db.checksum();
    try {
      await replica.sync();
      await waitForPosition(replica.name, pos, () => {
        const at = replica.pos();
        return Promise.resolve(
          !!at && at.generation === pos.generation && comparePos(at, pos) >= 0,
        );
      }, timeout);
    } catch (err) {
      // A replica that cannot even be synced is reported like any other failure, not thrown.
      const error = err instanceof Error ? err.message : String(err);
      return {
        replica: replica.name,
        position: formatPos(pos),
        primary: checksum,
        ok: false,
        error,
        ms: 0,
      };
    }
    report = await compareAt(replica.name, replica.client, pos, checksum, snapshots, started);
    // A validated position makes a good checksum record for later checks without the primary.
    if (report.ok) {
      await replica.record(pos, checksum).catch((err) =>
        replica.log.warn("checksum record not written", { error: err })
      );
    }
    if (report.ok || snapshots.length > 0 && pos.generation === generation) break;
    if (report.error === undefined) break;
  }
  return report!;
}
