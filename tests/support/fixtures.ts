/**
 * Replicas written by the real Litestream v0.3.13, built fresh for each test file (only the
 * binary is cached), plus helpers to list a file replica with full-precision timestamps.
 *
 * @module
 */

import { startV0313Replicate, v0313Restore } from "./litestream_v0313.ts";
import { createWriterTable, integrityCheck, sqlite, Writer } from "./sqlite_cli.ts";
import { waitFor } from "./poll.ts";

/** One snapshot or WAL segment of a file replica, as v0.3.13 names and dates it. */
export interface ReplicaObject {
  /** Absolute path of the object file. */
  path: string;
  generation: string;
  kind: "snapshot" | "wal";
  index: number;
  /** Byte offset within the index's WAL; 0 for snapshots. */
  offset: number;
  /** Stored (compressed) size in bytes. */
  size: number;
  /**
   * File mtime in nanoseconds since the epoch. v0.3.13 compares restore timestamps against the
   * full-precision mtime, and `Deno.stat` only offers milliseconds, hence a bigint from `find`.
   */
  mtimeNs: bigint;
}

const SNAPSHOT_RE = /^([0-9a-f]{8})\.snapshot\.lz4$/;
const SEGMENT_RE = /^([0-9a-f]{8})_([0-9a-f]{8})\.wal\.lz4$/;
const GENERATION_RE = /^[0-9a-f]{16}$/;

/**
 * Lists the snapshots and WAL segments of the file replica rooted at `replicaPath`, sorted by
 * (generation, kind, index, offset). Names v0.3.13 would ignore (e.g. `*.tmp`) are skipped.
 */
