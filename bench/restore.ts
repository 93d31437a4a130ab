/**
 * Restore scenarios: our pure-TypeScript restore (`deno run -A main.ts restore`) against the real
 * Litestream v0.3.13 binary, both restoring the same replica written by v0.3.13.
 *
 * - `restore-large`: a snapshot of a ~220 MB database plus more than 1,000 WAL segments in one
 *   WAL index (the replica a busy database with rare checkpoints leaves).
 * - `restore-large-snapshot-only`: the same replica restored with a `-timestamp` just before its
 *   first WAL segment, so only the snapshot is restored (isolates snapshot decoding and writing).
 * - `restore-many-indexes`: a small database checkpointed every few transactions, leaving
 *   hundreds of WAL indexes (v0.3.13 runs one SQLite checkpoint per index).
 * - `restore-large-age`: `restore-large`'s replica encrypted with age, restored by both tools
 *   from a config with the `age` block (a replica URL carries no keys).
 *
 * Every run restores to a fresh output path. Runs alternate between the tools after one
 * unmeasured warm-up each; every output is compared byte for byte with v0.3.13's warm-up output,
 * and each tool's warm-up output passes `PRAGMA integrity_check`.
 *
 * @module
 */

import { integrityCheck } from "../tests/support/sqlite_cli.ts";
import { listReplicaObjects, rfc3339Nano } from "../tests/support/fixtures.ts";
import { removeTree, REPO_ROOT, scratchDir } from "./support/cache.ts";
import { cpuS, requireGnuTime, type RunStats, sameBytes, timeCommand } from "./support/measure.ts";
import {
  type BenchContext,
  medianStats,
  rssTarget,
  type Scenario,
  type ScenarioReport,
  type TargetResult,
} from "./support/report.ts";
import {
  replicateConfig,
  type Tool,
  toolCommand,
  toolLabel,
  toolOrder,
  toolSlug,
} from "./support/tools.ts";
import {
  type CachedReplica,
  cachedV0313Replica,
  type ReplicaRecipe,
} from "./support/v0313_replica.ts";
import { cachedAgeCopy } from "./support/age_replica.ts";

/** Peak memory allowed for our restore, in MB (10^6 bytes). */
const MAX_RSS_MB = 150;

/** The replica of `restore-large`: one big snapshot and >1,000 segments in one index. */
export const LARGE: ReplicaRecipe = {
  key: "restore-large-v1",
  initialBytes: 210 * 2 ** 20,
  // Syncs (hence segments) every 20 ms; no checkpoint by size or time, so one WAL index.
  db: {
    monitorInterval: "20ms",
    checkpointInterval: "0s",
    minCheckpointPageCount: 1_000_000,
    maxCheckpointPageCount: 0,
  },
  syncInterval: "20ms",
  writer: { rowsPerTransaction: 1, blobSize: 200, pauseMs: 2 },
  minSegments: 1_100,
  minIndexes: 1,
  timeoutMs: 10 * 60_000,
};

const MANY_INDEXES: ReplicaRecipe = {
  key: "restore-many-indexes-v1",
  initialBytes: 32 * 2 ** 20,
  // A PASSIVE checkpoint (a new index) as soon as the shadow WAL holds 3 pages.
  db: {
    monitorInterval: "20ms",
    checkpointInterval: "0s",
    minCheckpointPageCount: 3,
    maxCheckpointPageCount: 0,
  },
  syncInterval: "20ms",
  writer: { rowsPerTransaction: 1, blobSize: 1000, pauseMs: 5 },
  minSegments: 0,
  minIndexes: 500,
  timeoutMs: 10 * 60_000,
};

/** The restore scenarios, in the order `bench/main.ts` runs them. */
export const scenarios: Scenario[] = [
  {
    name: "restore-large",
    summary: "restore a ~220 MB snapshot plus >1,000 WAL segments (one index)",
    run: (ctx) =>
      restoreScenario(ctx, {
        name: "restore-large",
        recipe: LARGE,
        targets: (ours, v0313) => [noSlower(ours, v0313), oursRss(ours)],
      }),
  },
  {
    name: "restore-large-snapshot-only",
    summary: "restore only the ~220 MB snapshot of restore-large (-timestamp before its first " +
      "WAL segment)",
    run: (ctx) =>
      restoreScenario(ctx, {
        name: "restore-large-snapshot-only",
        recipe: LARGE,
        snapshotOnly: true,
        targets: (ours, v0313) => [noSlower(ours, v0313), oursRss(ours)],
      }),
  },
  {
    name: "restore-large-age",
    summary: "restore-large's replica encrypted with age (config mode, both tools)",
    defaultRuns: 3,
    run: (ctx) =>
      restoreScenario(ctx, {
        name: "restore-large-age",
        recipe: LARGE,
        age: true,
        targets: (ours, v0313) => [noSlower(ours, v0313), oursRss(ours)],
      }),
  },
  {
    name: "restore-many-indexes",
    summary: "restore a small snapshot plus hundreds of WAL indexes",
    run: (ctx) =>
      restoreScenario(ctx, {
        name: "restore-many-indexes",
        recipe: MANY_INDEXES,
        targets: (ours, v0313) => [
          {
            description: "(b) ours at least 2× faster than v0.3.13 (median wall time)",
            met: ours.median.wallS * 2 <= v0313.median.wallS,
            detail: `${ours.median.wallS.toFixed(3)} s vs ${
              v0313.median.wallS.toFixed(3)
            } s, speed-up ${(v0313.median.wallS / ours.median.wallS).toFixed(2)}×`,
          },
          oursRss(ours),
        ],
      }),
  },
];

