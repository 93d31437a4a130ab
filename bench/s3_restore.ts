/**
 * `s3-restore`: restore of a snapshot of a 1 GB database from S3 (s3rver in its own process),
 * through a loopback proxy that caps each connection at 50 MB/s, as one connection to S3 runs.
 * v0.3.13 reads the snapshot as one stream; ours reads ranged parts side by side
 * (`-parallelism`, default 8). Ours also runs straight to the server, uncapped: the local limit.
 *
 * Targets (issue "Restore at the speed of the disk"): ours capped at least 4× faster than
 * v0.3.13 capped and within 1.5× of ours uncapped; peak RSS under 200 MB.
 *
 * @module
 */

import { newGeneration } from "../lib/names.ts";
import { lz4FrameEncoder } from "../lib/lz4/mod.ts";
import { S3ReplicaClient } from "../replicas/s3/mod.ts";
import { startFaultProxy } from "../tests/support/fault_proxy.ts";
import { cachedDatabase, removeTree, REPO_ROOT, scratchDir } from "./support/cache.ts";
import { cpuS, requireGnuTime, type RunStats, sameBytes, timeCommand } from "./support/measure.ts";
import {
  type BenchContext,
  medianStats,
  rssTarget,
  type Scenario,
  type ScenarioReport,
} from "./support/report.ts";
import { startS3rverProcess } from "./support/s3rver.ts";
import { replicateConfig, toolCommand } from "./support/tools.ts";

/** One connection's rate to S3, in bytes a second. */
const CAP_BYTES_PER_S = 50e6;
const DB_BYTES = 1e9;
const MAX_RSS_MB = 200;

type Variant = "v0.3.13 capped" | "ours capped" | "ours uncapped";
const VARIANTS: Variant[] = ["v0.3.13 capped", "ours capped", "ours uncapped"];

async function s3RestoreScenario(ctx: BenchContext): Promise<ScenarioReport> {
  await requireGnuTime();
  const db = await cachedDatabase("s3-restore-1g", DB_BYTES, ctx.log);
  const scratch = await scratchDir("s3-restore");
  const srv = await startS3rverProcess();
  await using proxy = startFaultProxy(srv.endpoint, { bytesPerSecond: CAP_BYTES_PER_S });
  try {
    const path = "bench-restore";
    const writer = new S3ReplicaClient({ ...srv.target(path), region: "us-east-1" });
    ctx.log("[s3-restore] uploading the snapshot");
    const file = await Deno.open(db);
    const stored = await writer.writeSnapshot(
      newGeneration(),
      0,
      file.readable.pipeThrough(lz4FrameEncoder()),
    );
    await writer.close();
    // Both tools restore in config mode: the config names the endpoint and credentials.
    const configs: Record<Variant, string> = {} as Record<Variant, string>;
    for (const v of VARIANTS) {
      const endpoint = v.endsWith("uncapped") ? srv.endpoint : proxy.endpoint;
      configs[v] = `${scratch}/${v.replaceAll(" ", "-")}.yml`;
      await Deno.writeTextFile(configs[v], replicateConfig(db, { ...srv.target(path), endpoint }));
    }
    let serial = 0;
    const restoreOnce = async (v: Variant): Promise<RunStats> => {
      const out = `${scratch}/out-${serial++}.db`;
      const tool = v.startsWith("ours") ? "ours" : "v0.3.13";
      const [cmd, args] = await toolCommand(tool, [
        "restore",
        "-config",
        configs[v],
        "-o",
        out,
        db,
      ]);
      await new Deno.Command("sync").output();
      const stats = await timeCommand(cmd, args, { cwd: REPO_ROOT });
      if (!(await sameBytes(out, db))) {
        throw new Error(`${v}: the restore differs from the database`);
      }
      await Deno.remove(out);
      ctx.log(
        `[s3-restore] ${v.padEnd(14)}: wall ${stats.wallS.toFixed(2)} s, cpu ${
          cpuS(stats).toFixed(2)
        } s, peak RSS ${stats.maxRssMB.toFixed(1)} MB`,
      );
      return stats;
    };
    const runs: Record<Variant, RunStats[]> = {
      "v0.3.13 capped": [],
      "ours capped": [],
      "ours uncapped": [],
    };
    for (let i = 0; i < ctx.runs; i++) {
      for (const v of i % 2 ? [...VARIANTS].reverse() : VARIANTS) {
        runs[v].push(await restoreOnce(v));
      }
    }
    const wall = (v: Variant) => medianStats(runs[v]).wallS;
    const speedup = wall("v0.3.13 capped") / wall("ours capped");
    const overLocal = wall("ours capped") / wall("ours uncapped");
    return {
      name: "s3-restore",
      description: scenarios[0].summary,
      facts: {
        database: `${(DB_BYTES / 1e9).toFixed(1)} GB, random 3,000-byte rows`,
        "snapshot object": `${(stored.size / 1e6).toFixed(1)} MB (LZ4)`,
        "per-connection cap": `${CAP_BYTES_PER_S / 1e6} MB/s (loopback proxy in the bench process)`,
        "ours": "default -parallelism 8, 4 MiB parts",
      },
      rows: VARIANTS.map((v) => ({
        label: v,
        stats: medianStats(runs[v]),
        maxRssMB: Math.max(...runs[v].map((r) => r.maxRssMB)),
      })),
      checks: [`every output (${3 * ctx.runs} restores) is byte-identical to the database`],
      targets: [
        {
          description: "ours capped at least 4× faster than v0.3.13 capped (median wall)",
          met: speedup >= 4,
          detail: `${wall("ours capped").toFixed(2)} s vs ${wall("v0.3.13 capped").toFixed(2)} s: ${
            speedup.toFixed(2)
          }×`,
        },
        {
          description: "ours capped within 1.5× of ours uncapped",
          met: overLocal <= 1.5,
          detail: `${wall("ours capped").toFixed(2)} s vs ${wall("ours uncapped").toFixed(2)} s: ${
            overLocal.toFixed(2)
          }×`,
        },
        rssTarget(
          [...runs["ours capped"], ...runs["ours uncapped"]].map((r) => r.maxRssMB),
          MAX_RSS_MB,
        ),
      ],
    };
  } finally {
    await srv.stop();
    await removeTree(scratch);
  }
}

/** The S3 restore scenario, for `bench/main.ts`. */
export const scenarios: Scenario[] = [{
  name: "s3-restore",
  summary: "S3 (s3rver, separate process) through a 50 MB/s-per-connection proxy: restore of a " +
    "1 GB database's snapshot; ours (parallel ranged parts) vs v0.3.13 (one stream), and ours " +
    "uncapped",
  defaultRuns: 3,
  run: s3RestoreScenario,
}];
