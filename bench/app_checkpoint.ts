/**
 * `app-checkpoint` (issue 14): an application that checkpoints its own database while a
 * replicator runs. One database under the write load of `replicate-write-load` (500
 * transactions per second of one 1 KB row, bench/load_writer.ts), 30 s, while the application
 * runs `PRAGMA wal_checkpoint(TRUNCATE)` every 5 s on a second connection of its own process (a
 * Worker with its own `node:sqlite` connection, `busy_timeout = 5000`: bench/app_checkpointer.ts).
 * Ours and v0.3.13 in turn, each on a fresh database and file replica with default settings.
 *
 * Measured, in the application: commit latency p50 / p99 / max (from the moment a transaction
 * was due until its COMMIT returned), and every checkpoint's duration and result row
 * (`busy|log|checkpointed`; busy = 1 means it was blocked from completing). v0.3.13 holds a read
 * transaction open all the time, so each TRUNCATE waits out its whole busy timeout, holding the
 * write lock meanwhile, and returns busy. Targets: p99 commit latency under 100 ms and every
 * checkpoint completing (busy = 0) with ours.
 *
 * Every run is bounded: the writer stops starting transactions 30 s after its planned end, the
 * checkpointer stops with it, and the replicator is stopped (SIGTERM, SIGKILL after 60 s).
 *
 * @module
 */

import { startFreshRun } from "./support/fresh_run.ts";
import { type CheckpointingResult, runLoadWriter } from "./support/load.ts";
import { requireGnuTime } from "./support/measure.ts";
import { isSnapshotName } from "./support/replica_watch.ts";
import type { BenchContext, Scenario, ScenarioReport } from "./support/report.ts";
import { FILE_TARGETS, verifyRestore } from "./support/targets.ts";
import {
  alternateRuns,
  killQuietly,
  stopReplicator,
  type Tool,
  toolLabel,
  TOOLS,
} from "./support/tools.ts";
import { LOAD } from "./replicate_write_load.ts";

/** The application's write load (that of `replicate-write-load`, for 30 s). */
const APP_LOAD = { ...LOAD, seconds: 30 };

/** Seconds between the application's checkpoints (from the end of one to the start of the next). */
const CHECKPOINT_EVERY_S = 5;

/** The issue's limit on the application's p99 commit latency while it checkpoints. */
const P99_LIMIT_MS = 100;

/** One run of one tool, as the application saw it. */
interface AppSample extends CheckpointingResult {
  /** Transactions per second the writer achieved. */
  achievedRate: number;
  transactions: number;
  /** Generations on the replica after the run. */
  generations: number;
}

/** One run: fresh database and replica, the replicator, the checkpointing writer, a restore. */
async function appCheckpointRun(
  tool: Tool,
  dir: string,
  log: (m: string) => void,
): Promise<AppSample> {
  const { dbPath, configPath, prepared, proc } = await startFreshRun(tool, dir, FILE_TARGETS);
  try {
    const load = await runLoadWriter(dbPath, {
      ...APP_LOAD,
      token: `LITESTREAM-BENCH-LAST-COMMIT-${crypto.randomUUID()}`,
      checkpointEveryS: CHECKPOINT_EVERY_S,
    });
    await stopReplicator(proc);
    const generations = new Set(
      (await prepared.lister.list()).filter(isSnapshotName).map((n) => n.split("/")[1]),
    ).size;
    await verifyRestore(configPath, dbPath, `${dir}/verify.db`, load.lastId);
    const c = load.checkpointing!;
    const sample: AppSample = {
      ...c,
      achievedRate: load.transactions / load.elapsedS,
      transactions: load.transactions,
      generations,
    };
    log(
      `  ${tool.padEnd(7)}: commit latency p50 ${c.latency.p50Ms.toFixed(1)} ms, p99 ${
        c.latency.p99Ms.toFixed(1)
      } ms, max ${c.latency.maxMs.toFixed(0)} ms; ${c.busyErrors} busy BEGINs; writer ${
        sample.achievedRate.toFixed(0)
      } tx/s; ${generations} generation(s); checkpoints: ${describeCheckpoints(c)}`,
    );
    return sample;
  } finally {
    await killQuietly(proc);
    await prepared.cleanup();
  }
}

/**
 * `5001 ms → 1|1234|567; …`: each checkpoint's duration and result row (or error), the row's
 * columns joined by `sep` (an escaped `\|` inside a Markdown table).
 */
function describeCheckpoints(c: CheckpointingResult, sep = "|"): string {
  if (c.checkpoints.length === 0) return "none";
  return c.checkpoints.map((k) =>
    `${k.durationMs.toFixed(0)} ms → ${k.row ? k.row.join(sep) : `error: ${k.error}`}`
  ).join("; ");
}

