/**
 * Shared benchmark machinery: the scenario interface `bench/main.ts` runs, timing a child process
 * with GNU time (wall, user+sys CPU, peak RSS), medians and Markdown tables, and a builder for
 * file replicas written by the real Litestream v0.3.13, cached under `<repo>/.cache/bench/`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
import { decompressFrame } from "../lib/lz4/mod.ts";
import {
  litestreamV0313,
  REPO_ROOT,
  startV0313Replicate,
  v0313Restore,
} from "../tests/support/litestream_v0313.ts";
import { integrityCheck, sqlite, Writer, type WriterOptions } from "../tests/support/sqlite_cli.ts";
import { listReplicaObjects, type ReplicaObject } from "../tests/support/fixtures.ts";
import { startLogged } from "../tests/support/logged_process.ts";
import { waitFor } from "../tests/support/poll.ts";

export { REPO_ROOT };

/** Git-ignored directory holding cached replicas and scratch outputs. */
export const BENCH_CACHE = `${REPO_ROOT}/.cache/bench`;

/** GNU time, which reports a child's CPU time and peak RSS. */
export const GNU_TIME = "/usr/bin/time";

// ---------------------------------------------------------------------------------------------
// Scenarios

/** What `bench/main.ts` passes to every scenario. */
export interface BenchContext {
  /** Measured runs per tool (after one unmeasured warm-up each). */
  runs: number;
  /** Prints a progress line (to stderr, so stdout stays the report). */
  log(message: string): void;
}

/** A benchmark target and whether this run met it. */
export interface TargetResult {
  description: string;
  met: boolean;
  /** The measured numbers behind the verdict. */
  detail: string;
}

/** What a scenario reports. */
export interface ScenarioReport {
  name: string;
  description: string;
  /** Facts about the input (sizes, counts), shown as a list. */
  facts: Record<string, string | number>;
  /** Median statistics per tool (or variant), one table row each, with the worst peak RSS. */
  rows: { label: string; stats: RunStats; maxRssMB: number }[];
  /** Correctness checks performed, each a one-line verdict. */
  checks: string[];
  targets: TargetResult[];
  /**
   * A table to print instead of `rows`, for scenarios whose numbers are not one process's wall
   * time (catch-up times, CPU over a window, request counts): a header and pre-formatted cells.
   */
  table?: { header: string[]; rows: string[][] };
  /** Runs per tool behind the medians, when the scenario chose its own number. */
  runs?: number;
}

/** A benchmark scenario; modules export a list of them for `bench/main.ts`. */
export interface Scenario {
  /** Short identifier, selectable on the command line (`deno task bench NAME...`). */
  name: string;
  /** One-line summary printed before the scenario runs. */
  summary: string;
  /** Measured runs per tool when `--runs` is not given (default 5). */
  defaultRuns?: number;
  run(ctx: BenchContext): Promise<ScenarioReport>;
}

// ---------------------------------------------------------------------------------------------
// Measuring a child process

/** One measured run of a child process. */
export interface RunStats {
  /** Wall time in seconds, measured by this process around the child. */
  wallS: number;
  /** User CPU seconds of the child (GNU time `%U`). */
  userS: number;
  /** System CPU seconds of the child (GNU time `%S`). */
  sysS: number;
  /** Peak resident set size in MB (10^6 bytes; GNU time `%M` reports KiB). */
  maxRssMB: number;
}

/** User plus system CPU seconds. */
export function cpuS(s: RunStats): number {
  return s.userS + s.sysS;
}

/**
 * Runs `cmd args...` under GNU time and returns its statistics. Throws, quoting stderr, when the
 * command fails. Output of the command itself is captured and discarded.
 */
