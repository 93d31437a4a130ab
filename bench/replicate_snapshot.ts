/**
 * The first-snapshot driver of `replicate-snapshot` and `s3-snapshot`: a cached database of a
 * given size and an empty replica; the time from spawning the replicator until the first
 * snapshot is complete on the replica, its CPU until then, and peak RSS.
 *
 * @module
 */

import { sleep } from "../lib/os/async.ts";
import { cachedDatabase, resetDatabase } from "./support/cache.ts";
import { type MeasuredProcess, requireGnuTime, type RunStats } from "./support/measure.ts";
import { isSnapshotName } from "./support/replica_watch.ts";
import {
  type BenchContext,
  median,
  medianRange,
  rssTarget,
  type ScenarioReport,
} from "./support/report.ts";
import type { TargetFactory } from "./support/targets.ts";
import {
  alternateRuns,
  killQuietly,
  replicateConfig,
  startReplicator,
  stopReplicator,
  type Tool,
  toolLabel,
  TOOLS,
} from "./support/tools.ts";

const fmtMB = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** One snapshot run of one tool. */
export interface SnapshotSample {
  /** Spawn → snapshot listed on the replica. */
  snapshotS: number;
  total: RunStats;
  /** CPU seconds until the snapshot was listed. */
  cpuS: number;
  snapshotBytes: number;
}

/** One snapshot run: reset the cached database, start the replicator, wait for the snapshot. */
export async function snapshotRun(
  tool: Tool,
  dbPath: string,
  dir: string,
  factory: TargetFactory,
  log: (m: string) => void,
): Promise<SnapshotSample> {
  await Deno.mkdir(dir, { recursive: true });
  await resetDatabase(dbPath);
  const prepared = await factory.setup(tool, dir);
  const configPath = `${dir}/litestream.yml`;
  await Deno.writeTextFile(configPath, replicateConfig(dbPath, prepared.target));
  let proc: MeasuredProcess | undefined;
  try {
    // No run pays for writing back another run's dirty pages.
    await new Deno.Command("sync").output();
    proc = await startReplicator(tool, configPath);
    const spawnedEpoch = performance.timeOrigin + proc.startedAt;
    const seen = await prepared.waitForSnapshot(proc, 300_000);
    const cpuS = await proc.cpuS();
    const total = await stopReplicator(proc);
    const names = await prepared.lister.list();
    const snap = names.filter(isSnapshotName);
    if (snap.length !== 1) throw new Error(`expected one snapshot, found ${snap}`);
    // s3rver may still be writing the object out after it answered: wait for a stable size.
    let snapshotBytes = await prepared.lister.size(snap[0]);
    for (let prev = -1; prev !== snapshotBytes;) {
      prev = snapshotBytes;
      await sleep(500);
      snapshotBytes = await prepared.lister.size(snap[0]);
    }
    const sample = { snapshotS: (seen - spawnedEpoch) / 1000, total, cpuS, snapshotBytes };
    log(
      `  ${tool.padEnd(7)}: snapshot after ${sample.snapshotS.toFixed(2)} s (CPU ${
        cpuS.toFixed(2)
      } s), peak RSS ${total.maxRssMB.toFixed(1)} MB, stored ${fmtMB(snapshotBytes)}`,
    );
    return sample;
  } finally {
    await killQuietly(proc);
    await prepared.cleanup();
  }
}

/** The first-snapshot scenario of a cached database of `dbBytes` over `factory`'s replicas. */
export async function snapshotScenario(
  ctx: BenchContext,
  o: {
    name: string;
    summary: string;
    factory: TargetFactory;
    dbKey: string;
    dbBytes: number;
    rssLimitMB: number;
  },
): Promise<ScenarioReport> {
  await requireGnuTime();
  const dbPath = await cachedDatabase(o.dbKey, o.dbBytes, ctx.log);
  const dbSize = (await Deno.stat(dbPath)).size;
  const samples = await alternateRuns(
    ctx,
    o.name,
    (tool, dir) => snapshotRun(tool, dbPath, dir, o.factory, ctx.log),
    () => resetDatabase(dbPath).catch(() => {}),
  );
  const header = [
    "tool",
    "time to first snapshot (s)",
    "CPU until then (s)",
    "CPU whole process (s)",
    "peak RSS (MB)",
    "snapshot stored (MB)",
  ];
  const rows = TOOLS.map((t) => [
    toolLabel(t),
    medianRange(samples[t].map((s) => s.snapshotS), 2),
    medianRange(samples[t].map((s) => s.cpuS), 2),
    medianRange(samples[t].map((s) => s.total.userS + s.total.sysS), 2),
    medianRange(samples[t].map((s) => s.total.maxRssMB), 1),
    medianRange(samples[t].map((s) => s.snapshotBytes / 1e6), 1),
  ]);
  const mo = median(samples.ours.map((s) => s.snapshotS));
  const mv = median(samples["v0.3.13"].map((s) => s.snapshotS));
  return {
    name: o.name,
    description: o.summary,
    facts: {
      database: `${fmtMB(dbSize)}: one 3,000-byte random blob per 4 KiB page (LZ4 saves ` +
        `about a quarter), WAL checkpointed (TRUNCATE) before each run, read from the page cache`,
      config: "defaults for everything; the replica starts empty",
      "time to first snapshot": o.factory.snapshotTiming ??
        (o.factory.kind === "file"
          ? "from spawning the replicator to the end of the first replica listing (every " +
            `${o.factory.pollMs} ms) that shows a snapshot; both tools write \`<name>.tmp\` and ` +
            "rename it, so a listed snapshot is complete"
          : "from spawning the replicator to the moment s3rver finished handling the request " +
            "that completes the snapshot object (the single PUT, or the CompleteMultipartUpload " +
            "POST; from the server's request log). A listing is no good here: s3rver lists an " +
            "object while its data still streams to disk"),
      "peak RSS": "GNU time; the replicator is stopped (SIGTERM) as soon as the snapshot is listed",
    },
    rows: [],
    table: { header, rows },
    runs: ctx.runs,
    checks: [
      "each run leaves exactly one snapshot on the replica",
      `ours vs v0.3.13, median time to first snapshot: ${mo.toFixed(2)} s vs ${
        mv.toFixed(2)
      } s (informational; no target)`,
    ],
    targets: [rssTarget(samples.ours.map((s) => s.total.maxRssMB), o.rssLimitMB)],
  };
}