/** A checkpoint that completed: a result row with busy = 0. */
const completed = (k: CheckpointingResult["checkpoints"][number]) => k.row?.[0] === 0;

async function appCheckpointScenario(ctx: BenchContext): Promise<ScenarioReport> {
  await requireGnuTime();
  const name = "app-checkpoint";
  const samples = await alternateRuns(
    ctx,
    name,
    (tool, dir) => appCheckpointRun(tool, dir, ctx.log),
  );
  const ms = (xs: number[]) => xs.map((x) => x.toFixed(x < 10 ? 1 : 0)).join(", ");
  const header = [
    "tool",
    "commit latency p50 (ms)",
    "p99 (ms)",
    "max (ms)",
    "BEGIN…COMMIT max (ms)",
    "busy BEGINs",
    "writer (tx/s)",
    "generations",
    "checkpoints: duration → busy\\|log\\|checkpointed",
  ];
  const rows = TOOLS.flatMap((t) =>
    samples[t].map((s, i) => [
      `${toolLabel(t)}${ctx.runs > 1 ? `, run ${i + 1}` : ""}`,
      ms([s.latency.p50Ms]),
      ms([s.latency.p99Ms]),
      ms([s.latency.maxMs]),
      ms([s.service.maxMs]),
      String(s.busyErrors),
      s.achievedRate.toFixed(0),
      String(s.generations),
      describeCheckpoints(s, "\\|"),
    ])
  );
  const oursP99 = samples.ours.map((s) => s.latency.p99Ms);
  const oursCheckpoints = samples.ours.flatMap((s) => s.checkpoints);
  const v0313Checkpoints = samples["v0.3.13"].flatMap((s) => s.checkpoints);
  return {
    name,
    description: scenarios[0].summary,
    facts: {
      workload: `fresh WAL-mode database with an empty table; once the replicator has written ` +
        `its first snapshot, bench/load_writer.ts (node:sqlite, synchronous = NORMAL, busy ` +
        `timeout 5 s, a separate process) commits ${APP_LOAD.rate} transactions/s of one ` +
        `${APP_LOAD.rowBytes}-byte random row each for ${APP_LOAD.seconds} s`,
      "application checkpoint": `PRAGMA wal_checkpoint(TRUNCATE) every ${CHECKPOINT_EVERY_S} s ` +
        `(counted from the end of the previous one) from a second node:sqlite connection with ` +
        `busy_timeout = 5000, in a Worker of the writer's process (bench/app_checkpointer.ts)`,
      "commit latency": "from the moment a transaction was due on the writer's schedule until " +
        "its COMMIT returned (queueing behind a blocked commit included); BEGIN…COMMIT is the " +
        "transaction alone, waiting for the write lock included",
      config: "defaults for everything (monitor-interval 1s, sync-interval 1s, " +
        "checkpoint-interval 1m, min-checkpoint-page-count 1000, max-checkpoint-page-count 10000)",
      order: "one tool at a time, alternating which goes first from run to run",
    },
    rows: [],
    table: { header, rows },
    runs: ctx.runs,
    checks: [
      `after each run (SIGTERM), OUR restore of the replica passes PRAGMA integrity_check and ` +
      `holds exactly the rows the writer committed (${ctx.runs} runs per tool)`,
    ],
    targets: [
      {
        description: `ours: application p99 commit latency under ${P99_LIMIT_MS} ms (every run)`,
        met: Math.max(...oursP99) < P99_LIMIT_MS,
        detail: `ours ${ms(oursP99)} ms; v0.3.13 ${
          ms(samples["v0.3.13"].map((s) => s.latency.p99Ms))
        } ms`,
      },
      {
        description: "ours: every application checkpoint completes (busy = 0)",
        met: oursCheckpoints.length > 0 && oursCheckpoints.every(completed),
        detail: `ours ${oursCheckpoints.filter(completed).length} of ${oursCheckpoints.length}; ` +
          `v0.3.13 ${v0313Checkpoints.filter(completed).length} of ${v0313Checkpoints.length}`,
      },
    ],
  };
}

/** The application-checkpoint scenario. */
export const scenarios: Scenario[] = [
  {
    name: "app-checkpoint",
    summary: `file replica: ${LOAD.rate} tx/s of 1 KB rows for ${APP_LOAD.seconds} s while the ` +
      `application runs PRAGMA wal_checkpoint(TRUNCATE) (busy_timeout 5000) every ` +
      `${CHECKPOINT_EVERY_S} s; commit latency p50/p99/max, each checkpoint's duration and result`,
    defaultRuns: 1,
    run: appCheckpointScenario,
  },
];
