/**
 * `litestream restore [flags] DB_PATH|REPLICA_URL`: rebuild a database from
 * its replicas, to the latest state or a point in time.
 *
 * @module
 */

import {
  CorruptionError,
  FlagError,
  LitestreamError,
  NotFoundError,
  UsageError,
} from "../../errors.ts";
import { parseFlags } from "../flags.ts";
import { MAX_INDEX } from "../../names.ts";
import { findRestorePlan, restoreDatabase, type RestoreProgress } from "../../restore/restore.ts";
import { CONFIG_FLAGS, loggerFor, onePositional, resolveReplicas } from "./common.ts";
import { Logger } from "../../log.ts";
import { exists } from "../../os/fs.ts";

/** Usage text of the command. */
export const usage = `Usage: litestream restore [arguments] DB_PATH|REPLICA_URL

Restores a database from its replicas to the latest state, or to a point in time.

Arguments:
  -config PATH        config file (default $LITESTREAM_CONFIG or /etc/litestream.yml)
  -no-expand-env      do not expand $VARIABLES in the config file
  -o PATH             output path ("-" for standard output); default: the database path (config mode)
  -replica NAME       restore only from this replica (config mode)
  -generation NAME    restore from this generation
  -index HEX          restore up to and including this WAL index
  -timestamp TIME     restore to this point in time (RFC 3339, e.g. 2000-01-01T00:00:00Z)
  -parallelism N      objects, and parts of a large snapshot, fetched in parallel
                      (default 8)
  -if-db-not-exists   do nothing (exit 0) when the output already exists
  -if-replica-exists  do nothing (exit 0) when no backup is found
  -integrity-check M  run SQLite's quick_check (M=quick) or integrity_check (M=full)
                      on the result before it is put in place
  -f                  follow: after restoring, keep applying new WAL from the replica until
                      SIGINT/SIGTERM; any SQLite reader may query the output meanwhile
  -follow-interval D  how often to poll the replica when following (default 1s)
  -addr HOST:PORT     when following, serve follower metrics on /metrics (default: config addr)
`;

const FLAGS = {
  ...CONFIG_FLAGS,
  o: "string",
  replica: "string",
  generation: "string",
  index: "string",
  timestamp: "string",
  parallelism: "string",
  "if-db-not-exists": "boolean",
  "if-replica-exists": "boolean",
  "integrity-check": "string",
  f: "boolean",
  "follow-interval": "string",
  addr: "string",
} as const;

const TIMESTAMP_RE = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** Parses `-index` as v0.3.13 does: hexadecimal without a `0x` prefix, at most 0x7fffffff. */
export function parseIndexFlag(s: string): number {
  const n = /^[0-9a-fA-F]{1,8}$/.test(s) ? parseInt(s, 16) : NaN;
  if (!(n <= MAX_INDEX)) {
    throw new FlagError(
      `invalid value ${JSON.stringify(s)} for flag -index: invalid hexadecimal format`,
    );
  }
  return n;
}

/** Parses `-timestamp` (RFC 3339 with optional fractional seconds and offset). */
export function parseTimestampFlag(s: string): Date {
  const d = new Date(s);
  const m = TIMESTAMP_RE.exec(s);
  // Date rolls over impossible fields (2024-02-30 → March 1); Go's RFC 3339 parser rejects them.
  const [year, month, day, hour, minute, second] = s.slice(0, 19).split(/[-Tt:]/).map(Number);
  const calendar = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  const valid = calendar.getUTCFullYear() === year && calendar.getUTCMonth() === month - 1 &&
    calendar.getUTCDate() === day && calendar.getUTCHours() === hour &&
    calendar.getUTCMinutes() === minute &&
    calendar.getUTCSeconds() === second &&
    (!m?.[2] || /^[Zz]$/.test(m[2]) || Number(m[2].slice(1, 3)) <= 23);
  if (!m || !valid || isNaN(d.getTime())) {
    throw new UsageError(
      "invalid -timestamp, must specify in ISO 8601 format (e.g. 2000-01-01T00:00:00Z)",
    );
  }
  return d;
}

/** A valid `-timestamp` in nanoseconds since the epoch, keeping digits beyond milliseconds. */
export function timestampNs(s: string): bigint {
  const seconds = BigInt(Math.floor(parseTimestampFlag(s).getTime() / 1000));
  const fraction = TIMESTAMP_RE.exec(s)![1]?.slice(1) ?? "";
  return seconds * 1_000_000_000n + BigInt((fraction + "000000000").slice(0, 9));
}

