/**
 * `litestream wal [flags] DB_PATH|REPLICA_URL`: WAL segments per replica.
 *
 * @module
 */

import { printRows, rfc3339 } from "./common.ts";
import { perReplica, prepareListing } from "./listing.ts";

/** Usage text of the command. */
export const usage = `Usage: litestream wal [arguments] DB_PATH|REPLICA_URL

Lists the WAL segments of a database's replicas.

Arguments:
  -config PATH       config file (default $LITESTREAM_CONFIG or /etc/litestream.yml)
  -no-expand-env     do not expand $VARIABLES in the config file
  -replica NAME      only this replica (config mode)
  -generation NAME   only this generation
  -json              print JSON instead of a table
`;

/** Runs the command; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const { values, resolved, log } = await prepareListing(args, { generation: "string" });
  const only = values.generation as string | undefined;
  const { rows, exitCode } = await perReplica(resolved, log, async (name, client) => {
    const out: (string | number)[][] = [];
    for (const g of await client.generations()) {
      if (only && g !== only) continue;
      for (const s of await client.walSegments(g)) {
        out.push([name, g, s.index, s.offset, s.size, rfc3339(s.createdAt)]);
      }
    }
    return out;
  });
  printRows(
    ["replica", "generation", "index", "offset", "size", "created"],
    rows,
    Boolean(values.json),
  );
  return exitCode;
}