/** Medians and every run's peak RSS of one tool. */
export interface ToolSummary {
  median: RunStats;
  rssMB: number[];
}

/** Target (a): ours no slower than v0.3.13 (median wall time). */
export function noSlower(ours: ToolSummary, v0313: ToolSummary): TargetResult {
  return {
    description: "(a) ours no slower than v0.3.13 (median wall time)",
    met: ours.median.wallS <= v0313.median.wallS,
    detail: `${ours.median.wallS.toFixed(3)} s vs ${v0313.median.wallS.toFixed(3)} s, ratio ${
      (ours.median.wallS / v0313.median.wallS).toFixed(2)
    }`,
  };
}

/** Target: ours under 150 MB peak in every run. */
export function oursRss(ours: ToolSummary): TargetResult {
  return rssTarget(ours.rssMB, MAX_RSS_MB);
}

/** One restore scenario: its replica recipe, what to restore, and its targets. */
export interface RestoreScenarioOptions {
  name: string;
  /** Summary for the report; default: this module's scenario of that name. */
  description?: string;
  recipe: ReplicaRecipe;
  /** Restore only the snapshot: `-timestamp` just before the first WAL segment's mtime. */
  snapshotOnly?: boolean;
  /** Restore an age-encrypted copy of the replica, from a config holding its keys. */
  age?: boolean;
  /**
   * Restore through a server instead of the file URL (SFTP in `bench/sftp.ts`, Azure Blob
   * Storage in `bench/abs.ts`, GCS in `bench/gcs.ts`): returns the `restore` arguments naming the
   * replica, facts for the report (default: the SFTP server's), and a cleanup.
   */
  via?: (
    replicaPath: string,
    scratch: string,
  ) => Promise<{ source: string[]; facts?: Record<string, string>; stop(): Promise<void> }>;
  targets: (ours: ToolSummary, v0313: ToolSummary) => TargetResult[];
}

