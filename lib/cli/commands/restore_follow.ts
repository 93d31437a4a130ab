/**
 * `litestream restore -f`: restores, then follows the replica until SIGINT/SIGTERM (see
 * `lib/follow/`), with follower metrics on `-addr` or the config's `addr`.
 *
 * @module
 */

import { FlagError, LitestreamError, UsageError } from "../../errors.ts";
import { libc } from "../../os/libc.ts";
import { parseDuration } from "../duration.ts";
import { Logger } from "../../log.ts";
import { Follower } from "../../follow/mod.ts";
import { renderFollowMetrics, serveMetrics } from "../metrics.ts";
import { loggerFor, resolveReplicas } from "./common.ts";

/** Flags `-f` cannot be combined with: following always goes to the latest state of a file. */
const INCOMPATIBLE = [
  "timestamp",
  "index",
  "generation",
  "if-db-not-exists",
  "if-replica-exists",
  "integrity-check",
];

/** Runs `restore -f`; returns the exit code. */
export async function runFollow(
  arg: string,
  values: Record<string, string | boolean | undefined>,
): Promise<number> {
  const bad = INCOMPATIBLE.filter((f) => values[f] !== undefined);
  if (values.o === "-") bad.push("o -");
  if (bad.length > 0) {
    throw new UsageError(`cannot use -f with ${bad.map((f) => `-${f}`).join(", ")}`);
  }
  const interval = values["follow-interval"] === undefined
    ? 1000
    : parseDuration(values["follow-interval"]);
  if (interval === undefined || !(interval > 0)) {
    throw new UsageError(
      `invalid value ${JSON.stringify(values["follow-interval"])} for flag -follow-interval`,
    );
  }
  const parallelism = values.parallelism === undefined ? 8 : Number(values.parallelism);
  if (!Number.isInteger(parallelism) || parallelism < 1) {
    throw new UsageError(
      `invalid value ${JSON.stringify(values.parallelism)} for flag -parallelism`,
    );
  }
  const addr = values.addr as string | undefined;
  if (addr !== undefined && !/:\d+$/.test(addr)) {
    throw new FlagError(`invalid value ${JSON.stringify(addr)} for flag -addr: needs a port`);
  }
  // Checked before restoring anything: every write to the output goes through libc's locks.
  const lib = libc();
  if (typeof lib === "string") {
    throw new LitestreamError(`restore -f writes under SQLite's file locks through libc: ${lib}`);
  }
  const resolved = await resolveReplicas(arg, values, new Logger({ format: "plain" }));
  const output = (values.o as string | undefined) ?? resolved.db?.path;
  if (!output) throw new UsageError("output path required");
  const log = loggerFor(resolved.config, { background: true });

  const stop = new AbortController();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const onSignal = () => {
    if (!stop.signal.aborted) log.info("signal received, finishing the current batch");
    stop.abort();
  };
  for (const sig of signals) Deno.addSignalListener(sig, onSignal);
  const follower = new Follower({
    clients: resolved.clients.map((c) => c.client),
    output,
    intervalMs: interval,
    log,
    signal: stop.signal,
    parallelism,
  });
  const metricsAddr = addr ?? resolved.config?.addr;
  try {
    if (metricsAddr) {
      serveMetrics(
        metricsAddr,
        () => {
          const s = follower.status;
          return renderFollowMetrics({
            output,
            generation: s.position?.generation,
            index: s.position?.index,
            offset: s.position?.offset,
            ...s,
          });
        },
        stop.signal,
        log,
      );
    }
    await follower.run();
  } finally {
    stop.abort();
    for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
  }
  return 0;
}
