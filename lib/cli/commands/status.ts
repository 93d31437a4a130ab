/**
 * `litestream status [-config PATH] [-json] [-timeout D] [DB_PATH]`: per database and replica,
 * the positions, the lag in bytes and time, the last sync and last error, the generation, the
 * newest snapshot and the restore window. Live figures come from a running replicate's
 * `/healthz` on the config's `addr`; otherwise from the meta directory and the replicas (see
 * `status/collect.ts`). Exit 0 when every replica is within `max-lag-intervals` of its
 * sync-interval, 1 otherwise.
 *
 * @module
 */

import { FlagError, UsageError } from "../../errors.ts";
import { parseFlags } from "../flags.ts";
import { Logger } from "../../log.ts";
import { parseDuration } from "../duration.ts";
import { collectStatus } from "../status/collect.ts";
import { renderStatus } from "../status/render.ts";
import { CONFIG_FLAGS, configDatabases, findDb, loadConfigFromFlags } from "./common.ts";

/** Usage text of the command. */
export const usage = `Usage: litestream status [arguments] [DB_PATH]

Shows, for every database of the config (or only DB_PATH) and each of its
replicas: local and replica positions, lag in bytes and time, last successful
sync and last error, generation, newest snapshot and restore window. Figures
come live from a running replicate when the config sets addr; otherwise from
the meta directory and the replicas. Exit status 0 when every replica is
within max-lag-intervals of its sync-interval, 1 otherwise.

Arguments:
  -config PATH     config file (default $LITESTREAM_CONFIG or /etc/litestream.yml)
  -no-expand-env   do not expand $VARIABLES in the config file
  -json            print JSON instead of text
  -timeout D       give up on a replica's store after this long (default 10s)
`;

/** Runs the command; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    ...CONFIG_FLAGS,
    json: "boolean",
    timeout: "string",
  });
  if (positionals.length > 1) throw new UsageError("too many arguments");
  const timeoutMs = values.timeout === undefined ? 10_000 : parseDuration(values.timeout);
  if (timeoutMs === undefined || timeoutMs <= 0) {
    throw new FlagError(`invalid value ${JSON.stringify(values.timeout)} for flag -timeout`);
  }
  const log = new Logger({ format: "plain" });
  const config = await loadConfigFromFlags(values, log);
  const dbs = positionals.length
    ? [findDb(config, positionals[0])]
    : await configDatabases(config, log);
  const status = await collectStatus(config, dbs, timeoutMs);
  const text = values.json ? JSON.stringify(status, null, 2) : renderStatus(status);
  Deno.stdout.writeSync(new TextEncoder().encode(text + "\n"));
  return status.healthy ? 0 : 1;
}
