/**
 * The write-load driver of `replicate-write-load`, `s3-write-load` and `abs-write-load`: a separate writer process
 * (`bench/load_writer.ts`) commits {@link LOAD} (500 transactions per second of one 1 KB row for
 * 20 s) while one replicator ships it. Measured: catch-up time (last commit → a replica segment
 * holds it, see {@link CatchUpWatcher}), the replicator's CPU from writer start to catch-up
 * (`/proc`), its CPU over the whole process life and peak RSS (GNU time).
 *
 * @module
 */

import { decompressFrame } from "../lib/lz4/mod.ts";
import { sleep } from "../lib/os/async.ts";
import { startFreshRun } from "./support/fresh_run.ts";
import { CatchUpWatcher } from "./support/catch_up.ts";
import { epochMs, runLoadWriter } from "./support/load.ts";
import { requireGnuTime, type RunStats } from "./support/measure.ts";
import { isSegmentName } from "./support/replica_watch.ts";
import {
  type BenchContext,
  median,
  medianRange,
  rssTarget,
  type ScenarioReport,
  type TargetResult,
} from "./support/report.ts";
import { toolRequests } from "./support/s3rver.ts";
import { MAX_RSS_MB, type TargetFactory, verifyRestore } from "./support/targets.ts";
import {
  alternateRuns,
  killQuietly,
  stopReplicator,
  type Tool,
  toolLabel,
  TOOLS,
} from "./support/tools.ts";

/** The write load: transactions per second, seconds, bytes per row (one row per transaction). */
export const LOAD = { rate: 500, seconds: 20, rowBytes: 1000 };

/** The load lasts a random part of this longer than `LOAD.seconds` (one monitor and sync interval). */
export const PHASE_JITTER_MS = 1000;

/** One write-load run of one tool. */
export interface WriteLoadSample {
  catchUpS: number;
  /** Replicator CPU seconds from writer start until caught up. */
  loadCpuS: number;
  /** GNU time over the whole process life (start-up, first snapshot, load, shutdown). */
  total: RunStats;
  /** Transactions per second the writer achieved. */
  achievedRate: number;
  lastId: number;
  segments: number;
  /** Decompressed bytes of all WAL segments (file replicas only). */
  walBytes?: number;
  /** Requests at the S3 server from writer start until caught up (S3 only). */
  requests?: number;
}

/** One write-load run: fresh database and replica, the writer, catch-up, shutdown, a restore. */
export async function writeLoadRun(
  tool: Tool,
  dir: string,
  factory: TargetFactory,
  log: (m: string) => void,
): Promise<WriteLoadSample> {
  const { dbPath, configPath, prepared, proc } = await startFreshRun(tool, dir, factory);
  try {
    const token = `LITESTREAM-BENCH-LAST-COMMIT-${crypto.randomUUID()}`;
    const watcher = new CatchUpWatcher(prepared.lister, token, factory.pollMs);
    // Both tools copy frames on 1 s ticks; ours start with the load's first commit (an idle
    // database's commit is copied at once). A load of fixed length would end at the same point
    // between two ticks in every run, making catch-up a constant of that phase; a random length
    // measures the latency itself.
    const seconds = LOAD.seconds + Math.random() * PHASE_JITTER_MS / 1000;
    const cpu0 = await proc.cpuS();
    const loadStart = epochMs();
    const writer = runLoadWriter(dbPath, { ...LOAD, seconds, token });
    // Start listing 2 s before the writer's last commit is due: segments listed before that
    // commit are excluded, and the polling costs nothing during most of the load.
    await Promise.race([sleep(seconds * 1000 - 2000), writer.catch(() => {})]);
    watcher.start();
    let load;
    let caught;
    try {
      load = await writer;
      caught = await watcher.waitForToken(load.lastCommitEpochMs, 60_000);
    } finally {
      await watcher.stop();
    }
    const cpu1 = await proc.cpuS();
    const caughtAt = epochMs();
    const requests = prepared.requests
      ? toolRequests(prepared.requests(), loadStart, caughtAt).length
      : undefined;
    const total = await stopReplicator(proc);
    const names = (await prepared.lister.list()).filter(isSegmentName);
    // WAL volume shipped: decompressed segment sizes (file replicas; S3 would need downloads).
    let walBytes: number | undefined;
    if (factory.kind !== "s3") {
      walBytes = 0;
      for (const n of names) walBytes += decompressFrame(await prepared.lister.read(n), n).length;
    }
    await verifyRestore(configPath, dbPath, `${dir}/verify.db`, load.lastId);
    const sample: WriteLoadSample = {
      catchUpS: caught.catchUpS,
      loadCpuS: cpu1 - cpu0,
      total,
      achievedRate: load.transactions / load.elapsedS,
      lastId: load.lastId,
      segments: names.length,
      walBytes,
      requests,
    };
    log(
      `  ${tool.padEnd(7)}: catch-up ${
        sample.catchUpS.toFixed(3)
      } s (found in ${caught.segment}, ` +
        `${caught.decoded} decoded), load CPU ${sample.loadCpuS.toFixed(2)} s, total CPU ${
          (total.userS + total.sysS).toFixed(2)
        } s, peak RSS ${total.maxRssMB.toFixed(1)} MB, writer ${
          sample.achievedRate.toFixed(0)
        } tx/s (max lag ${load.maxLagMs.toFixed(0)} ms), ${names.length} segments` +
        (requests !== undefined ? `, ${requests} store requests` : ""),
    );
    return sample;
  } finally {
    await killQuietly(proc);
    await prepared.cleanup();
  }
}