export async function timeCommand(
  cmd: string,
  args: string[],
  options: { cwd?: string } = {},
): Promise<RunStats> {
  const timeFile = await Deno.makeTempFile({ prefix: "bench-time-" });
  try {
    const started = performance.now();
    const out = await new Deno.Command(GNU_TIME, {
      args: ["-f", "%e %U %S %M", "-o", timeFile, "--", cmd, ...args],
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const wallS = (performance.now() - started) / 1000;
    if (!out.success) {
      throw new Error(
        `${cmd} ${args.join(" ")} failed (exit ${out.code}):\n` +
          new TextDecoder().decode(out.stderr),
      );
    }
    const fields = (await Deno.readTextFile(timeFile)).trim().split("\n").pop()!.split(" ");
    const [, user, sys, rssKiB] = fields.map(Number);
    return { wallS, userS: user, sysS: sys, maxRssMB: (rssKiB * 1024) / 1e6 };
  } finally {
    await Deno.remove(timeFile).catch(() => {});
  }
}

/** Throws a readable error when GNU time is missing (install it with `apt-get install time`). */
export async function requireGnuTime(): Promise<void> {
  try {
    const out = await new Deno.Command(GNU_TIME, {
      args: ["-f", "%M", "true"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.success) return;
  } catch {
    // reported below
  }
  throw new Error(`${GNU_TIME} (GNU time) is required: apt-get install -y time`);
}

/** Median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Element-wise medians of several runs. */
export function medianStats(runs: RunStats[]): RunStats {
  return {
    wallS: median(runs.map((r) => r.wallS)),
    userS: median(runs.map((r) => r.userS)),
    sysS: median(runs.map((r) => r.sysS)),
    maxRssMB: median(runs.map((r) => r.maxRssMB)),
  };
}

/** True when two files have identical bytes (`cmp -s`). */
export async function sameBytes(a: string, b: string): Promise<boolean> {
  const out = await new Deno.Command("cmp", { args: ["-s", a, b] }).output();
  if (out.code > 1) throw new Error(`cmp ${a} ${b} failed (exit ${out.code})`);
  return out.code === 0;
}

/** Renders a scenario report as Markdown. */
export function formatReport(r: ScenarioReport, runs: number): string {
  const lines = [`### ${r.name}`, "", r.description, ""];
  for (const [k, v] of Object.entries(r.facts)) lines.push(`- ${k}: ${v}`);
  if (r.table) {
    lines.push(
      "",
      `Medians of ${r.runs ?? runs} runs per tool (a range is the lowest–highest run):`,
      "",
      `| ${r.table.header.join(" | ")} |`,
      `|---|${r.table.header.slice(1).map(() => "---:").join("|")}|`,
      ...r.table.rows.map((cells) => `| ${cells.join(" | ")} |`),
    );
  } else {
    pushRowsTable(lines, r, runs);
  }
  lines.push("", "Checks:", "");
  for (const c of r.checks) lines.push(`- ${c}`);
  lines.push("", "Targets:", "");
  if (r.targets.length === 0) lines.push("- none for this scenario");
  for (const t of r.targets) {
    lines.push(`- ${t.met ? "MET" : "NOT MET"}: ${t.description} (${t.detail})`);
  }
  lines.push("");
  return lines.join("\n");
}

function pushRowsTable(lines: string[], r: ScenarioReport, runs: number): void {
  lines.push(
    "",
    `Medians of ${runs} runs per tool (worst peak RSS: the highest of those runs):`,
    "",
    "| tool | wall (s) | CPU user+sys (s) | user (s) | sys (s) | peak RSS (MB) | worst peak RSS (MB) |",
    "|---|---:|---:|---:|---:|---:|---:|",
  );
  for (const { label, stats: s, maxRssMB } of r.rows) {
    lines.push(
      `| ${label} | ${s.wallS.toFixed(3)} | ${cpuS(s).toFixed(2)} | ${s.userS.toFixed(2)} | ` +
        `${s.sysS.toFixed(2)} | ${s.maxRssMB.toFixed(1)} | ${maxRssMB.toFixed(1)} |`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Replicas written by v0.3.13, cached

/** How to build one cached replica. */
export interface ReplicaRecipe {
  /** Cache directory name under {@link BENCH_CACHE}; change it when the recipe changes. */
  key: string;
  /** Approximate size of the database before replication starts (rows of random blobs). */
  initialBytes: number;
  /** v0.3.13 per-database settings (Go durations / page counts), written into `dbs[0]`. */
  db: {
    monitorInterval: string;
    checkpointInterval: string;
    minCheckpointPageCount: number;
    maxCheckpointPageCount: number;
  };
  /** v0.3.13 file-replica sync interval (Go duration). */
  syncInterval: string;
  /** The writer that runs while v0.3.13 replicates. */
  writer: WriterOptions;
  /** Stop writing once the replica holds at least this many WAL segments… */
  minSegments: number;
  /** …and at least this many distinct WAL indexes. */
  minIndexes: number;
  /** Give up after this long. */
  timeoutMs: number;
}

/** A cached replica and what it holds (`meta.json` in its directory). */
export interface CachedReplica {
  key: string;
  /** Root directory of the file replica. */
  replicaPath: string;
  /** `file://` URL of the replica. */
  replicaUrl: string;
  generation: string;
  snapshotIndex: number;
  /** Stored (compressed) size of the snapshot. */
  snapshotBytes: number;
  /** Size of the database the snapshot holds. */
  snapshotDbBytes: number;
  segments: number;
  indexes: number;
  /** Sum of the stored (compressed) segment sizes. */
  segmentBytes: number;
  /** Size of the fully restored database (v0.3.13's restore). */
  restoredBytes: number;
  /** Rows in the restored database (= the writer's last committed id). */
  rows: number;
  /** The v0.3.13 config that wrote the replica. */
  config: string;
  buildSeconds: number;
  builtAt: string;
}

/**
 * Returns the replica for `recipe`, building it with the real v0.3.13 the first time. The build
 * happens in a temporary sibling directory renamed into place at the end, so the cache holds
 * either a complete replica (with `meta.json`) or nothing.
 */
export async function cachedV0313Replica(
  recipe: ReplicaRecipe,
  log: (m: string) => void,
): Promise<CachedReplica> {
  const dir = `${BENCH_CACHE}/${recipe.key}`;
  try {
    const meta = JSON.parse(await Deno.readTextFile(`${dir}/meta.json`)) as CachedReplica;
    log(`using cached replica ${dir}`);
    // The cache may have moved with the repository since it was built.
    return { ...meta, replicaPath: `${dir}/replica`, replicaUrl: `file://${dir}/replica` };
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(BENCH_CACHE, { recursive: true });
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  const staging = await Deno.makeTempDir({ dir: BENCH_CACHE, prefix: `${recipe.key}.tmp-` });
  try {
    const meta = await buildReplica(recipe, staging, dir, log);
    await Deno.writeTextFile(`${staging}/meta.json`, JSON.stringify(meta, null, 2) + "\n");
    await Deno.rename(staging, dir);
    return meta;
  } catch (err) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    throw err;
  }
}

/** Logged by v0.3.13 when SIGTERM catches its shutdown sync about to checkpoint (harmless). */
const KNOWN_SHUTDOWN_ERROR = "release read lock: context canceled";

async function buildReplica(
  recipe: ReplicaRecipe,
  staging: string,
  finalDir: string,
  log: (m: string) => void,
): Promise<CachedReplica> {
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
  const work = `${staging}/work`;
  await Deno.mkdir(work);
  const dbPath = `${work}/app.db`;
  const replicaPath = `${staging}/replica`;
  const configPath = `${work}/litestream.yml`;

  // 1. The database: rows of random blobs, one row per 4 KiB page, then WAL mode.
  const blob = 3000;
  const rows = Math.ceil(recipe.initialBytes / 4096);
  log(`[${recipe.key}] creating a ${(recipe.initialBytes / 2 ** 20).toFixed(0)} MiB database`);
  await sqlite(
    dbPath,
    [
      "PRAGMA page_size = 4096;",
      "PRAGMA journal_mode = WAL;",
      "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);",
      "BEGIN;",
      `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ${rows})`,
      `  INSERT INTO t (id, v) SELECT i, randomblob(${blob}) FROM c;`,
      "COMMIT;",
      "PRAGMA wal_checkpoint(TRUNCATE);",
    ].join("\n"),
  );
  log(`[${recipe.key}] database ready: ${(await Deno.stat(dbPath)).size} bytes (${elapsed()})`);

  // 2. v0.3.13 replicates while a writer commits small transactions.
  const config = [
    "dbs:",
    `  - path: ${dbPath}`,
    `    monitor-interval: ${recipe.db.monitorInterval}`,
    `    checkpoint-interval: ${recipe.db.checkpointInterval}`,
    `    min-checkpoint-page-count: ${recipe.db.minCheckpointPageCount}`,
    `    max-checkpoint-page-count: ${recipe.db.maxCheckpointPageCount}`,
    "    replicas:",
    "      - type: file",
    `        path: ${replicaPath}`,
    `        sync-interval: ${recipe.syncInterval}`,
    "        snapshot-interval: 0s",
    "        retention: 24h",
    "",
  ].join("\n");
  await Deno.writeTextFile(configPath, config);
  const litestream = await startV0313Replicate(configPath);
  let lastId = 0;
  let failure: unknown;
  try {
    await waitFor(
      "v0.3.13 to write the snapshot",
      async () => {
        if (litestream.exited) throw new Error(`v0.3.13 exited; log:\n${await litestream.log()}`);
        return (await listReplicaObjects(replicaPath)).some((o) => o.kind === "snapshot");
      },
      120_000,
      200,
    );
    log(`[${recipe.key}] v0.3.13 wrote the snapshot (${elapsed()}); writing`);

    const writer = await Writer.start(dbPath, recipe.writer);
    try {
      const deadline = Date.now() + recipe.timeoutMs;
      let lastReport = 0;
      while (true) {
        if (litestream.exited) throw new Error(`v0.3.13 exited; log:\n${await litestream.log()}`);
        const { segments, indexes } = await countSegments(replicaPath);
        if (segments >= recipe.minSegments && indexes >= recipe.minIndexes) break;
        if (Date.now() > deadline) {
          throw new Error(
            `timed out: ${segments} segments, ${indexes} indexes after ${recipe.timeoutMs} ms`,
          );
        }
        if (Date.now() - lastReport > 3000) {
          lastReport = Date.now();
          log(
            `[${recipe.key}] ${segments}/${recipe.minSegments} segments, ` +
              `${indexes}/${recipe.minIndexes} indexes, ${writer.transactions} commits (${elapsed()})`,
          );
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    } finally {
      // Stop writing first so v0.3.13's shutdown sync uploads everything committed.
      lastId = await writer.stop();
    }
  } catch (err) {
    failure = err;
  }
  const { status } = await litestream.stop(60_000);
  const text = await litestream.log();
  if (failure) throw failure;
  // v0.3.13 exits 1 when its shutdown sync wants a checkpoint; the replica is complete anyway.
  if (!status.success && !(status.code === 1 && text.includes(KNOWN_SHUTDOWN_ERROR))) {
    throw new Error(`v0.3.13 exited with code ${status.code}; log:\n${text}`);
  }

  // 3. Check the replica with v0.3.13's own restore before anything is measured on it.
  const objects = await listReplicaObjects(replicaPath);
  const generations = new Set(objects.map((o) => o.generation));
  if (generations.size !== 1) throw new Error(`expected one generation, found ${[...generations]}`);
  const snapshots = objects.filter((o) => o.kind === "snapshot");
  if (snapshots.length !== 1) throw new Error(`expected one snapshot, found ${snapshots.length}`);
  const check = `${work}/check.db`;
  log(`[${recipe.key}] replication stopped (${elapsed()}); checking with v0.3.13 restore`);
  const res = await v0313Restore(["-o", check, `file://${replicaPath}`]);
  if (res.code !== 0) throw new Error(`v0.3.13 cannot restore its replica: ${res.stderr}`);
  const integrity = await integrityCheck(check);
  if (integrity !== "ok") throw new Error(`v0.3.13's restore is corrupt: ${integrity}`);
  const restoredRows = Number(await sqlite(check, "SELECT count(*) FROM t;"));
  const expectedRows = lastId;
  if (restoredRows !== expectedRows) {
    throw new Error(`v0.3.13 restored ${restoredRows} rows, the writer committed ${expectedRows}`);
  }
  const snapshotDbBytes = await lz4ContentSize(snapshots[0].path);
  const counts = countObjects(objects);
  const meta: CachedReplica = {
    key: recipe.key,
    replicaPath: `${finalDir}/replica`,
    replicaUrl: `file://${finalDir}/replica`,
    generation: snapshots[0].generation,
    snapshotIndex: snapshots[0].index,
    snapshotBytes: snapshots[0].size,
    snapshotDbBytes,
    segments: counts.segments,
    indexes: counts.indexes,
    segmentBytes: objects.filter((o) => o.kind === "wal").reduce((n, o) => n + o.size, 0),
    restoredBytes: (await Deno.stat(check)).size,
    rows: restoredRows,
    config,
    buildSeconds: Math.round((Date.now() - started) / 100) / 10,
    builtAt: new Date().toISOString(),
  };
  // Only the replica is kept (the source database, its shadow area and scratch files go).
  await Deno.remove(work, { recursive: true });
  log(
    `[${recipe.key}] built in ${elapsed()}: ${meta.segments} segments, ${meta.indexes} indexes, ` +
      `restored database ${meta.restoredBytes} bytes`,
  );
  return meta;
}

function countObjects(objects: ReplicaObject[]): { segments: number; indexes: number } {
  const wal = objects.filter((o) => o.kind === "wal");
  return { segments: wal.length, indexes: new Set(wal.map((o) => o.index)).size };
}

/**
 * Counts WAL segments and indexes on a replica that v0.3.13 is still writing. (A `find` over the
 * tree, as `listReplicaObjects` runs, fails when a `.tmp` file is renamed during the walk.)
 */
async function countSegments(replicaPath: string): Promise<{ segments: number; indexes: number }> {
  let segments = 0;
  const indexes = new Set<string>();
  const root = `${replicaPath}/generations`;
  try {
    for await (const gen of Deno.readDir(root)) {
      for await (const e of Deno.readDir(`${root}/${gen.name}/wal`)) {
        const m = e.name.match(/^([0-9a-f]{8})_[0-9a-f]{8}\.wal\.lz4$/);
        if (!m) continue;
        segments++;
        indexes.add(`${gen.name}/${m[1]}`);
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return { segments, indexes: indexes.size };
}

/** Decompressed size of an LZ4 frame file (via the `lz4` CLI). */
async function lz4ContentSize(path: string): Promise<number> {
  const child = new Deno.Command("lz4", {
    args: ["-dc", path],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let n = 0;
  for await (const chunk of child.stdout) n += chunk.length;
  const status = await child.status;
  if (!status.success) throw new Error(`lz4 -dc ${path} failed`);
  return n;
}

/** Removes `path` recursively, ignoring a missing path. */
export async function removeTree(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}

// ---------------------------------------------------------------------------------------------
// Replicators: long-running processes measured while they run and when they exit

/** The two implementations compared. */
export type Tool = "ours" | "v0.3.13";

/** Ours first; scenarios alternate the order from run to run. */
export const TOOLS: readonly Tool[] = ["ours", "v0.3.13"];

/** Run `i` (0-based) goes ours → v0.3.13 when `i` is even, the other way round when odd. */
export function toolOrder(i: number): Tool[] {
  return i % 2 === 0 ? ["ours", "v0.3.13"] : ["v0.3.13", "ours"];
}

/** Environment of every tool process: no colours, no config or AWS settings from the caller. */
const TOOL_ENV = {
  NO_COLOR: "1",
  LITESTREAM_CONFIG: "",
  AWS_ACCESS_KEY_ID: "",
  AWS_SECRET_ACCESS_KEY: "",
  LITESTREAM_ACCESS_KEY_ID: "",
  LITESTREAM_SECRET_ACCESS_KEY: "",
};

/** `[command, args]` running `litestream SUBCOMMAND ARGS...` with `tool`. */
export async function toolCommand(tool: Tool, args: string[]): Promise<[string, string[]]> {
  return tool === "ours"
    ? [Deno.execPath(), ["run", "-A", `${REPO_ROOT}/main.ts`, ...args]]
    : [await litestreamV0313(), args];
}

/** Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux). */
export const CLK_TCK = 100;

/** A process started under GNU time by {@link startMeasured}. */
export interface MeasuredProcess {
  /** Process id of the measured program itself (GNU time's child). */
  readonly pid: number;
  /** File receiving the program's stdout and stderr. */
  readonly logPath: string;
  readonly exited: boolean;
  /** `performance.now()` when the process was spawned. */
  readonly startedAt: number;
  /** CPU seconds (user + system, all threads) used so far, from `/proc/<pid>/stat`. */
  cpuS(): Promise<number>;
  /** Current resident set size in MB (`VmRSS`). */
  rssMB(): Promise<number>;
  log(): Promise<string>;
  /**
   * Sends SIGTERM to the program (replicators then run a final sync) and returns GNU time's
   * statistics of the whole run and the exit code. SIGKILLs it and throws after `timeoutMs`.
   */
  stop(timeoutMs?: number): Promise<{ stats: RunStats; code: number }>;
  /** SIGKILLs the program if it still runs (cleanup after a failure). */
  kill(): Promise<void>;
}

/**
 * Starts `cmd args...` under GNU time, its output appended to `logPath`. Unlike
 * {@link timeCommand}, the program keeps running until {@link MeasuredProcess.stop}; meanwhile
 * its CPU time and RSS can be sampled through `/proc`.
 */
export async function startMeasured(
  cmd: string,
  args: string[],
  options: { logPath: string; cwd?: string; env?: Record<string, string> },
): Promise<MeasuredProcess> {
  const timeFile = await Deno.makeTempFile({ prefix: "bench-time-" });
  const startedAt = performance.now();
  const proc = startLogged(cmd, args, {
    logPath: options.logPath,
    name: cmd,
    cwd: options.cwd,
    env: { ...TOOL_ENV, ...options.env },
    wrapper: [GNU_TIME, "-f", "%e %U %S %M", "-o", timeFile, "--"],
  });
  let pid: number;
  try {
    pid = await proc.programPid();
  } catch (err) {
    await proc.kill();
    await Deno.remove(timeFile).catch(() => {});
    throw err;
  }

  const procStat = async (): Promise<number> => {
    const text = await Deno.readTextFile(`/proc/${pid}/stat`);
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // Fields 14 (utime) and 15 (stime) of proc(5); the slice starts at field 3.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  };
  const statusKiB = async (key: string): Promise<number> => {
    const text = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
    if (!m) throw new Error(`no ${key} in /proc/${pid}/status`);
    return Number(m[1]);
  };

  return {
    pid,
    logPath: options.logPath,
    get exited() {
      return proc.exited;
    },
    startedAt,
    cpuS: procStat,
    rssMB: async () => (await statusKiB("VmRSS")) * 1024 / 1e6,
    log: proc.log,
    async stop(timeoutMs = 60_000) {
      try {
        const { status } = await proc.stop(timeoutMs);
        const wallS = (performance.now() - startedAt) / 1000;
        const text = await Deno.readTextFile(timeFile);
        const [, user, sys, rssKiB] = text.trim().split("\n").pop()!.split(" ").map(Number);
        return {
          stats: { wallS, userS: user, sysS: sys, maxRssMB: (rssKiB * 1024) / 1e6 },
          code: status.code,
        };
      } finally {
        await Deno.remove(timeFile).catch(() => {});
      }
    },
    async kill() {
      await proc.kill();
      await Deno.remove(timeFile).catch(() => {});
    },
  };
}

/**
 * Starts `litestream replicate -config CONFIG` with `tool` under GNU time, logging to
 * `CONFIG.<tool>.log`.
 */
export async function startReplicator(tool: Tool, configPath: string): Promise<MeasuredProcess> {
  const [cmd, args] = await toolCommand(tool, ["replicate", "-config", configPath]);
  return startMeasured(cmd, args, { logPath: `${configPath}.log`, cwd: REPO_ROOT });
}

/**
 * Stops a replicator and returns its statistics. v0.3.13 may exit 1 when SIGTERM catches its
 * shutdown sync about to checkpoint (after the replica is up to date); that is accepted, any
 * other failure throws with the log.
 */
export async function stopReplicator(p: MeasuredProcess): Promise<RunStats> {
  const { stats, code } = await p.stop();
  if (code !== 0 && !(code === 1 && (await p.log()).includes(KNOWN_SHUTDOWN_ERROR))) {
    throw new Error(`replicator exited with code ${code}; log:\n${(await p.log()).slice(-4000)}`);
  }
  return stats;
}

/** Where a replicator writes: a directory, or a prefix in an S3 bucket. */
export type ReplicaTarget =
  | { type: "file"; path: string }
  | {
    type: "s3";
    endpoint: string;
    bucket: string;
    path: string;
    accessKeyId: string;
    secretAccessKey: string;
  };

/**
 * The YAML config both tools read: one database, one replica. Settings not given keep their
 * defaults (v0.3.13's: monitor and sync every 1 s, checkpoints at 1,000 pages / every 1 min).
 */
export function replicateConfig(
  dbPath: string,
  replica: ReplicaTarget,
  settings: { db?: Record<string, string | number>; replica?: Record<string, string | number> } =
    {},
): string {
  const lines = ["dbs:", `  - path: ${dbPath}`];
  for (const [k, v] of Object.entries(settings.db ?? {})) lines.push(`    ${k}: ${v}`);
  lines.push("    replicas:");
  const keys: Record<string, string | number> = replica.type === "file"
    ? { type: "file", path: replica.path }
    : {
      type: "s3",
      bucket: replica.bucket,
      path: replica.path,
      endpoint: replica.endpoint,
      region: "us-east-1",
      "force-path-style": "true",
      "access-key-id": replica.accessKeyId,
      "secret-access-key": replica.secretAccessKey,
    };
  let first = true;
  for (const [k, v] of Object.entries({ ...keys, ...settings.replica })) {
    lines.push(`${first ? "      - " : "        "}${k}: ${v}`);
    first = false;
  }
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// Watching a replica while it is written

/** Lists the complete objects of a replica (file or S3) and reads them. */
export interface ReplicaLister {
  /** Names (relative to the replica root) of complete snapshots and WAL segments. */
  list(): Promise<string[]>;
  read(name: string): Promise<Uint8Array>;
  /** Stored size of an object in bytes. */
  size(name: string): Promise<number>;
}

const OBJECT_RE =
  /^generations\/[0-9a-f]{16}\/(snapshots\/[0-9a-f]{8}\.snapshot|wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal)\.lz4$/;
const SEGMENT_NAME_RE = /\/wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/;
const SNAPSHOT_NAME_RE = /\/snapshots\/[0-9a-f]{8}\.snapshot\.lz4$/;

/** True for a WAL segment name of {@link ReplicaLister.list}. */
export const isSegmentName = (name: string): boolean => SEGMENT_NAME_RE.test(name);
/** True for a snapshot name of {@link ReplicaLister.list}. */
export const isSnapshotName = (name: string): boolean => SNAPSHOT_NAME_RE.test(name);

/**
 * A file replica, listed with `Deno.readDir` (tolerating directories that vanish meanwhile).
 * Both tools write `<name>.tmp` and rename it, so a listed final name is complete.
 */
export function fileReplicaLister(root: string): ReplicaLister {
  const entries = async (dir: string): Promise<string[]> => {
    const names: string[] = [];
    try {
      for await (const e of Deno.readDir(dir)) names.push(e.name);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return names;
  };
  return {
    async list() {
      const out: string[] = [];
      for (const gen of await entries(`${root}/generations`)) {
        for (const kind of ["snapshots", "wal"]) {
          for (const name of await entries(`${root}/generations/${gen}/${kind}`)) {
            const rel = `generations/${gen}/${kind}/${name}`;
            if (OBJECT_RE.test(rel)) out.push(rel);
          }
        }
      }
      return out;
    },
    read: (name) => Deno.readFile(`${root}/${name}`),
    size: async (name) => (await Deno.stat(`${root}/${name}`)).size,
  };
}

/** User agent of the benchmark's own S3 requests, so request counts can leave them out. */
export const BENCH_USER_AGENT = "litestream-bench";

/**
 * A prefix of an S3 bucket, listed and read with `@aws-sdk/client-s3` (objects appear only once
 * their upload completed). Its requests carry {@link BENCH_USER_AGENT}.
 */
export function s3ReplicaLister(target: Extract<ReplicaTarget, { type: "s3" }>): ReplicaLister {
  const client = new S3Client({
    endpoint: target.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey },
    customUserAgent: BENCH_USER_AGENT,
  });
  const prefix = `${target.path.replace(/\/+$/, "")}/`;
  return {
    async list() {
      const out: string[] = [];
      let token: string | undefined;
      do {
        const res = await client.send(
          new ListObjectsV2Command({
            Bucket: target.bucket,
            Prefix: `${prefix}generations/`,
            ContinuationToken: token,
          }),
        );
        for (const o of res.Contents ?? []) {
          const rel = o.Key!.slice(prefix.length);
          if (OBJECT_RE.test(rel)) out.push(rel);
        }
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
      return out;
    },
    async read(name) {
      const res = await client.send(
        new GetObjectCommand({ Bucket: target.bucket, Key: `${prefix}${name}` }),
      );
      return await res.Body!.transformToByteArray();
    },
    async size(name) {
      const res = await client.send(
        new HeadObjectCommand({ Bucket: target.bucket, Key: `${prefix}${name}` }),
      );
      return res.ContentLength!;
    },
  };
}

/** Milliseconds since the epoch with a fraction; the writer process reports the same clock. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Polls `lister` every `intervalMs` until a snapshot is listed; returns the `epochMs()` at which
 * that listing ended. Throws if `proc` exits first or after `timeoutMs`.
 */
export async function waitForSnapshot(
  lister: ReplicaLister,
  proc: MeasuredProcess,
  timeoutMs: number,
  intervalMs = 50,
): Promise<number> {
  return await waitFor(
    "the first snapshot on the replica",
    async () => {
      if (proc.exited) throw new Error(`replicator exited; log:\n${await proc.log()}`);
      const names = await lister.list();
      const at = epochMs();
      return names.some(isSnapshotName) ? at : undefined;
    },
    timeoutMs,
    intervalMs,
  ).catch(async (err) => {
    throw new Error(`${(err as Error).message}; log:\n${(await proc.log()).slice(-3000)}`, {
      cause: err,
    });
  });
}

/**
 * Measures catch-up: the time from the writer's last commit (`lastCommitEpochMs`, taken by the
 * writer right after COMMIT returned) until the replica lists a WAL segment holding that commit.
 *
 * It lists the replica every `intervalMs` and remembers, for each segment, the end of the first
 * listing that showed it. Segments already listed before the last commit cannot hold it. The
 * others are decompressed, oldest first, and searched for the writer's token (the last row's
 * payload starts with it, so it sits in the page written by the last commit; both tools ship
 * whole transactions per sync). Catch-up = (end of the first listing showing a segment with the
 * token) − last commit; the polling interval bounds its error.
 */
export class CatchUpWatcher {
  #lister: ReplicaLister;
  #token: Uint8Array;
  #intervalMs: number;
  #firstSeen = new Map<string, number>();
  #running = false;
  #loop: Promise<void> = Promise.resolve();
  #lastError: unknown;

  constructor(lister: ReplicaLister, token: string, intervalMs: number) {
    this.#lister = lister;
    this.#token = new TextEncoder().encode(token);
    this.#intervalMs = intervalMs;
  }

  /** Starts listing (call it before the last commit can happen). */
  start(): void {
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        await this.#poll();
        await new Promise((r) => setTimeout(r, this.#intervalMs));
      }
    })();
  }

  async #poll(): Promise<void> {
    try {
      const names = await this.#lister.list();
      const at = epochMs();
      for (const n of names) {
        if (isSegmentName(n) && !this.#firstSeen.has(n)) this.#firstSeen.set(n, at);
      }
    } catch (err) {
      this.#lastError = err;
    }
  }

  /**
   * Waits until a segment holding the token is listed; returns the catch-up time in seconds, the
   * segment's name and how many segments were decoded to find it.
   */
  async waitForToken(
    lastCommitEpochMs: number,
    timeoutMs: number,
  ): Promise<{ catchUpS: number; segment: string; decoded: number }> {
    const scanned = new Set<string>();
    const failures = new Map<string, number>();
    const deadline = Date.now() + timeoutMs;
    let decoded = 0;
    while (true) {
      const candidates = [...this.#firstSeen]
        .filter(([n, at]) => at > lastCommitEpochMs && !scanned.has(n))
        .sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
      for (const [name, at] of candidates) {
        let data: Uint8Array;
        try {
          data = decompressFrame(await this.#lister.read(name), name);
        } catch (err) {
          // Still being written (s3rver shows objects while they stream in): retry it on the
          // next round; after many failures it was deleted (retention) and cannot be the one.
          this.#lastError = err;
          const n = (failures.get(name) ?? 0) + 1;
          failures.set(name, n);
          if (n >= 50) scanned.add(name);
          continue;
        }
        scanned.add(name);
        decoded++;
        if (Buffer.from(data.buffer, data.byteOffset, data.byteLength).indexOf(this.#token) >= 0) {
          return { catchUpS: (at - lastCommitEpochMs) / 1000, segment: name, decoded };
        }
      }
      if (Date.now() > deadline) {
        throw new Error(
          `no segment with the last commit after ${timeoutMs} ms (${this.#firstSeen.size} ` +
            `segments listed, ${scanned.size} searched)`,
          { cause: this.#lastError },
        );
      }
      await new Promise((r) => setTimeout(r, this.#intervalMs));
    }
  }

  /** Stops listing. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }
}

// ---------------------------------------------------------------------------------------------
// The application writer (bench/load_writer.ts) in its own process

/** What bench/load_writer.ts reports. */
export interface LoadResult {
  lastId: number;
  transactions: number;
  lastCommitEpochMs: number;
  elapsedS: number;
  maxLagMs: number;
}

/**
 * Runs bench/load_writer.ts on `dbPath`: `rate` transactions per second of one `rowBytes` row
 * each for `seconds`, the last row starting with `token`. Resolves when the writer is done.
 */
export async function runLoadWriter(
  dbPath: string,
  o: { rate: number; seconds: number; rowBytes: number; token: string },
): Promise<LoadResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${REPO_ROOT}/bench/load_writer.ts`,
      dbPath,
      String(o.rate),
      String(o.seconds),
      String(o.rowBytes),
      o.token,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`load writer failed (exit ${out.code}): ${dec.decode(out.stderr)}`);
  }
  return JSON.parse(dec.decode(out.stdout).trim().split("\n").pop()!) as LoadResult;
}

// ---------------------------------------------------------------------------------------------
// s3rver in its own process (bench/s3rver_process.ts)

/** One HTTP request the S3 server received. */
export interface S3Request {
  /** When the request arrived. */
  epochMs: number;
  method: string;
  userAgent: string;
  url: string;
  /** When s3rver had handled it, and the status it answered (absent while in progress). */
  endEpochMs?: number;
  status?: number;
}

/** A running bench/s3rver_process.ts. */
export interface S3rverProcess {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Requests received so far. */
  requests(): S3Request[];
  /** The replica target for key prefix `path`. */
  target(path: string): Extract<ReplicaTarget, { type: "s3" }>;
  /** Stops the server (its data is removed). */
  stop(): Promise<void>;
}

/** Starts s3rver in a separate process on 127.0.0.1 with the bucket created. */
export async function startS3rverProcess(): Promise<S3rverProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/bench/s3rver_process.ts`],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const requests: S3Request[] = [];
  const byId = new Map<string, S3Request>();
  const { promise: info, resolve: resolveInfo } = Promise.withResolvers<
    Record<string, string>
  >();
  const reading = (async () => {
    let buffered = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith("REQ ")) {
          const [, id, at, method, ua, url] = line.split(" ");
          const r = { epochMs: Number(at), method, userAgent: decodeURIComponent(ua), url };
          requests.push(r);
          byId.set(id, r);
        } else if (line.startsWith("END ")) {
          const [, id, at, status] = line.split(" ");
          const r = byId.get(id);
          if (r) Object.assign(r, { endEpochMs: Number(at), status: Number(status) });
          byId.delete(id);
        } else if (line.startsWith("{")) {
          resolveInfo(JSON.parse(line));
        }
      }
    }
  })();
  const exited = child.status.then(async (s) => {
    throw new Error(`s3rver process exited (${s.code}): ${await stderr}`);
  });
  const i = await Promise.race([info, exited]);
  exited.catch(() => {});
  return {
    endpoint: i.endpoint,
    bucket: i.bucket,
    accessKeyId: i.accessKeyId,
    secretAccessKey: i.secretAccessKey,
    requests: () => requests.map((r) => ({ ...r })),
    target: (path) => ({
      type: "s3",
      endpoint: i.endpoint,
      bucket: i.bucket,
      path,
      accessKeyId: i.accessKeyId,
      secretAccessKey: i.secretAccessKey,
    }),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await reading.catch(() => {});
    },
  };
}

/** Requests in `[fromMs, toMs]` (epoch ms) that did not come from the benchmark itself. */
export function toolRequests(all: S3Request[], fromMs: number, toMs: number): S3Request[] {
  return all.filter((r) =>
    r.epochMs >= fromMs && r.epochMs <= toMs && !r.userAgent.includes(BENCH_USER_AGENT)
  );
}

/**
 * When the upload of the first snapshot under `path` finished at the server: the end of the
 * successful single PUT of a `…/snapshots/<index>.snapshot.lz4` key, or of the POST completing
 * its multipart upload. `undefined` while there is none.
 */
export function snapshotUploadedAt(requests: S3Request[], path: string): number | undefined {
  const re = new RegExp(
    `^/[^/]+/${path}/generations/[0-9a-f]{16}/snapshots/[0-9a-f]{8}\\.snapshot\\.lz4(\\?.*)?$`,
  );
  const done = requests.filter((r) => {
    if (r.status !== 200 || !re.test(r.url)) return false;
    const query = r.url.includes("?") ? r.url.slice(r.url.indexOf("?")) : "";
    // A single PUT (aws-sdk-js adds `?x-id=PutObject`), not a part; or the completing POST.
    if (r.method === "PUT") return !/[?&](partNumber|uploadId)=/.test(query);
    return r.method === "POST" && /[?&]uploadId=/.test(query);
  });
  return done.length ? Math.min(...done.map((r) => r.endEpochMs!)) : undefined;
}

/** "3 GET, 1 LIST"-style summary of requests (a GET with `list-type` or `prefix` is a LIST). */
export function describeRequests(rs: S3Request[]): string {
  const counts = new Map<string, number>();
  for (const r of rs) {
    const kind = r.method === "GET" && /[?&](list-type|prefix|delimiter)=/.test(r.url)
      ? "LIST"
      : r.method;
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return counts.size === 0 ? "none" : [...counts].map(([k, n]) => `${n} ${k}`).join(", ");
}

// ---------------------------------------------------------------------------------------------
// Databases for the replicate scenarios

/**
 * Returns `<BENCH_CACHE>/<key>/app.db`, a WAL-mode database of about `bytes` bytes (table
 * `t(id INTEGER PRIMARY KEY, v BLOB)`, one 3,000-byte random blob per 4 KiB page), building it
 * with the sqlite3 CLI the first time (in a staging directory renamed into place).
 */
export async function cachedDatabase(
  key: string,
  bytes: number,
  log: (m: string) => void,
): Promise<string> {
  const dir = `${BENCH_CACHE}/${key}`;
  const path = `${dir}/app.db`;
  try {
    await Deno.stat(`${dir}/ready`);
    return path;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(BENCH_CACHE, { recursive: true });
  await removeTree(dir);
  const staging = await Deno.makeTempDir({ dir: BENCH_CACHE, prefix: `${key}.tmp-` });
  try {
    log(`[${key}] creating a ${(bytes / 1e6).toFixed(0)} MB database`);
    await createDatabase(`${staging}/app.db`, bytes);
    await Deno.writeTextFile(`${staging}/ready`, new Date().toISOString() + "\n");
    await Deno.rename(staging, dir);
  } catch (err) {
    await removeTree(staging);
    throw err;
  }
  return path;
}

/** Creates a WAL-mode database of about `bytes` bytes of random rows (see {@link cachedDatabase}). */
export async function createDatabase(path: string, bytes: number): Promise<void> {
  const rows = Math.ceil(bytes / 4096);
  await sqlite(
    path,
    [
      "PRAGMA page_size = 4096;",
      "PRAGMA journal_mode = WAL;",
      "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);",
      "BEGIN;",
      `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ${rows})`,
      `  INSERT INTO t (id, v) SELECT i, randomblob(3000) FROM c;`,
      "COMMIT;",
      "PRAGMA wal_checkpoint(TRUNCATE);",
    ].join("\n"),
  );
}

/**
 * Makes a database that a replicator used look fresh again: checkpoints its WAL (TRUNCATE) and
 * removes the replicator's shadow directory (`.<name>-litestream`), so the next replicator
 * starts a new generation with a snapshot.
 */
export async function resetDatabase(path: string): Promise<void> {
  await sqlite(path, "PRAGMA wal_checkpoint(TRUNCATE);");
  const slash = path.lastIndexOf("/");
  await removeTree(`${path.slice(0, slash)}/.${path.slice(slash + 1)}-litestream`);
}

// ---------------------------------------------------------------------------------------------
// Tables of medians

/** `median (min–max)` of `xs` with `digits` decimals; the range is left out for one run. */
export function medianRange(xs: number[], digits: number): string {
  const m = median(xs).toFixed(digits);
  if (xs.length < 2) return m;
  return `${m} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

/** The label of a tool in tables. */
export function toolLabel(tool: Tool): string {
  return tool === "ours" ? "ours (Deno)" : "v0.3.13";
}