export async function listReplicaObjects(replicaPath: string): Promise<ReplicaObject[]> {
  const root = `${replicaPath}/generations`;
  try {
    await Deno.stat(root);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  // `find -printf %T@` prints the mtime as seconds with a fractional part at full precision.
  const out = await new Deno.Command("find", {
    args: [root, "-type", "f", "-printf", "%P\\t%T@\\t%s\\n"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`find ${root} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const objects: ReplicaObject[] = [];
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    if (line === "") continue;
    const [rel, mtime, size] = line.split("\t");
    const [generation, dir, name, ...rest] = rel.split("/");
    if (rest.length > 0 || !GENERATION_RE.test(generation)) continue;
    let m: RegExpMatchArray | null;
    let kind: ReplicaObject["kind"];
    let index: number;
    let offset = 0;
    if (dir === "snapshots" && (m = name.match(SNAPSHOT_RE))) {
      kind = "snapshot";
      index = parseInt(m[1], 16);
    } else if (dir === "wal" && (m = name.match(SEGMENT_RE))) {
      kind = "wal";
      index = parseInt(m[1], 16);
      offset = parseInt(m[2], 16);
    } else {
      continue;
    }
    objects.push({
      path: `${root}/${rel}`,
      generation,
      kind,
      index,
      offset,
      size: Number(size),
      mtimeNs: parseMtime(mtime),
    });
  }
  return objects.sort((a, b) =>
    a.generation.localeCompare(b.generation) || a.kind.localeCompare(b.kind) ||
    a.index - b.index || a.offset - b.offset
  );
}

/** Parses `find`'s `%T@` (`1795256837.4339810530`) into nanoseconds. */
function parseMtime(text: string): bigint {
  const [sec, frac = ""] = text.split(".");
  return BigInt(sec) * 1_000_000_000n + BigInt((frac + "000000000").slice(0, 9));
}

/**
 * Formats nanoseconds since the epoch as RFC 3339 in UTC with all nine fractional digits
 * (`2026-11-21T09:34:08.336123456Z`), which v0.3.13's `-timestamp` accepts.
 */
export function rfc3339Nano(ns: bigint): string {
  const sec = ns / 1_000_000_000n;
  const frac = (ns % 1_000_000_000n).toString().padStart(9, "0");
  const whole = new Date(Number(sec) * 1000).toISOString().replace(/\.\d{3}Z$/, "");
  return `${whole}.${frac}Z`;
}

/** What {@link buildV0313FileReplica} produced. */
export interface V0313FileReplica {
  /** The replicated database (left in place after v0.3.13 stopped). */
  dbPath: string;
  /** Root directory of the file replica. */
  replicaPath: string;
  /** `file://` URL of the replica, as restore commands take it. */
  replicaUrl: string;
  /** The v0.3.13 config file used (YAML). */
  configPath: string;
  /** v0.3.13's combined stdout/stderr, one file per run (= per generation). */
  logPaths: string[];
  /** Generation names, oldest first (one per v0.3.13 run). */
  generations: string[];
  /**
   * Last committed row id of the writer when each generation's run ended (same order as
   * `generations`); v0.3.13 syncs on shutdown, so restoring a generation's latest state yields
   * rows 1..lastIds[i].
   */
  lastIds: number[];
  /** Every snapshot and segment on the replica (see {@link listReplicaObjects}). */
  objects: ReplicaObject[];
  /** Wall time the build took, in milliseconds. */
  buildMs: number;
}

/** Options for {@link buildV0313FileReplica}. */
export interface BuildOptions {
  /** Number of generations (v0.3.13 runs). Default 3. */
  generations?: number;
  /** Minimum distinct WAL indexes each generation must reach. Default 4. */
  minIndexes?: number;
  /** Minimum snapshots each generation must reach. Default 2. */
  minSnapshots?: number;
}

/**
 * Builds, under `dir` (created if missing), a file replica written by the real v0.3.13 with
 * several generations, several WAL indexes (each of several segments) per generation and two
 * or more snapshots per generation. Takes about 7 s with the defaults.
 *
 * Each generation is one run of `litestream replicate` while a separate `sqlite3` process writes
 * ~1 KiB rows. Thresholds are tiny (see {@link v0313Config}). Between runs, the "application"
 * checkpoints with TRUNCATE and closes last, which deletes the WAL, so at its next start v0.3.13
 * cannot prove continuity (`init: cannot determine last wal position, clearing generation`,
 * `primary wal header: EOF`) and begins a new generation (spec §4.1 step 11, §4.11).
 *
 * The first generation's first snapshot holds only the empty table: a database smaller than
 * 64 KiB, so restoring it exercises a short final write.
 */
export async function buildV0313FileReplica(
  dir: string,
  options: BuildOptions = {},
): Promise<V0313FileReplica> {
  const started = Date.now();
  const runs = options.generations ?? 3;
  const minIndexes = options.minIndexes ?? 4;
  const minSnapshots = options.minSnapshots ?? 2;

  await Deno.mkdir(dir, { recursive: true });
  const dbPath = `${dir}/app.db`;
  const replicaPath = `${dir}/replica`;
  const configPath = `${dir}/litestream.yml`;
  await Deno.writeTextFile(configPath, v0313Config(dbPath, replicaPath));

  const generations: string[] = [];
  const lastIds: number[] = [];
  const logPaths: string[] = [];
  for (let run = 0; run < runs; run++) {
    const logPath = `${dir}/litestream-run${run + 1}.log`;
    logPaths.push(logPath);
    // The first generation's first snapshot is of an empty table (a database under 64 KiB).
    if (run === 0) await createWriterTable(dbPath);

    // v0.3.13 before the writer, so each generation's first snapshot is exactly the state the
    // previous run left, and later snapshots/indexes come from the writer.
    await using litestream = await startV0313Replicate(configPath, { logPath });
    const newObjects = async () => {
      if (litestream.exited) {
        throw new Error(`v0.3.13 exited early; log:\n${await litestream.log()}`);
      }
      const fresh = (await listReplicaObjects(replicaPath))
        .filter((o) => !generations.includes(o.generation));
      const names = new Set(fresh.map((o) => o.generation));
      if (names.size > 1) throw new Error(`more than one new generation: ${[...names]}`);
      return fresh;
    };
    const generation = await waitFor(
      `v0.3.13 run ${run + 1} to snapshot a new generation`,
      async () => (await newObjects()).find((o) => o.kind === "snapshot")?.generation ?? "",
      10_000,
      50,
    );

    const writer = await Writer.start(dbPath);
    try {
      await waitFor(
        `v0.3.13 run ${run + 1} to reach ≥ ${minSnapshots} snapshots and ≥ ${minIndexes} ` +
          `WAL indexes in generation ${generation}`,
        async () => {
          const fresh = await newObjects();
          const snapshots = fresh.filter((o) => o.kind === "snapshot").length;
          const indexes = new Set(fresh.filter((o) => o.kind === "wal").map((o) => o.index)).size;
          return snapshots >= minSnapshots && indexes >= minIndexes;
        },
        20_000,
        100,
      );
      // Stop writing first so v0.3.13's shutdown sync uploads everything the writer committed.
      lastIds.push(await writer.stop());
    } catch (err) {
      await writer.stop().catch(() => {});
      throw err;
    }
    const { status } = await litestream.stop();
    const log = await litestream.log();
    // v0.3.13 exits 1 when its shutdown sync wants a checkpoint (its read transaction was
    // bound to the already-cancelled context); the WAL was copied and uploaded regardless.
    if (!status.success && !(status.code === 1 && log.includes(KNOWN_SHUTDOWN_ERROR))) {
      throw new Error(`v0.3.13 run ${run + 1} exited with code ${status.code}; log:\n${log}`);
    }
    generations.push(generation);
    await assertLatestHolds(replicaPath, generation, lastIds[run], `${dir}/check-run${run + 1}`);

    if (run + 1 < runs) await dropWal(dbPath);
  }

  return {
    dbPath,
    replicaPath,
    replicaUrl: `file://${replicaPath}`,
    configPath,
    logPaths,
    generations,
    lastIds,
    objects: await listReplicaObjects(replicaPath),
    buildMs: Date.now() - started,
  };
}

/** Logged by v0.3.13 when SIGTERM catches its shutdown sync about to checkpoint. */
const KNOWN_SHUTDOWN_ERROR = "release read lock: context canceled";

/**
 * Checks with v0.3.13's own restore that `generation`'s latest state holds rows 1..`lastId` and
 * passes the integrity check, so the fixture is known good before our code is compared with it.
 */
async function assertLatestHolds(
  replicaPath: string,
  generation: string,
  lastId: number,
  scratch: string,
): Promise<void> {
  const out = `${scratch}/latest.db`;
  const res = await v0313Restore(["-o", out, "-generation", generation, `file://${replicaPath}`]);
  try {
    if (res.code !== 0) {
      throw new Error(`v0.3.13 cannot restore generation ${generation}: ${res.stderr}`);
    }
    const check = await integrityCheck(out);
    if (check !== "ok") throw new Error(`v0.3.13's restore of ${generation} is corrupt: ${check}`);
    const [count, max] = (await sqlite(out, "SELECT count(*), coalesce(max(id), 0) FROM t;"))
      .split("|").map(Number);
    if (count !== lastId || max !== lastId) {
      throw new Error(
        `generation ${generation}: expected rows 1..${lastId} on the replica, ` +
          `v0.3.13 restored ${count} rows up to id ${max}`,
      );
    }
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/**
 * Acts as an application that is the last to close the database: a TRUNCATE checkpoint, then
 * SQLite deletes the WAL on close (the shell does not set persist-WAL, unlike v0.3.13).
 */
async function dropWal(dbPath: string): Promise<void> {
  const result = await sqlite(dbPath, "PRAGMA wal_checkpoint(TRUNCATE);");
  if (!result.startsWith("0|")) throw new Error(`TRUNCATE checkpoint was busy: ${result}`);
  try {
    await Deno.stat(`${dbPath}-wal`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  throw new Error(`${dbPath}-wal still exists after the last connection closed`);
}

/**
 * The v0.3.13 config: the database list must be under `dbs:` (v0.3.13 ignores `databases:`).
 * Small thresholds make a few seconds of writing produce many indexes and snapshots: a sync
 * every 200 ms, each uploading one segment; a PASSIVE checkpoint (hence a new index) once the
 * shadow WAL holds 50 pages, which the writer's ~90 rows/s reach in about three syncs, so an
 * index spans several segments; a snapshot every 2 s. Retention stays at 24 h so nothing is
 * deleted. (With 5 pages every sync checkpointed and each index had exactly two segments.)
 */
function v0313Config(dbPath: string, replicaPath: string): string {
  return [
    "dbs:",
    `  - path: ${dbPath}`,
    "    monitor-interval: 200ms",
    "    checkpoint-interval: 1s",
    "    min-checkpoint-page-count: 50",
    "    replicas:",
    "      - type: file",
    `        path: ${replicaPath}`,
    "        sync-interval: 200ms",
    "        snapshot-interval: 2s",
    "        retention: 24h",
    "",
  ].join("\n");
}