/** The write-load scenario over `factory`'s replicas. */
export async function writeLoadScenario(
  ctx: BenchContext,
  name: string,
  summary: string,
  factory: TargetFactory,
  rssLimitMB = MAX_RSS_MB,
): Promise<ScenarioReport> {
  await requireGnuTime();
  const samples = await alternateRuns(
    ctx,
    name,
    (tool, dir) => writeLoadRun(tool, dir, factory, ctx.log),
  );
  const col = (tool: Tool, f: (s: WriteLoadSample) => number, d: number) =>
    medianRange(samples[tool].map(f), d);
  // Stores whose server logs its requests (s3rver, our GCS server): requests are counted.
  const store = factory.kind === "s3" || factory.kind === "gcs";
  const file = factory.kind === "file";
  const header = [
    "tool",
    "catch-up (s)",
    "CPU during load (s)",
    "CPU whole process (s)",
    "peak RSS (MB)",
    "writer (tx/s)",
    "segments",
    ...(store
      ? [`${factory.kind.toUpperCase()} requests during load`]
      : file
      ? ["WAL shipped (MB)"]
      : []),
  ];
  const rows = TOOLS.map((t) => [
    toolLabel(t),
    col(t, (s) => s.catchUpS, 3),
    col(t, (s) => s.loadCpuS, 2),
    col(t, (s) => s.total.userS + s.total.sysS, 2),
    col(t, (s) => s.total.maxRssMB, 1),
    col(t, (s) => s.achievedRate, 0),
    col(t, (s) => s.segments, 0),
    ...(store
      ? [col(t, (s) => s.requests ?? 0, 0)]
      : file
      ? [col(t, (s) => (s.walBytes ?? 0) / 1e6, 1)]
      : []),
  ]);
  const m = (t: Tool, f: (s: WriteLoadSample) => number) => median(samples[t].map(f));
  const targets: TargetResult[] = [
    {
      description: "catch-up no worse than v0.3.13 (median)",
      met: m("ours", (s) => s.catchUpS) <= m("v0.3.13", (s) => s.catchUpS),
      detail: `${m("ours", (s) => s.catchUpS).toFixed(3)} s vs ${
        m("v0.3.13", (s) => s.catchUpS).toFixed(3)
      } s`,
    },
    {
      description: "CPU under load ≤ 1.5× v0.3.13's (median, writer start → caught up)",
      met: m("ours", (s) => s.loadCpuS) <= 1.5 * m("v0.3.13", (s) => s.loadCpuS),
      detail: `${m("ours", (s) => s.loadCpuS).toFixed(2)} s vs ${
        m("v0.3.13", (s) => s.loadCpuS).toFixed(2)
      } s, ratio ${(m("ours", (s) => s.loadCpuS) / m("v0.3.13", (s) => s.loadCpuS)).toFixed(2)}`,
    },
    rssTarget(samples.ours.map((s) => s.total.maxRssMB), rssLimitMB),
  ];
  return {
    name,
    description: summary,
    facts: {
      workload: `fresh WAL-mode database with an empty table; once the replicator has written ` +
        `its first snapshot, bench/load_writer.ts (node:sqlite, synchronous = NORMAL, a ` +
        `separate process) commits ${LOAD.rate} transactions/s of one ${LOAD.rowBytes}-byte ` +
        `random row each for ${LOAD.seconds} s and a random 0–${PHASE_JITTER_MS} ms more (so ` +
        `the last commit falls at a random point between the tools' 1 s ticks)`,
      config: "defaults for everything (monitor-interval 1s, sync-interval 1s, " +
        "checkpoint-interval 1m, min-checkpoint-page-count 1000, max-checkpoint-page-count 10000)",
      "catch-up": "from the writer's last COMMIT (clock read in the writer right after it " +
        "returned) to the end of the first replica listing that shows a WAL segment containing " +
        `the last row (found by decompressing new segments; the listing runs every ` +
        `${factory.pollMs} ms from 2 s before the last commit)`,
      "CPU during load": "user + sys of the replicator from /proc/PID/stat, read just before " +
        "the writer starts and when catch-up is detected (10 ms ticks)",
      "CPU whole process, peak RSS": "GNU time around the replicator from spawn to exit " +
        "(start-up, first snapshot, the load, SIGTERM and its final sync)",
    },
    rows: [],
    table: { header, rows },
    runs: ctx.runs,
    checks: [
      `after each run (SIGTERM), OUR restore of the replica passes PRAGMA integrity_check and ` +
      `holds exactly rows 1..${LOAD.rate * LOAD.seconds} (${ctx.runs} runs per tool)`,
    ],
    targets,
  };
}
