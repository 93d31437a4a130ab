/**
 * What the commands share: resolving a `DB_PATH|REPLICA_URL` argument to
 * replica clients, the config/URL-mode logger, and v0.3.13's table output.
 *
 * @module
 */

import {
  type Config,
  configPath,
  type DbConfig,
  dbConfigUnder,
  expandPath,
  isUrl,
  loadConfig,
  relativeUnder,
  replicaConfigFromUrl,
} from "../config.ts";
import { LitestreamError, UsageError } from "../../errors.ts";
import type { FlagSpec } from "../flags.ts";
import { Logger } from "../../log.ts";
import { lineStreamFor } from "../../log_stream.ts";
import type { ReplicaClient } from "../../replica_client.ts";
import { replicaClientFromConfig } from "../replica_client_from_config.ts";
import { findDatabases } from "../../dirs/discover.ts";

/** Flags every config-reading command accepts. */
export const CONFIG_FLAGS: FlagSpec = { config: "string", "no-expand-env": "boolean" };

/** Loads the config named by `-config`/`LITESTREAM_CONFIG`/the default, warning about unknown keys. */
export function loadConfigFromFlags(values: Record<string, unknown>, log: Logger): Promise<Config> {
  return loadConfig(configPath(values.config as string | undefined), {
    expandEnv: !values["no-expand-env"],
    warn: (msg) => log.warn(msg),
  });
}

/**
 * A logger shaped by the config (slog text/JSON on stdout) or Go's default (stderr) without one.
 * `background`: for the long-running commands, lines go through the process's `LineStream`, so
 * a log reader that stops reading never stops replication (see `log_stream.ts`); flushed at
 * exit by `main`.
 */
export function loggerFor(
  config: Config | undefined,
  options: { forceStderr?: boolean; background?: boolean } = {},
): Logger {
  const toStderr = !config || config.logging.stderr || options.forceStderr;
  const out = toStderr ? Deno.stderr : Deno.stdout;
  const stream = options.background ? lineStreamFor(out) : undefined;
  const encoder = new TextEncoder();
  return new Logger({
    level: config?.logging.level,
    format: config ? config.logging.type : "plain",
    write: stream
      ? (line) => stream.write(line)
      : (line) => out.writeSync(encoder.encode(line + "\n")),
    dropped: stream && (() => stream.takeDropped()),
  });
}

/** Replicas named by a command's positional argument. */
export interface ResolvedReplicas {
  clients: { name: string; client: ReplicaClient }[];
  /** The config entry, in DB_PATH mode. */
  db?: DbConfig;
  config?: Config;
}

/**
 * Resolves `DB_PATH|REPLICA_URL`: a URL gives its one replica; a path is
 * looked up in the config and gives its replicas (only `-replica NAME` if set).
 */
export async function resolveReplicas(
  arg: string,
  values: Record<string, unknown>,
  log: Logger,
): Promise<ResolvedReplicas> {
  if (isUrl(arg)) {
    if (values.config) throw new UsageError("cannot specify a replica URL and the -config flag");
    const cfg = replicaConfigFromUrl(arg);
    return { clients: [{ name: cfg.name, client: await replicaClientFromConfig(cfg, {}, log) }] };
  }
  const config = await loadConfigFromFlags(values, log);
  const db = findDb(config, arg);
  const wanted = values.replica as string | undefined;
  const replicas = db.replicas.filter((r) => !wanted || r.name === wanted);
  if (wanted && replicas.length === 0) {
    throw new LitestreamError(
      `replica ${JSON.stringify(wanted)} not found for database ${db.path} in ${config.file}`,
    );
  }
  // A backend's warnings (an SFTP host key nothing vouches for) in the config's log format, on
  // stderr: standard output may carry a listing or a restored database.
  const clientLog = loggerFor(config, { forceStderr: true });
  const clients = await Promise.all(
    replicas.map(async (r) => ({
      name: r.name,
      client: await replicaClientFromConfig(r, {}, clientLog),
    })),
  );
  return { clients, db, config };
}

/**
 * Every database of the config: its `path` entries, then those its `dir` entries hold now
 * (a directory that cannot be read is logged and skipped).
 */
export async function configDatabases(config: Config, log: Logger): Promise<DbConfig[]> {
  const dbs = [...config.dbs];
  for (const entry of config.dirs) {
    const { dbs: found, problems } = await findDatabases(entry);
    for (const p of problems) log.warn("cannot read", { path: p.path, error: p.error });
    dbs.push(...found.map((path) => dbConfigUnder(entry, path)));
  }
  return dbs;
}

/**
 * Finds a database in the config by its absolute path: a `path` entry, or a database under a
 * `dir` entry (whether or not it exists now: its path names its replicas).
 */
export function findDb(config: Config, path: string): DbConfig {
  const abs = expandPath(path);
  const db = config.dbs.find((d) => d.path === abs);
  if (db) return db;
  const entry = config.dirs.find((d) => relativeUnder(d, abs) !== undefined);
  if (entry) return dbConfigUnder(entry, abs);
  throw new LitestreamError(`database not found in config ${config.file}: ${abs}`);
}

/** Exactly one positional argument, or v0.3.13's usage errors. */
export function onePositional(positionals: string[]): string {
  if (positionals.length === 0) throw new UsageError("database path or replica URL required");
  if (positionals.length > 1) throw new UsageError("too many arguments");
  return positionals[0];
}

/** Formats rows as Go's tabwriter does with padding 2 (the last column is not padded). */
export function formatTable(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, cell.length));
  }
  return rows.map((row) =>
    row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i] + 2)).join("")
  )
    .join("\n") + "\n";
}

/** RFC 3339 in UTC without fractional seconds, as Go's `time.RFC3339` prints it. */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

/** Prints `rows` as a table with `header`, or as JSON objects keyed by the header when `json` is set. */
export function printRows(header: string[], rows: (string | number)[][], json: boolean): void {
  if (json) {
    const objects = rows.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]])));
    console.log(JSON.stringify(objects, null, 2));
    return;
  }
  Deno.stdout.writeSync(
    new TextEncoder().encode(formatTable([header, ...rows.map((r) => r.map(String))])),
  );
}