/** Runs the command; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS);
  const arg = onePositional(positionals);
  // Loaded only for -f: a one-off restore does not pay for the follow modules (3-4 ms).
  if (values.f) return await (await import("./restore_follow.ts")).runFollow(arg, values);
  for (const flag of ["follow-interval", "addr"]) {
    if (values[flag] !== undefined) throw new UsageError(`-${flag} needs -f`);
  }
  const index = values.index !== undefined ? parseIndexFlag(values.index as string) : undefined;
  const timestamp = values.timestamp !== undefined
    ? parseTimestampFlag(values.timestamp as string)
    : undefined;
  if (index !== undefined && timestamp) {
    throw new UsageError("cannot specify index & timestamp to restore");
  }
  const parallelism = values.parallelism === undefined ? 8 : Number(values.parallelism);
  if (!Number.isInteger(parallelism)) {
    throw new UsageError(
      `invalid value ${JSON.stringify(values.parallelism)} for flag -parallelism`,
    );
  }

  const bootLog = new Logger({ format: "plain" });
  const resolved = await resolveReplicas(arg, values, bootLog);
  const output = (values.o as string | undefined) ?? resolved.db?.path;
  if (!output) throw new UsageError("output path required");
  // Standard output carries the database: logs must not share it.
  const log = loggerFor(resolved.config, { forceStderr: output === "-" });

  if (output !== "-" && values["if-db-not-exists"] && await exists(output)) {
    log.info("database already exists, skipping", { path: output });
    return 0;
  }
  const clients = resolved.clients.map((c) => c.client);
  const target = {
    generation: values.generation as string | undefined,
    index,
    timestamp,
    timestampNs: values.timestamp !== undefined
      ? timestampNs(values.timestamp as string)
      : undefined,
  };
  let found;
  try {
    found = await findRestorePlan(clients, target);
  } catch (err) {
    if (err instanceof NotFoundError && values["if-replica-exists"]) {
      log.info("no matching backups found, skipping");
      return 0;
    }
    throw err;
  }
  if (output !== "-" && await exists(output)) {
    throw new LitestreamError(`cannot restore, output path already exists: ${output}`);
  }
  const check = values["integrity-check"] as string | undefined;
  if (check !== undefined && check !== "quick" && check !== "full") {
    throw new FlagError(
      `invalid value ${JSON.stringify(check)} for flag -integrity-check: use quick or full`,
    );
  }
  if (check && output === "-") {
    throw new UsageError(
      "-integrity-check needs a file output: SQLite cannot check standard output",
    );
  }
  const started = performance.now();
  const showProgress = Deno.stderr.isTerminal();
  const options = {
    output,
    parallelism,
    onNote: (note: string) => log.debug(note),
    onProgress: showProgress ? progressPrinter() : undefined,
    verify: check ? (path: string) => integrityCheck(path, check, log) : undefined,
  };
  let result;
  try {
    result = await restoreDatabase(found.client, found.plan, options);
  } catch (err) {
    // Retention may delete an object between listing and reading: list and plan once more.
    // Not for standard output, where part of the database may already be written.
    if (!(err instanceof NotFoundError) || output === "-") throw err;
    log.warn("an object disappeared during the restore; listing the replicas again", {
      error: err.message,
    });
    found = await findRestorePlan(clients, target);
    result = await restoreDatabase(found.client, found.plan, options);
  }
  if (showProgress) Deno.stderr.writeSync(new TextEncoder().encode("\n"));
  log.info("restored", {
    output,
    replica: found.client.location,
    generation: result.generation,
    snapshot: result.snapshotIndex,
    segments: result.segments,
    frames: result.frames,
    size: result.size,
    elapsed: `${((performance.now() - started) / 1000).toFixed(2)}s`,
  });
  return 0;
}

/** Prints one updating progress line on a terminal (objects, bytes read, rate), at most every 100 ms. */
function progressPrinter(): (p: RestoreProgress) => void {
  const encoder = new TextEncoder();
  const started = performance.now();
  let last = 0;
  return (p) => {
    const now = performance.now();
    if (now - last < 100 && p.objects < p.totalObjects) return;
    last = now;
    const mb = (p.bytes / 1e6).toFixed(1);
    const rate = (p.bytes / 1e3 / Math.max(1, now - started)).toFixed(1);
    Deno.stderr.writeSync(
      encoder.encode(
        `\rrestoring: ${p.objects}/${p.totalObjects} objects, ${mb} MB, ${rate} MB/s   `,
      ),
    );
  };
}

/** Runs SQLite's own check on a restored file; throws when it reports problems. */
async function integrityCheck(path: string, mode: "quick" | "full", log: Logger): Promise<void> {
  // Loaded only when asked for: plain restores need no SQLite at all.
  const { openDatabase } = await import("../../sqlite/driver.ts");
  const db = await openDatabase(path, { create: false });
  try {
    const row = await db.queryRow(
      mode === "quick" ? "PRAGMA quick_check" : "PRAGMA integrity_check",
    );
    const result = String(row?.[0] ?? "");
    if (result !== "ok") {
      throw new CorruptionError(
        "restored database",
        `${mode === "quick" ? "quick_check" : "integrity_check"}: ${result}`,
      );
    }
    log.info("integrity check passed", { mode, driver: db.driver });
  } finally {
    await db.close();
  }
}
