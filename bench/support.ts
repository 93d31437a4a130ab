/**
 * Shared benchmark machinery: the scenario interface `bench/main.ts` runs, timing a child process
 * with GNU time (wall, user+sys CPU, peak RSS), medians and Markdown tables, and a builder for
 * file replicas written by the real Litestream v0.3.13, cached under `<repo>/.cache/bench/`.
 *
 * @module
 */

import { REPO_ROOT, startV0313Replicate, v0313Restore } from "../tests/support/litestream_v0313.ts";
import { integrityCheck, sqlite, Writer, type WriterOptions } from "../tests/support/sqlite_cli.ts";
import { listReplicaObjects, type ReplicaObject } from "../tests/support/fixtures.ts";
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
}

/** A benchmark scenario; modules export a list of them for `bench/main.ts`. */
export interface Scenario {
  /** Short identifier, selectable on the command line (`deno task bench NAME...`). */
  name: string;
  /** One-line summary printed before the scenario runs. */
  summary: string;
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
  lines.push("", "Checks:", "");
  for (const c of r.checks) lines.push(`- ${c}`);
  lines.push("", "Targets:", "");
  for (const t of r.targets) {
    lines.push(`- ${t.met ? "MET" : "NOT MET"}: ${t.description} (${t.detail})`);
  }
  lines.push("");
  return lines.join("\n");
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
  const status = await litestream.stop(60_000);
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
