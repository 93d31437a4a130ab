/**
 * `litestream generations [flags] DB_PATH|REPLICA_URL`: generations per
 * replica with their time bounds and lag.
 *
 * @module
 */

import { generationBounds } from "../../restore/plan.ts";
import { listGenerations } from "../../restore/restore.ts";
import { formatDuration } from "../duration.ts";
import { printRows, rfc3339 } from "./common.ts";
import { perReplica, prepareListing } from "./listing.ts";

/** Usage text of the command. */
export const usage = `Usage: litestream generations [arguments] DB_PATH|REPLICA_URL

Lists the generations of a database's replicas, with their lag and time bounds.

Arguments:
  -config PATH     config file (default $LITESTREAM_CONFIG or /etc/litestream.yml)
  -no-expand-env   do not expand $VARIABLES in the config file
  -replica NAME    only this replica (config mode)
  -json            print JSON instead of a table
`;

/** Runs the command; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const { values, resolved, log } = await prepareListing(args);
  const now = resolved.db ? await lastWrite(resolved.db.path) : Date.now();
  const { rows, exitCode } = await perReplica(resolved, log, async (name, client) => {
    const out: (string | number)[][] = [];
    for (const g of await listGenerations([client])) {
      const b = generationBounds(g);
      if (!b) continue;
      out.push([
        name,
        g.generation,
        lag(now - b.updatedAt.getTime()),
        rfc3339(b.createdAt),
        rfc3339(b.updatedAt),
      ]);
    }
    return out;
  });
  printRows(["name", "generation", "lag", "start", "end"], rows, Boolean(values.json));
  return exitCode;
}

/** The later of the database's and its WAL's mtimes, or now when neither exists. */
async function lastWrite(dbPath: string): Promise<number> {
  const times = await Promise.all(
    [dbPath, `${dbPath}-wal`].map((p) =>
      Deno.stat(p).then((s) => s.mtime?.getTime() ?? 0, () => 0)
    ),
  );
  return Math.max(...times) || Date.now();
}

/** Rounds a lag the way v0.3.13 prints it: whole seconds above 10 s, tenths above 1 s, else milliseconds. */
export function lag(ms: number): string {
  const abs = Math.abs(ms);
  const unit = abs > 10_000 ? 1000 : abs > 1000 ? 100 : 1;
  return formatDuration(Math.trunc(ms / unit) * unit);
}