/** Runs a restore scenario: warm-ups, then `ctx.runs` alternating measured runs per tool. */
export async function restoreScenario(
  ctx: BenchContext,
  { name, description, recipe, snapshotOnly, age, targets, via }: RestoreScenarioOptions,
): Promise<ScenarioReport> {
  await requireGnuTime();
  const replica = await cachedV0313Replica(recipe, ctx.log);
  const extra = snapshotOnly ? ["-timestamp", await beforeFirstSegment(replica)] : [];
  const expectedBytes = snapshotOnly ? replica.snapshotDbBytes : replica.restoredBytes;
  const scratch = await scratchDir(name);
  // What names the replica: its URL, or (age) a config's database whose replica has the keys.
  let source = [replica.replicaUrl];
  const facts = replicaFacts(replica);
  if (age) {
    const copy = await cachedAgeCopy(replica, ctx.log);
    const config = `${scratch}/litestream.yml`;
    await Deno.writeTextFile(
      config,
      replicateConfig(`${scratch}/app.db`, { type: "file", path: copy.replicaPath, age: copy }),
    );
    source = ["-config", config, `${scratch}/app.db`];
    facts.replica = copy.replicaPath;
    facts.encryption = `age (one X25519 recipient) on every object; the copy was encrypted ` +
      `from the plain replica by our decorator in ${copy.encryptSeconds} s`;
  }
  const server = await via?.(replica.replicaPath, scratch);
  if (server) {
    source = server.source;
    if (server.facts) Object.assign(facts, server.facts);
    else facts["replica served by"] = `OpenSSH sshd on 127.0.0.1 (${source.join(" ")})`;
  }

  let serial = 0;
  /** Restores with `tool` into a fresh directory; returns the stats and the output path. */
  const restoreOnce = async (tool: Tool): Promise<{ stats: RunStats; out: string }> => {
    const dir = `${scratch}/${toolSlug(tool)}-${serial++}`;
    await Deno.mkdir(dir);
    const out = `${dir}/restored.db`;
    // Flush dirty pages of earlier runs so no run pays for another's writeback.
    await new Deno.Command("sync").output();
    const [cmd, args] = await toolCommand(tool, [
      "restore",
      ...extra,
      "-o",
      out,
      ...source,
    ]);
    const stats = await timeCommand(cmd, args, { cwd: REPO_ROOT });
    return { stats, out };
  };

  try {
    // Warm-ups (unmeasured): they also provide the reference output and the integrity checks.
    ctx.log(`[${name}] warm-up restores`);
    const reference = await restoreOnce("v0.3.13");
    const oursFirst = await restoreOnce("ours");
    const checks: string[] = [];
    for (const [tool, out] of [["v0.3.13", reference.out], ["ours", oursFirst.out]]) {
      const result = await integrityCheck(out);
      checks.push(`PRAGMA integrity_check of ${tool}'s output: ${result}`);
      if (result !== "ok") throw new Error(`${tool}'s restore of ${name} is corrupt: ${result}`);
    }
    const size = (await Deno.stat(reference.out)).size;
    if (size !== expectedBytes) {
      throw new Error(`v0.3.13 restored ${size} bytes, expected ${expectedBytes}`);
    }
    if (!(await sameBytes(oursFirst.out, reference.out))) {
      throw new Error(`ours and v0.3.13's restores of ${name} differ`);
    }
    await removeTree(oursFirst.out.replace(/\/[^/]+$/, ""));

    const measured: Record<Tool, RunStats[]> = { ours: [], "v0.3.13": [] };
    for (let i = 0; i < ctx.runs; i++) {
      for (const tool of toolOrder(i)) {
        const { stats, out } = await restoreOnce(tool);
        if (!(await sameBytes(out, reference.out))) {
          throw new Error(`${tool}'s run ${i + 1} of ${name} differs from v0.3.13's output`);
        }
        await removeTree(out.replace(/\/[^/]+$/, ""));
        measured[tool].push(stats);
        ctx.log(
          `[${name}] run ${i + 1}/${ctx.runs} ${tool.padEnd(7)}: wall ${
            stats.wallS.toFixed(3)
          } s, ` +
            `cpu ${cpuS(stats).toFixed(2)} s, peak RSS ${stats.maxRssMB.toFixed(1)} MB`,
        );
      }
    }
    checks.push(
      `every output (${2 * ctx.runs + 2} restores) is byte-identical to v0.3.13's ` +
        `(${size} bytes${snapshotOnly ? "" : `, ${replica.rows} rows`})`,
    );
    const summary = (runs: RunStats[]): ToolSummary => ({
      median: medianStats(runs),
      rssMB: runs.map((r) => r.maxRssMB),
    });
    const ours = summary(measured.ours);
    const v0313 = summary(measured["v0.3.13"]);
    if (snapshotOnly) {
      facts["WAL segments"] = `none applied (${replica.segments} on the replica, all newer ` +
        `than -timestamp ${extra[1]})`;
      facts["restored database"] = `${(size / 1e6).toFixed(1)} MB (the snapshot)`;
    }
    return {
      name,
      description: description ?? scenarios.find((s) => s.name === name)!.summary,
      facts,
      rows: ([["ours", ours], ["v0.3.13", v0313]] as const).map(([tool, t]) => ({
        label: toolLabel(tool),
        stats: t.median,
        maxRssMB: Math.max(...t.rssMB),
      })),
      checks,
      targets: targets(ours, v0313),
    };
  } finally {
    await server?.stop();
    await removeTree(scratch);
  }
}

/**
 * A `-timestamp` (RFC 3339, nanoseconds) one nanosecond before the first WAL segment's mtime:
 * both tools then restore the snapshot alone (its mtime is earlier).
 */
async function beforeFirstSegment(r: CachedReplica): Promise<string> {
  const objects = await listReplicaObjects(r.replicaPath);
  const snapshot = objects.find((o) => o.kind === "snapshot")!;
  const first = objects.filter((o) => o.kind === "wal")
    .reduce((a, b) => (b.mtimeNs < a.mtimeNs ? b : a));
  if (snapshot.mtimeNs >= first.mtimeNs) {
    throw new Error(`${r.replicaPath}: the snapshot is not older than every WAL segment`);
  }
  return rfc3339Nano(first.mtimeNs - 1n);
}

function replicaFacts(r: CachedReplica): Record<string, string | number> {
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  return {
    replica: r.replicaPath,
    "snapshot (database at snapshot time)": `${mb(r.snapshotDbBytes)} (${
      mb(r.snapshotBytes)
    } stored, LZ4)`,
    "WAL segments": `${r.segments} in ${r.indexes} index${r.indexes === 1 ? "" : "es"} (${
      mb(r.segmentBytes)
    } stored)`,
    "restored database": `${mb(r.restoredBytes)}, ${r.rows} rows`,
    "replica built by v0.3.13 in": `${r.buildSeconds} s (${r.builtAt})`,
  };
}
