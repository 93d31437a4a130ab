/**
 * Replication lag of single commits, the driver of `sftp-lag`: after the first snapshot, the
 * application commits one row at a time ({@link LAG}), each at a random moment 1–2 s after the
 * previous one reached the replica, so each lands at a random point between the tools' 1 s
 * ticks. Lag: from that COMMIT until the replica lists a WAL segment holding it
 * ({@link CatchUpWatcher}). Against a distant store, what a sync costs in round trips shows
 * here, on top of the wait for the next tick (0–1 s).
 *
 * @module
 */

import { sleep } from "../lib/os/async.ts";
import { CatchUpWatcher } from "./support/catch_up.ts";
import { startFreshRun } from "./support/fresh_run.ts";
import { runLoadWriter } from "./support/load.ts";
import { requireGnuTime } from "./support/measure.ts";
import {
  type BenchContext,
  median,
  medianRange,
  type ScenarioReport,
  type TargetResult,
} from "./support/report.ts";
import { type TargetFactory, verifyRestore } from "./support/targets.ts";
import {
  alternateRuns,
  killQuietly,
  stopReplicator,
  type Tool,
  toolLabel,
  TOOLS,
} from "./support/tools.ts";

/** Commits per run, and the bytes of each one's row. */
export const LAG = { commits: 40, rowBytes: 1000 };

/** One run of one tool: the lag of each commit, in seconds. */
async function lagRun(
  tool: Tool,
  dir: string,
  factory: TargetFactory,
  log: (m: string) => void,
): Promise<number[]> {
  const { dbPath, configPath, prepared, proc } = await startFreshRun(tool, dir, factory);
  try {
    const lags: number[] = [];
    let lastId = 0;
    for (let i = 0; i < LAG.commits; i++) {
      await sleep(1000 + Math.random() * 1000);
      const token = `LITESTREAM-BENCH-LAG-${crypto.randomUUID()}`;
      const watcher = new CatchUpWatcher(prepared.lister, token, factory.pollMs);
      watcher.start();
      try {
        const commit = await runLoadWriter(dbPath, {
          rate: 1,
          seconds: 1,
          rowBytes: LAG.rowBytes,
          token,
        });
        lastId = commit.lastId;
        lags.push((await watcher.waitForToken(commit.lastCommitEpochMs, 30_000)).catchUpS);
      } finally {
        await watcher.stop();
      }
    }
    // v0.3.13 writes under the final name, so its segment is found while its upload is still
    // open. SIGTERM at that moment (its shutdown sync sending the segment again) left it running
    // 5 s on in 4 of 5 runs behind the 50 ms link, once for over 60 s: let the upload end first.
    await sleep(1500);
    await stopReplicator(proc);
    await verifyRestore(configPath, dbPath, `${dir}/verify.db`, lastId);
    const sorted = [...lags].sort((a, b) => a - b);
    log(
      `  ${tool.padEnd(7)}: lag median ${median(lags).toFixed(3)} s, ` +
        `${sorted[0].toFixed(3)}–${sorted.at(-1)!.toFixed(3)} s over ${lags.length} commits`,
    );
    return lags;
  } finally {
    await killQuietly(proc);
    await prepared.cleanup();
  }
}

/** The lag scenario over `factory`'s replicas; `link` describes the path to the store. */
export async function lagScenario(
  ctx: BenchContext,
  name: string,
  summary: string,
  factory: TargetFactory,
  link: string,
): Promise<ScenarioReport> {
  await requireGnuTime();
  const lags = await alternateRuns(ctx, name, (tool, dir) => lagRun(tool, dir, factory, ctx.log));
  const all = (t: Tool) => lags[t].flat();
  const runMedians = (t: Tool) => lags[t].map(median);
  const rows = TOOLS.map((t) => [
    toolLabel(t),
    medianRange(runMedians(t), 3),
    median(all(t)).toFixed(3),
    Math.max(...all(t)).toFixed(3),
  ]);
  const ours = median(all("ours"));
  const theirs = median(all("v0.3.13"));
  const targets: TargetResult[] = [{
    description: "lag no worse than v0.3.13's (median of every commit)",
    met: ours <= theirs,
    detail: `${ours.toFixed(3)} s vs ${theirs.toFixed(3)} s`,
  }];
  return {
    name,
    description: summary,
    facts: {
      workload: `fresh WAL-mode database; after the first snapshot, ${LAG.commits} commits of ` +
        `one ${LAG.rowBytes}-byte row (bench/load_writer.ts, one process per commit), each ` +
        "1–2 s (uniformly random) after the previous one was found on the replica",
      link,
      lag: "from the COMMIT (clock read in the writer right after it returned) to the end of " +
        "the first replica listing that shows a WAL segment holding the row (listed every " +
        `${factory.pollMs} ms)`,
      config: "defaults for everything (monitor-interval 1s, sync-interval 1s)",
    },
    rows: [],
    table: {
      header: ["tool", "lag, median of each run (s)", "lag, every commit: median (s)", "worst (s)"],
      rows,
    },
    runs: ctx.runs,
    checks: [
      `after each run (SIGTERM), OUR restore of the replica passes PRAGMA integrity_check and ` +
      `holds exactly the ${LAG.commits} rows (${ctx.runs} runs per tool)`,
    ],
    targets,
  };
}
