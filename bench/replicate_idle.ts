/**
 * The idle driver of `replicate-idle` and `s3-idle`: after start-up and the first snapshot,
 * consecutive windows of {@link IDLE_SECONDS} without writes, both tools side by side; the
 * replicator's CPU% over each window and its RSS (and, on S3, the requests it sends). Minute 1
 * holds both tools' time-based checkpoint and, for ours, V8's one-off memory-reducing GC about
 * 30 s after start; minute 2 is the steady state.
 *
 * @module
 */

import { createWriterTable, sqlite } from "../tests/support/sqlite_cli.ts";
import { sleep } from "../lib/os/async.ts";
import { removeTree, scratchDir } from "./support/cache.ts";
import { epochMs } from "./support/load.ts";
import { CLK_TCK, type MeasuredProcess, requireGnuTime, type RunStats } from "./support/measure.ts";
import {
  type BenchContext,
  median,
  medianRange,
  rssTarget,
  type ScenarioReport,
  type TargetResult,
} from "./support/report.ts";
import { describeRequests, toolRequests } from "./support/s3rver.ts";
import { MAX_RSS_MB, type PreparedTarget, type TargetFactory } from "./support/targets.ts";
import {
  killQuietly,
  replicateConfig,
  startReplicator,
  stopReplicator,
  type Tool,
  toolLabel,
  toolOrder,
  TOOLS,
  toolSlug,
} from "./support/tools.ts";

/** Length of the idle window, seconds. */
export const IDLE_SECONDS = 60;

/** One idle window of one tool. */
export interface IdleSample {
  /** CPU seconds over the window. */
  cpuS: number;
  windowS: number;
  /** RSS at the end of the window (VmRSS). */
  rssMB: number;
  /** GNU time over the whole process life (same for every window of a run). */
  total: RunStats;
  /** Requests at the S3 server during the window (S3 only). */
  requests?: number;
  requestKinds?: string;
}

/** Settling time after the first snapshot is listed, before the first idle window opens. */
const IDLE_SETTLE_MS = 2000;

/**
 * One idle run of both tools at once (each with its own database and replica; on S3 its own
 * server): start both, wait for both first snapshots, wait 2 s, then measure both over the same
 * `windows` consecutive windows of 60 s. Idle work is a few milliseconds of CPU, so running the
 * two side by side does not disturb either, and it halves the scenario's length. Returns, per
 * tool, one sample per window.
 */
export async function idleRun(
  order: Tool[],
  dir: string,
  factory: TargetFactory,
  windows: number,
  log: (m: string) => void,
): Promise<Record<Tool, IdleSample[]>> {
  interface Setup {
    tool: Tool;
    prepared: PreparedTarget;
    proc?: MeasuredProcess;
  }
  const setups: Setup[] = [];
  try {
    for (const tool of order) {
      const d = `${dir}/${toolSlug(tool)}`;
      await Deno.mkdir(d, { recursive: true });
      const dbPath = `${d}/app.db`;
      await createWriterTable(dbPath);
      await sqlite(
        dbPath,
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000) " +
          "INSERT INTO t (id, v) SELECT i, randomblob(1000) FROM c;",
      );
      const prepared = await factory.setup(tool, d);
      const configPath = `${d}/litestream.yml`;
      await Deno.writeTextFile(configPath, replicateConfig(dbPath, prepared.target));
      const s: Setup = { tool, prepared };
      setups.push(s);
      s.proc = await startReplicator(tool, configPath);
    }
    await Promise.all(setups.map((s) => s.prepared.waitForSnapshot(s.proc!, 60_000)));
    await sleep(IDLE_SETTLE_MS);
    const measured: {
      cpuS: number[];
      rssMB: number[];
      windowS: number;
      from: number;
      to: number;
    }[] = [];
    let cpu0 = await Promise.all(setups.map((s) => s.proc!.cpuS()));
    for (let w = 0; w < windows; w++) {
      const from = epochMs();
      const t0 = performance.now();
      await sleep(IDLE_SECONDS * 1000);
      const cpu1 = await Promise.all(setups.map((s) => s.proc!.cpuS()));
      const rssMB = await Promise.all(setups.map((s) => s.proc!.rssMB()));
      const windowS = (performance.now() - t0) / 1000;
      measured.push({ cpuS: cpu1.map((c, k) => c - cpu0[k]), rssMB, windowS, from, to: epochMs() });
      cpu0 = cpu1;
    }
    const out = {} as Record<Tool, IdleSample[]>;
    for (const [k, s] of setups.entries()) {
      const total = await stopReplicator(s.proc!);
      out[s.tool] = measured.map((m, w) => {
        const reqs = s.prepared.requests
          ? toolRequests(s.prepared.requests(), m.from, m.to)
          : undefined;
        log(
          `  ${s.tool.padEnd(7)} minute ${w + 1}: idle CPU ${(m.cpuS[k] * 1000).toFixed(0)} ms in ${
            m.windowS.toFixed(1)
          } s (${(100 * m.cpuS[k] / m.windowS).toFixed(2)}%), RSS ${m.rssMB[k].toFixed(1)} MB, ` +
            `peak ${total.maxRssMB.toFixed(1)} MB` +
            (reqs
              ? `, ${reqs.length} S3 requests (${describeRequests(reqs)}): ${
                reqs.map((r) => `${r.method} ${r.url}`).join(" ")
              }`
              : ""),
        );
        return {
          cpuS: m.cpuS[k],
          windowS: m.windowS,
          rssMB: m.rssMB[k],
          total,
          requests: reqs?.length,
          requestKinds: reqs ? describeRequests(reqs) : undefined,
        };
      });
    }
    return out;
  } finally {
    for (const s of setups) {
      await killQuietly(s.proc);
      await s.prepared.cleanup();
    }
  }
}

