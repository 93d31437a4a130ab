/**
 * `litestream replicate [flags]` (from a config) or
 * `litestream replicate [flags] DB_PATH REPLICA_URL [REPLICA_URL...]`:
 * replicate until SIGINT/SIGTERM, or until the `-exec` child exits.
 *
 * @module
 */

import {
  type Config,
  DB_DEFAULTS,
  type DbConfig,
  dbConfigUnder,
  expandPath,
  type ReplicaConfig,
  replicaConfigFromUrl,
} from "../config.ts";
import { LitestreamError, UsageError } from "../../errors.ts";
import { parseFlags } from "../flags.ts";
import type { Logger } from "../../log.ts";
import { buildManaged, Server } from "../server.ts";
import { DirDbs } from "../dir_dbs.ts";
import { findDatabases } from "../../dirs/discover.ts";
import { StoreHealthRegistry } from "../../core/store_health.ts";
import { raiseOpenFileLimit } from "../../os/rlimit.ts";
import { serveMetrics } from "../metrics.ts";
import { DEFAULT_MAX_LAG_INTERVALS, DEFAULT_SHUTDOWN_SYNC } from "../config_ops.ts";
import { healthReport, healthzResponse } from "../health.ts";
import { runHeartbeat } from "../heartbeat.ts";
import { onceSettings, replicateOnce } from "../once.ts";
import { restoreIfDbNotExists } from "../startup_restore.ts";
import { shellWords } from "../shell_words.ts";
import { VERSION } from "../../version.ts";
import { CONFIG_FLAGS, loadConfigFromFlags, loggerFor } from "./common.ts";
import { Logger as PlainLogger } from "../../log.ts";
import { flushLineStreams } from "../../log_stream.ts";

/** Usage text of the command. */
export const usage = `Usage: litestream replicate [arguments]
       litestream replicate [arguments] DB_PATH REPLICA_URL [REPLICA_URL...]

Replicates databases continuously until stopped (SIGINT/SIGTERM), or until
the -exec command exits.

Arguments:
  -config PATH     config file (default $LITESTREAM_CONFIG or /etc/litestream.yml)
  -no-expand-env   do not expand $VARIABLES in the config file
  -exec CMD        run CMD as a child process; stop and exit with it
  -force           take over replicas another live replicator writes (starts a
                   new generation; the other one stops writing to them)
  -once            sync every database to every replica once, then exit
                   (0, or 1 naming what failed)
  -force-snapshot  with -once: take a new snapshot of every database
  -restore-if-db-not-exists
                   restore each database that does not exist from its
                   replicas before replicating it (none found: start empty)
`;

const FLAGS = {
  ...CONFIG_FLAGS,
  exec: "string",
  force: "boolean",
  once: "boolean",
  "force-snapshot": "boolean",
  "restore-if-db-not-exists": "boolean",
} as const;

/** How long a second signal's exit waits for its log lines (a stalled reader must not hold it). */
const SECOND_SIGNAL_FLUSH_MS = 1000;

