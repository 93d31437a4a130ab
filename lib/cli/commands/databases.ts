/**
 * `litestream databases [flags]`: the databases in the config and their replicas.
 *
 * @module
 */

import { UsageError } from "../../errors.ts";
import { parseFlags } from "../flags.ts";
import { Logger } from "../../log.ts";
import { CONFIG_FLAGS, configDatabases, loadConfigFromFlags, printRows } from "./common.ts";

/** Usage text of the command. */
export const usage = `Usage: litestream databases [arguments]

Lists the databases in the config file (those under dir entries as found now) and
their replicas.

Arguments:
  -config PATH     config file (default $LITESTREAM_CONFIG or /etc/litestream.yml)
  -no-expand-env   do not expand $VARIABLES in the config file
  -json            print JSON instead of a table
`;

/** Runs the command; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, { ...CONFIG_FLAGS, json: "boolean" });
  if (positionals.length > 0) throw new UsageError("too many arguments");
  const log = new Logger({ format: "plain" });
  const config = await loadConfigFromFlags(values, log);
  const dbs = await configDatabases(config, log);
  const rows = dbs.map((db) => [db.path, db.replicas.map((r) => r.name).join(",")]);
  printRows(["path", "replicas"], rows, Boolean(values.json));
  return 0;
}