/**
 * The idle scenario over `factory`'s replicas: `windows` consecutive minutes per run. Minute 1
 * opens 2 s after the first snapshot (the scenario as specified); with the default
 * `checkpoint-interval` of 1 min both tools checkpoint once during it (and on S3 upload the new
 * WAL index's first segment). Minute 2 shows the steady state.
 */
export async function idleScenario(
  ctx: BenchContext,
  name: string,
  summary: string,
  factory: TargetFactory,
  windows: number,
): Promise<ScenarioReport> {
  await requireGnuTime();
  const scratch = await scratchDir(name);
  // samples[tool][window] = one sample per run
  const samples: Record<Tool, IdleSample[][]> = {
    ours: Array.from({ length: windows }, () => []),
    "v0.3.13": Array.from({ length: windows }, () => []),
  };
  try {
    for (let i = 0; i < ctx.runs; i++) {
      ctx.log(
        `[${name}] run ${i + 1}/${ctx.runs} (both tools side by side, ${windows} × ` +
          `${IDLE_SECONDS} s)`,
      );
      const r = await idleRun(toolOrder(i), `${scratch}/${i}`, factory, windows, ctx.log);
      for (const t of TOOLS) r[t].forEach((s, w) => samples[t][w].push(s));
      await removeTree(`${scratch}/${i}`);
    }
  } finally {
    await removeTree(scratch);
  }
  const store = factory.kind !== "file"; // an object store: requests are counted
  const pct = (s: IdleSample) => (100 * s.cpuS) / s.windowS;
  const perMin = (s: IdleSample) => ((s.requests ?? 0) * 60) / s.windowS;
  const header = [
    "tool",
    "window",
    "idle CPU (%)",
    "idle CPU (ms per 60 s)",
    "RSS at end of window (MB)",
    "peak RSS, whole process (MB)",
    ...(store ? [`${factory.kind.toUpperCase()} requests per minute`, "requests (each run)"] : []),
  ];
  const rows: string[][] = [];
  for (const t of TOOLS) {
    for (let w = 0; w < windows; w++) {
      const xs = samples[t][w];
      rows.push([
        toolLabel(t),
        `minute ${w + 1}`,
        medianRange(xs.map(pct), 3),
        medianRange(xs.map((s) => (s.cpuS * 1000 * 60) / s.windowS), 0),
        medianRange(xs.map((s) => s.rssMB), 1),
        medianRange(xs.map((s) => s.total.maxRssMB), 1),
        ...(store
          ? [medianRange(xs.map(perMin), 1), xs.map((s) => s.requestKinds).join("; ")]
          : []),
      ]);
    }
  }
  const targets: TargetResult[] = [];
  // Compared in whole clock ticks (10 ms) per 60 s, the measurement's resolution: the windows'
  // lengths differ by milliseconds between runs, which would otherwise order equal tick counts.
  const ticksPerMinute = (s: IdleSample) => Math.round((s.cpuS * CLK_TCK * 60) / s.windowS);
  for (let w = 0; w < windows; w++) {
    const mo = median(samples.ours[w].map(ticksPerMinute));
    const mv = median(samples["v0.3.13"][w].map(ticksPerMinute));
    targets.push({
      description: `idle CPU ≤ v0.3.13's (median, minute ${w + 1}, in 10 ms ticks per 60 s)`,
      met: mo <= mv,
      detail: `${mo * 10} ms vs ${mv * 10} ms per 60 s (${
        median(samples.ours[w].map(pct)).toFixed(3)
      }% vs ${median(samples["v0.3.13"][w].map(pct)).toFixed(3)}%)`,
    });
  }
  targets.push(rssTarget(samples.ours[0].map((s) => s.total.maxRssMB), MAX_RSS_MB));
  if (store) {
    for (let w = 0; w < windows; w++) {
      const counts = samples.ours[w].map((s) => s.requests ?? 0);
      targets.push({
        description: `ours sends 0 S3 requests while idle (every run, minute ${w + 1})`,
        met: Math.max(...counts) === 0,
        detail: `ours ${counts.join(", ")} requests; v0.3.13 ${
          samples["v0.3.13"][w].map((s) => s.requests).join(", ")
        }`,
      });
    }
  }
  return {
    name,
    description: summary,
    facts: {
      database: "a WAL-mode database with 1,000 rows of 1,000 random bytes (about 4 MB)",
      config: "defaults for everything (monitor-interval 1s, sync-interval 1s, " +
        "checkpoint-interval 1m, min-checkpoint-page-count 1000)",
      windows: `${windows} consecutive windows of ${IDLE_SECONDS} s without writes, the first ` +
        `opening ${IDLE_SETTLE_MS / 1000} s after the first snapshot is complete on the ` +
        `replica. Both tools run side by side, each with its own database and replica` +
        `${store ? " and its own server process" : ""}, over the same windows`,
      "idle CPU": "user + sys of the replicator over the window, from /proc/PID/stat (10 ms ticks)",
      ...(store
        ? {
          "S3 requests": "counted at the server from its request log (the benchmark makes none " +
            "during the windows)",
        }
        : {}),
    },
    rows: [],
    table: { header, rows },
    runs: ctx.runs,
    checks: ["both replicators run all windows and exit cleanly on SIGTERM"],
    targets,
  };
}