/** Runs the command; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS);
  let dbs: DbConfig[];
  let config: Config | undefined;
  let log: Logger;
  let exec = values.exec as string | undefined;
  let addr = "";
  let ops = {
    heartbeatUrl: "",
    heartbeatInterval: 0,
    maxLagIntervals: DEFAULT_MAX_LAG_INTERVALS,
    shutdownSync: DEFAULT_SHUTDOWN_SYNC,
  };
  if (positionals.length > 0) {
    if (values.config) throw new UsageError("cannot specify a replica URL and the -config flag");
    if (positionals.length === 1) {
      throw new UsageError(`must specify at least one replica URL for ${positionals[0]}`);
    }
    log = loggerFor(undefined, { background: true });
    dbs = [directDb(positionals[0], positionals.slice(1))];
  } else {
    config = await loadConfigFromFlags(values, new PlainLogger({ format: "plain" }));
    log = loggerFor(config, { background: true });
    dbs = config.dbs;
    exec ||= config.exec || undefined;
    addr = config.addr;
    ops = config;
  }
  const once = !!values.once;
  if (once && exec) throw new UsageError("cannot specify -once flag with -exec");
  if (values["force-snapshot"] && !once) {
    throw new UsageError("cannot specify -force-snapshot flag without -once");
  }
  log.info("litestream", { version: VERSION });
  if (dbs.length === 0 && !config?.dirs.length) {
    log.warn("no databases specified in configuration");
  }
  raiseOpenFileLimit(log);
  const restored = new Set<string>();
  for (const db of dbs) {
    if (values["restore-if-db-not-exists"] || db.restoreIfDbNotExists) {
      const outcome = await restoreIfDbNotExists(db, log.with({ db: db.path }));
      if (outcome === "continued") restored.add(db.path);
    }
  }

  if (once) {
    // The databases under dir entries as they are now.
    for (const entry of config?.dirs ?? []) {
      const { dbs: found } = await findDatabases(entry);
      dbs = [...dbs, ...found.map((path) => dbConfigUnder(entry, path))];
    }
    const managed = await buildManaged(dbs.map(onceSettings), log, {
      force: values.force === true,
    });
    const failures = await replicateOnce(managed, { forceSnapshot: !!values["force-snapshot"] });
    // One failure is the error line; several are logged one by one, then counted.
    if (failures.length === 1) throw new LitestreamError(`replicate -once: ${failures[0]}`);
    if (failures.length > 1) {
      for (const f of failures) log.error("replicate -once failed", { error: f });
      throw new LitestreamError(`replicate -once: ${failures.length} failures (logged above)`);
    }
    return 0;
  }

  const stores = new StoreHealthRegistry();
  const managed = await buildManaged(dbs, log, { force: values.force === true }, stores);
  // A restored database is opened before anything else can be started (-exec): a connection
  // that closed it first, as the last one, would delete the restored WAL and with it the
  // continuity of the generation.
  for (const m of managed.filter((m) => restored.has(m.db.path))) {
    await m.db.sync().catch((err) => m.db.log.error("sync error", { error: err }));
  }
  const server = new Server(managed, log);
  server.start();
  const dirs = config?.dirs.length ? new DirDbs(config, server, log, stores) : undefined;
  try {
    await dirs?.start();
  } catch (err) {
    await dirs?.stop();
    await server.stop(ops.shutdownSync);
    throw err;
  }
  const metricsStop = new AbortController();
  if (addr) {
    serveMetrics(addr, managed, metricsStop.signal, log, {
      "/healthz": () => healthzResponse(managed, ops.maxLagIntervals),
    });
  }
  const heartbeat = ops.heartbeatUrl
    ? runHeartbeat({
      url: ops.heartbeatUrl,
      intervalMs: ops.heartbeatInterval,
      health: () => healthReport(managed, ops.maxLagIntervals),
      log,
      signal: metricsStop.signal,
    })
    : undefined;

  let signals = 0;
  const stopping = new Promise<string>((resolve) => {
    for (const sig of signalsToHandle()) {
      Deno.addSignalListener(sig, () => {
        if (++signals === 1) return resolve(sig);
        // The shutdown waits for the final sync, which an unanswering store can hold for
        // minutes: a second signal ends it. Objects only ever appear whole (renamed into place,
        // or one request), so a cut upload leaves nothing under a final name (as after SIGKILL).
        log.warn("second signal received, exiting without finishing the shutdown", {
          signal: sig,
        });
        flushLineStreams(SECOND_SIGNAL_FLUSH_MS).then(() => Deno.exit(1));
      });
    }
  });
  let code = 0;
  if (exec) {
    const argv = shellWords(exec);
    if (argv.length === 0) throw new UsageError("-exec: empty command");
    const child = new Deno.Command(argv[0], { args: argv.slice(1), stdin: "inherit" }).spawn();
    const exited = child.status.then((s) => ({ exited: s }));
    const first = await Promise.race([exited, stopping.then((sig) => ({ sig }))]);
    if ("sig" in first) {
      child.kill(first.sig as Deno.Signal);
      code = (await child.status).code;
    } else {
      log.info("subprocess exited, litestream shutting down", { code: first.exited.code });
      code = first.exited.code;
    }
  } else {
    const sig = await stopping;
    log.info("signal received, litestream shutting down", { signal: sig });
  }
  await dirs?.stop();
  const shipped = await server.stop(ops.shutdownSync);
  metricsStop.abort();
  await heartbeat;
  if (!shipped) {
    log.error(
      "litestream shut down; a final sync failed (logged above): what was committed " +
        "since the last upload may not be in that replica",
    );
    // The child's failure status wins; otherwise the shutdown's failure is the exit status.
    return code === 0 ? 1 : code;
  }
  log.info("litestream shut down");
  return code;
}

/** The database entry of `replicate DB_PATH URL...`: v0.3.13's defaults, one replica per URL. */
function directDb(path: string, urls: string[]): DbConfig {
  const seen = new Map<string, number>();
  const replicas: ReplicaConfig[] = urls.map((url) => {
    const r = replicaConfigFromUrl(url);
    // v0.3.13 names each replica after its type and rejects two of one type; number them instead.
    const n = (seen.get(r.type) ?? 0) + 1;
    seen.set(r.type, n);
    return n > 1 ? { ...r, name: `${r.type}${n}` } : r;
  });
  return { path: expandPath(path), ...DB_DEFAULTS, replicas };
}

function signalsToHandle(): Deno.Signal[] {
  return Deno.build.os === "windows" ? ["SIGINT", "SIGBREAK"] : ["SIGINT", "SIGTERM"];
}
