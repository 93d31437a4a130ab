/**
 * File replicas written by the real Litestream v0.3.13 for the restore scenarios, built once per
 * recipe and cached under `<repo>/.cache/bench/<key>/` with a `meta.json` describing them.
 *
 * @module
 */

import { startV0313Replicate, v0313Restore } from "../../tests/support/litestream_v0313.ts";
import {
  integrityCheck,
  sqlite,
  Writer,
  type WriterOptions,
} from "../../tests/support/sqlite_cli.ts";
import { listReplicaObjects } from "../../tests/support/fixtures.ts";
import { waitFor } from "../../tests/support/poll.ts";
import { BENCH_CACHE, cachedBuild, createDatabase } from "./cache.ts";
import { fileReplicaLister, isSegmentName } from "./replica_watch.ts";
import { cleanReplicatorExit, replicateConfig } from "./tools.ts";

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
 * Returns the replica for `recipe`, building it with the real v0.3.13 the first time (see
 * {@link cachedBuild}: the cache holds either a complete replica with `meta.json` or nothing).
 */
export async function cachedV0313Replica(
  recipe: ReplicaRecipe,
  log: (m: string) => void,
): Promise<CachedReplica> {
  const { dir, marker, built } = await cachedBuild(
    recipe.key,
    "meta.json",
    async (staging) =>
      JSON.stringify(
        await buildReplica(recipe, staging, `${BENCH_CACHE}/${recipe.key}`, log),
        null,
        2,
      ) +
      "\n",
  );
  if (!built) log(`using cached replica ${dir}`);
  const meta = JSON.parse(marker) as CachedReplica;
  // The cache may have moved with the repository since it was built.
  return { ...meta, replicaPath: `${dir}/replica`, replicaUrl: `file://${dir}/replica` };
}

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
  log(`[${recipe.key}] creating a ${(recipe.initialBytes / 2 ** 20).toFixed(0)} MiB database`);
  await createDatabase(dbPath, recipe.initialBytes);
  log(`[${recipe.key}] database ready: ${(await Deno.stat(dbPath)).size} bytes (${elapsed()})`);

  // 2. v0.3.13 replicates while a writer commits small transactions.
  const config = replicateConfig(dbPath, { type: "file", path: replicaPath }, {
    db: {
      "monitor-interval": recipe.db.monitorInterval,
      "checkpoint-interval": recipe.db.checkpointInterval,
      "min-checkpoint-page-count": recipe.db.minCheckpointPageCount,
      "max-checkpoint-page-count": recipe.db.maxCheckpointPageCount,
    },
    replica: { "sync-interval": recipe.syncInterval, "snapshot-interval": "0s", retention: "24h" },
  });
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
  if (!cleanReplicatorExit(status.code, text)) {
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
  const counts = await countSegments(replicaPath);
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

/**
 * Counts WAL segments and indexes on a replica that v0.3.13 may still be writing (listed with
 * {@link fileReplicaLister}, which tolerates a `.tmp` file renamed during the walk).
 */
async function countSegments(replicaPath: string): Promise<{ segments: number; indexes: number }> {
  const names = (await fileReplicaLister(replicaPath).list()).filter(isSegmentName);
  // `generations/<id>/wal/<index>_<offset>.wal.lz4` up to the `_`: one per (generation, index).
  const indexes = new Set(names.map((n) => n.slice(0, n.lastIndexOf("_"))));
  return { segments: names.length, indexes: indexes.size };
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
