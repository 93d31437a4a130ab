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
  expandPath,
  type ReplicaConfig,
  replicaConfigFromUrl,
} from "../config.ts";
import { UsageError } from "../../errors.ts";
import { parseFlags } from "../flags.ts";
import type { Logger } from "../../log.ts";
import { buildManaged, Server } from "../server.ts";
import { serveMetrics } from "../metrics.ts";
import { shellWords } from "../shell_words.ts";
import { VERSION } from "../../version.ts";
import { CONFIG_FLAGS, loadConfigFromFlags, loggerFor } from "./common.ts";
import { Logger as PlainLogger } from "../../log.ts";

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
`;

/** Runs the command; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    ...CONFIG_FLAGS,
    exec: "string",
    force: "boolean",
  });
  let dbs: DbConfig[];
  let log: Logger;
  let exec = values.exec as string | undefined;
  let addr = "";
  if (positionals.length > 0) {
    if (values.config) throw new UsageError("cannot specify a replica URL and the -config flag");
    if (positionals.length === 1) {
      throw new UsageError(`must specify at least one replica URL for ${positionals[0]}`);
    }
    log = loggerFor(undefined);
    dbs = [directDb(positionals[0], positionals.slice(1))];
  } else {
    const config: Config = await loadConfigFromFlags(values, new PlainLogger({ format: "plain" }));
    log = loggerFor(config);
    dbs = config.dbs;
    exec ||= config.exec || undefined;
    addr = config.addr;
  }
  log.info("litestream", { version: VERSION });
  if (dbs.length === 0) log.warn("no databases specified in configuration");

  const managed = await buildManaged(dbs, log, { force: values.force === true });
  const server = new Server(managed, log);
  server.start();
  const metricsStop = new AbortController();
  if (addr) log.info("serving metrics on", serveMetrics(addr, managed, metricsStop.signal));

  const stopping = new Promise<string>((resolve) => {
    for (const sig of signalsToHandle()) Deno.addSignalListener(sig, () => resolve(sig));
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
  await server.stop();
  metricsStop.abort();
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
