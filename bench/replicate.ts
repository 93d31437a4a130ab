/**
 * Replicate scenarios with a file replica: our `deno run -A main.ts replicate -config CFG`
 * against the real Litestream v0.3.13 `litestream replicate -config CFG`, reading the same YAML
 * (default intervals and checkpoint thresholds unless a scenario says otherwise).
 *
 * - `replicate-write-load`: a separate writer process commits 500 transactions per second of one
 *   1 KB row each for 20 s. Measured: catch-up time (last commit → a replica segment holds it, see
 *   {@link CatchUpWatcher}), the replicator's CPU from writer start to catch-up (`/proc`), its
 *   CPU over the whole process life and peak RSS (GNU time).
 * - `replicate-idle`: after start-up and the first snapshot, two consecutive 60 s windows
 *   without writes: the replicator's CPU% over each and its RSS. Minute 1 (the scenario as
 *   specified) holds both tools' time-based checkpoint and, for ours, V8's one-off
 *   memory-reducing GC about 30 s after start; minute 2 is the steady state.
 * - `replicate-snapshot`: a 500 MB database and an empty replica: time from spawning the
 *   replicator until the first snapshot is listed on the replica, and peak RSS.
 *
 * The drivers are shared with `bench/s3.ts`, which runs the same work against S3.
 *
 * @module
 */

import { createWriterTable, integrityCheck, sqlite } from "../tests/support/sqlite_cli.ts";
import { decompressFrame } from "../lib/lz4/mod.ts";
import {
  BENCH_CACHE,
  type BenchContext,
  cachedDatabase,
  CatchUpWatcher,
  CLK_TCK,
  describeRequests,
  epochMs,
  fileReplicaLister,
  isSegmentName,
  isSnapshotName,
  type MeasuredProcess,
  median,
  medianRange,
  removeTree,
  type ReplicaLister,
  type ReplicaTarget,
  replicateConfig,
  REPO_ROOT,
  requireGnuTime,
  resetDatabase,
  runLoadWriter,
  type RunStats,
  type S3Request,
  type Scenario,
  type ScenarioReport,
  startReplicator,
  stopReplicator,
  type TargetResult,
  type Tool,
  toolCommand,
  toolLabel,
  toolOrder,
  toolRequests,
  TOOLS,
  waitForSnapshot,
} from "./support.ts";

/** Peak memory allowed for our replicator, in MB (10^6 bytes), in every replicate scenario. */
export const MAX_RSS_MB = 100;

/** The write load: transactions per second, seconds, bytes per row (one row per transaction). */
export const LOAD = { rate: 500, seconds: 20, rowBytes: 1000 };

/** Length of the idle window, seconds. */
export const IDLE_SECONDS = 60;

/** Runs per tool of the long scenarios unless `--runs` says otherwise. */
export const DEFAULT_RUNS = 3;

/**
 * Where one run replicates to, and how to look at it. `setup` prepares the target for a run in
 * `dir`; `cleanup` releases it (an S3 server process, for example).
 */
export interface TargetFactory {
  kind: "file" | "s3";
  /** Milliseconds between listings while waiting for the replica. */
  pollMs: number;
  setup(tool: Tool, dir: string): Promise<PreparedTarget>;
}

/** A replica target ready for one run. */
export interface PreparedTarget {
  target: ReplicaTarget;
  lister: ReplicaLister;
  /** Requests the S3 server received so far (S3 only). */
  requests?: () => S3Request[];
  /**
   * Waits until the first snapshot is complete on the replica; returns when that happened
   * (`epochMs()`, as seen by the benchmark). Throws if `proc` exits first or on timeout.
   */
  waitForSnapshot(proc: MeasuredProcess, timeoutMs: number): Promise<number>;
  cleanup(): Promise<void>;
}

/** A file replica in `<dir>/replica`. */
export const FILE_TARGETS: TargetFactory = {
  kind: "file",
  pollMs: 20,
  setup(_tool, dir) {
    const path = `${dir}/replica`;
    const lister = fileReplicaLister(path);
    return Promise.resolve({
      target: { type: "file", path },
      lister,
      // Both tools write `<name>.tmp` and rename it: a listed snapshot is complete.
      waitForSnapshot: (proc, timeoutMs) => waitForSnapshot(lister, proc, timeoutMs, this.pollMs),
      cleanup: () => Promise.resolve(),
    });
  },
};

