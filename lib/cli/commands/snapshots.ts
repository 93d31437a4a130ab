/**
 * `litestream snapshots [flags] DB_PATH|REPLICA_URL`: snapshots per replica.
 *
 * @module
 */

import { printRows, rfc3339 } from "./common.ts";
import { perReplica, prepareListing } from "./listing.ts";

/** Usage text of the command. */
export const usage = `Usage: litestream snapshots [arguments] DB_PATH|REPLICA_URL

Lists the snapshots of a database's replicas.

Arguments:
  -config PATH     config file (default $LITESTREAM_CONFIG or /etc/litestream.yml)
  -no-expand-env   do not expand $VARIABLES in the config file
  -replica NAME    only this replica (config mode)
  -json            print JSON instead of a table
`;

/** Runs the command; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const { values, resolved, log } = await prepareListing(args);
  const { rows, exitCode } = await perReplica(resolved, log, async (name, client) => {
    const out: (string | number)[][] = [];
    for (const g of await client.generations()) {
      for (const s of await client.snapshots(g)) {
        out.push([name, g, s.index, s.size, rfc3339(s.createdAt)]);
      }
    }
    return out;
  });
  printRows(["replica", "generation", "index", "size", "created"], rows, Boolean(values.json));
  return exitCode;
}