/** Scratch directory of a scenario, emptied first. */
async function scratchDir(name: string): Promise<string> {
  const dir = `${BENCH_CACHE}/runs/${name}`;
  await removeTree(dir);
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The writer starts after a random delay of up to this (one monitor and sync interval). */
const PHASE_JITTER_MS = 1000;
const fmtMB = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** Restores with OUR restore through the config and checks integrity and the row count. */
async function verifyRestore(configPath: string, dbPath: string, out: string, rows: number) {
  const [cmd, args] = await toolCommand("ours", [
    "restore",
    "-config",
    configPath,
    "-o",
    out,
    dbPath,
  ]);
  const res = await new Deno.Command(cmd, {
    args,
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!res.success) {
    throw new Error(`restore of ${dbPath} failed: ${new TextDecoder().decode(res.stderr)}`);
  }
  const integrity = await integrityCheck(out);
  const got = await sqlite(out, "SELECT count(*) || '|' || coalesce(max(id), 0) FROM t;");
  await Deno.remove(out);
  if (integrity !== "ok" || got !== `${rows}|${rows}`) {
    throw new Error(`restore of ${dbPath}: integrity ${integrity}, rows|max ${got}, want ${rows}`);
  }
}

/** Stops the replicator if a run failed half-way, keeping the original error. */
async function killQuietly(p: MeasuredProcess | undefined): Promise<void> {
  if (p && !p.exited) await p.kill().catch(() => {});
}

// ---------------------------------------------------------------------------------------------
// Write load

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
  await Deno.mkdir(dir, { recursive: true });
  const dbPath = `${dir}/app.db`;
  await createWriterTable(dbPath);
  const prepared = await factory.setup(tool, dir);
  const configPath = `${dir}/litestream.yml`;
  await Deno.writeTextFile(configPath, replicateConfig(dbPath, prepared.target));
  let proc: MeasuredProcess | undefined;
  try {
    proc = await startReplicator(tool, configPath);
    await prepared.waitForSnapshot(proc, 60_000);
    const token = `LITESTREAM-BENCH-LAST-COMMIT-${crypto.randomUUID()}`;
    const watcher = new CatchUpWatcher(prepared.lister, token, factory.pollMs);
    // Both tools act on 1 s timers that start with the process. From a fixed delay after the
    // snapshot, the last commit would land at the same point between two ticks in every run,
    // making catch-up a constant of that phase; a random one measures the latency itself.
    await sleep(Math.random() * PHASE_JITTER_MS);
    const cpu0 = await proc.cpuS();
    const loadStart = epochMs();
    const writer = runLoadWriter(dbPath, { ...LOAD, token });
    // Start listing 2 s before the writer's last commit is due: segments listed before that
    // commit are excluded, and the polling costs nothing during most of the load.
    await Promise.race([sleep(LOAD.seconds * 1000 - 2000), writer.catch(() => {})]);
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
    if (factory.kind === "file") {
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
        (requests !== undefined ? `, ${requests} S3 requests` : ""),
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
): Promise<ScenarioReport> {
  await requireGnuTime();
  const scratch = await scratchDir(name);
  const samples: Record<Tool, WriteLoadSample[]> = { ours: [], "v0.3.13": [] };
  try {
    for (let i = 0; i < ctx.runs; i++) {
      ctx.log(`[${name}] run ${i + 1}/${ctx.runs}`);
      for (const tool of toolOrder(i)) {
        const dir = `${scratch}/${tool === "ours" ? "ours" : "v0313"}-${i}`;
        samples[tool].push(await writeLoadRun(tool, dir, factory, ctx.log));
        await removeTree(dir);
      }
    }
  } finally {
    await removeTree(scratch);
  }
  const col = (tool: Tool, f: (s: WriteLoadSample) => number, d: number) =>
    medianRange(samples[tool].map(f), d);
  const s3 = factory.kind === "s3";
  const header = [
    "tool",
    "catch-up (s)",
    "CPU during load (s)",
    "CPU whole process (s)",
    "peak RSS (MB)",
    "writer (tx/s)",
    "segments",
    s3 ? "S3 requests during load" : "WAL shipped (MB)",
  ];
  const rows = TOOLS.map((t) => [
    toolLabel(t),
    col(t, (s) => s.catchUpS, 3),
    col(t, (s) => s.loadCpuS, 2),
    col(t, (s) => s.total.userS + s.total.sysS, 2),
    col(t, (s) => s.total.maxRssMB, 1),
    col(t, (s) => s.achievedRate, 0),
    col(t, (s) => s.segments, 0),
    s3 ? col(t, (s) => s.requests ?? 0, 0) : col(t, (s) => (s.walBytes ?? 0) / 1e6, 1),
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
    rssTarget(samples.ours.map((s) => s.total.maxRssMB), MAX_RSS_MB),
  ];
  return {
    name,
    description: summary,
    facts: {
      workload: `fresh WAL-mode database with an empty table; once the replicator has written ` +
        `its first snapshot and a random 0–${PHASE_JITTER_MS} ms more (so the last commit ` +
        `falls at a random point between the tools' 1 s ticks), bench/load_writer.ts (node:sqlite, synchronous = NORMAL, a ` +
        `separate process) commits ${LOAD.rate} transactions/s of one ${LOAD.rowBytes}-byte ` +
        `random row each for ${LOAD.seconds} s (${LOAD.rate * LOAD.seconds} rows)`,
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

/** Judged on the worst run: the limit is on peak memory. */
export function rssTarget(rssMB: number[], limit: number): TargetResult {
  return {
    description: `ours peaks under ${limit} MB of memory in every run (peak RSS)`,
    met: Math.max(...rssMB) < limit,
    detail: `median ${median(rssMB).toFixed(1)} MB, worst run ${Math.max(...rssMB).toFixed(1)} MB`,
  };
}

// ---------------------------------------------------------------------------------------------
// Idle

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
      const d = `${dir}/${tool === "ours" ? "ours" : "v0313"}`;
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
  const s3 = factory.kind === "s3";
  const pct = (s: IdleSample) => (100 * s.cpuS) / s.windowS;
  const perMin = (s: IdleSample) => ((s.requests ?? 0) * 60) / s.windowS;
  const header = [
    "tool",
    "window",
    "idle CPU (%)",
    "idle CPU (ms per 60 s)",
    "RSS at end of window (MB)",
    "peak RSS, whole process (MB)",
    ...(s3 ? ["S3 requests per minute", "requests (each run)"] : []),
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
        ...(s3 ? [medianRange(xs.map(perMin), 1), xs.map((s) => s.requestKinds).join("; ")] : []),
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
  if (s3) {
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
        `${s3 ? " and its own s3rver process" : ""}, over the same windows`,
      "idle CPU": "user + sys of the replicator over the window, from /proc/PID/stat (10 ms ticks)",
      ...(s3
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

// ---------------------------------------------------------------------------------------------
// First snapshot of a large database

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
  const scratch = await scratchDir(o.name);
  const samples: Record<Tool, SnapshotSample[]> = { ours: [], "v0.3.13": [] };
  try {
    for (let i = 0; i < ctx.runs; i++) {
      ctx.log(`[${o.name}] run ${i + 1}/${ctx.runs}`);
      for (const tool of toolOrder(i)) {
        const dir = `${scratch}/${tool === "ours" ? "ours" : "v0313"}-${i}`;
        samples[tool].push(await snapshotRun(tool, dbPath, dir, o.factory, ctx.log));
        await removeTree(dir);
      }
    }
  } finally {
    await resetDatabase(dbPath).catch(() => {});
    await removeTree(scratch);
  }
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
      "time to first snapshot": o.factory.kind === "file"
        ? "from spawning the replicator to the end of the first replica listing (every " +
          `${o.factory.pollMs} ms) that shows a snapshot; both tools write \`<name>.tmp\` and ` +
          "rename it, so a listed snapshot is complete"
        : "from spawning the replicator to the moment s3rver finished handling the request " +
          "that completes the snapshot object (the single PUT, or the CompleteMultipartUpload " +
          "POST; from the server's request log). A listing is no good here: s3rver lists an " +
          "object while its data still streams to disk",
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

// ---------------------------------------------------------------------------------------------

/** The file-replica replicate scenarios, in the order `bench/main.ts` runs them. */
export const scenarios: Scenario[] = [
  {
    name: "replicate-write-load",
    summary: `file replica: ${LOAD.rate} tx/s of 1 KB rows for ${LOAD.seconds} s; catch-up, ` +
      "CPU, peak RSS",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      writeLoadScenario(
        ctx,
        "replicate-write-load",
        scenarios[0].summary,
        FILE_TARGETS,
      ),
  },
  {
    name: "replicate-idle",
    summary:
      `file replica: ${IDLE_SECONDS} s without writes after the first snapshot; CPU% and RSS`,
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) => idleScenario(ctx, "replicate-idle", scenarios[1].summary, FILE_TARGETS, 2),
  },
  {
    name: "replicate-snapshot",
    summary: "file replica: first snapshot of a 500 MB database; time and peak RSS",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      snapshotScenario(ctx, {
        name: "replicate-snapshot",
        summary: scenarios[2].summary,
        factory: { ...FILE_TARGETS, pollMs: 50 },
        dbKey: "db-500mb-v1",
        dbBytes: 500e6,
        rssLimitMB: MAX_RSS_MB,
      }),
  },
];
