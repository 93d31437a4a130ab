/**
 * Builds file replicas in the Litestream v0.3 layout from a real SQLite database, for CLI
 * tests: snapshots are LZ4 frames of the checkpointed database file, WAL segments are LZ4
 * frames of real WAL bytes split at commit frames. Every object gets a fixed mtime (via
 * `Deno.utime`) in creation order, so time-based restores are deterministic. The expected
 * database after every object comes from SQLite itself (copy + checkpoint), not from our code.
 *
 * Also: {@linkcode litestream}, which runs `main.ts` as a user does, in a subprocess.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { dirname, join } from "node:path";
import { compressFrame } from "../../lib/lz4/mod.ts";
import { snapshotName, walSegmentName } from "../../lib/names.ts";
import { payload, splitAtCommits, WalSource } from "./wal_source.ts";

/** The repository's `main.ts`. */
/** One generation to build. */
export interface GenerationSpec {
  /** 16 lowercase hex characters; default derived from the generation's position. */
  name?: string;
  /** Transactions (one WAL segment each) per WAL index: `[3, 2]` = index 0 with 3, index 1 with 2. */
  indexes: number[];
  /** WAL indexes that also get a snapshot of the database as of the start of that index; default `[0]`. */
  snapshotsAt?: number[];
}

/** Options of {@linkcode buildReplica}. */
export interface BuildOptions {
  /** Scratch directory: the replica goes to `<dir>/replica`, the source database to `<dir>/source`. */
  dir: string;
  generations: GenerationSpec[];
  /** Page size of the source database; default 4096. */
  pageSize?: number;
  /** mtime of the first object; default 2024-01-01T00:00:00Z. */
  baseTime?: Date;
  /** Milliseconds between consecutive objects' mtimes; default 10 000. */
  stepMs?: number;
  /** Bytes of payload per row; default 100 (small rows keep every transaction to one frame). */
  rowBytes?: number;
}

/** A snapshot or WAL segment written by the builder. */
export interface BuiltObject {
  kind: "snapshot" | "wal";
  path: string;
  generation: string;
  index: number;
  /** Byte offset in the index's WAL; 0 for snapshots. */
  offset: number;
  /** The mtime given to the object. */
  mtime: Date;
  /** The uncompressed content (database image or WAL bytes). */
  raw: Uint8Array;
  /** Stored (compressed) size. */
  size: number;
  /** The database after this object is applied, as SQLite checkpoints it. */
  state: Uint8Array;
  /** Highest row id in `state` (one row is inserted per transaction, ids 1, 2, …). */
  lastId: number;
}

/** A built generation. */
export interface BuiltGeneration {
  name: string;
  snapshots: BuiltObject[];
  segments: BuiltObject[];
}

/** A built replica. */
export interface BuiltReplica {
  /** The replica directory. */
  root: string;
  /** `file://` URL of the replica directory. */
  url: string;
  generations: BuiltGeneration[];
  /** Every object in creation (and mtime) order. */
  objects: BuiltObject[];
  /** The source database after a final checkpoint: what a latest restore must produce. */
  latest: Uint8Array;
  /** Highest row id in `latest`. */
  lastId: number;
}

/** First generation of {@link buildTwoGenerations}. */
export const G1 = "0101010101010101";
/** Second generation of {@link buildTwoGenerations}. */
export const G2 = "0202020202020202";

/**
 * The replica the CLI listing and restore tests read (mtimes at 10 s steps from
 * 2024-01-01T00:00:00Z; row ids in parentheses):
 *
 *   00:00:10 G1 snapshot 0        00:00:20 G1 wal 0/0 (id 1)     00:00:30 G1 wal 0/4152 (id 2)
 *   00:00:40 G2 snapshot 0        00:00:50 G2 wal 0/0 (id 3)     00:01:00 G2 wal 0/4152 (id 4)
 *   00:01:10 G2 wal 0/8272 (id 5) 00:01:20 G2 snapshot 1 (id 5)  00:01:30 G2 wal 1/0 (id 6)
 *   00:01:40 G2 wal 1/4152 (id 7) 00:01:50 G2 wal 1/8272 (id 8)
 */
export function buildTwoGenerations(dir: string): Promise<BuiltReplica> {
  return buildReplica({
    dir,
    generations: [
      { name: G1, indexes: [2] },
      { name: G2, indexes: [3, 3], snapshotsAt: [0, 1] },
    ],
  });
}

/** Path of a snapshot object in a v0.3 file replica. */
export function snapshotPath(root: string, generation: string, index: number): string {
  return join(root, "generations", generation, "snapshots", snapshotName(index));
}

/** Path of a WAL segment object in a v0.3 file replica. */
export function segmentPath(
  root: string,
  generation: string,
  index: number,
  offset: number,
): string {
  return join(root, "generations", generation, "wal", walSegmentName(index, offset));
}

/** Writes `data` LZ4-framed at `path` (parents created) with the given mtime; returns the stored size. */
export async function writeObject(path: string, data: Uint8Array, mtime: Date): Promise<number> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const frame = compressFrame(data);
  await Deno.writeFile(path, frame);
  await Deno.utime(path, mtime, mtime);
  return frame.length;
}

/**
 * The database SQLite produces from `db` with `wal` as its WAL, after a full checkpoint: an
 * oracle independent of the code under test.
 */
export async function checkpointed(
  scratch: string,
  db: Uint8Array,
  wal: Uint8Array,
): Promise<Uint8Array> {
  await Deno.mkdir(scratch, { recursive: true });
  const path = join(scratch, `oracle-${crypto.randomUUID().slice(0, 8)}.db`);
  await Deno.writeFile(path, db);
  await Deno.writeFile(`${path}-wal`, wal);
  const conn = new DatabaseSync(path);
  try {
    conn.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } finally {
    conn.close();
  }
  const bytes = await Deno.readFile(path);
  for (const p of [path, `${path}-wal`, `${path}-shm`]) await Deno.remove(p).catch(() => {});
  return bytes;
}

/**
 * Builds a file replica at `<dir>/replica`. Generations share one source database, so each
 * new generation starts from where the previous one ended (as a real new generation does).
 * Within a generation, index `i` holds the WAL written after the `i`-th checkpoint, split so
 * that each transaction is one segment.
 */
export async function buildReplica(options: BuildOptions): Promise<BuiltReplica> {
  const pageSize = options.pageSize ?? 4096;
  const rowBytes = options.rowBytes ?? 100;
  const step = options.stepMs ?? 10_000;
  let time = (options.baseTime ?? new Date("2024-01-01T00:00:00Z")).getTime();
  const root = join(options.dir, "replica");
  const scratch = join(options.dir, "oracle");
  await Deno.mkdir(join(options.dir, "source"), { recursive: true });
  using src = new WalSource(join(options.dir, "source"), pageSize);
  const insert = src.db.prepare("INSERT INTO t(id, v) VALUES (?, ?)");
  let lastId = 0;
  const objects: BuiltObject[] = [];
  const generations: BuiltGeneration[] = [];

  for (const [g, spec] of options.generations.entries()) {
    const name = spec.name ?? (g + 1).toString(16).padStart(2, "0").repeat(8);
    const gen: BuiltGeneration = { name, snapshots: [], segments: [] };
    generations.push(gen);
    const snapshotsAt = new Set(spec.snapshotsAt ?? [0]);
    let base = src.checkpoint();
    for (const [index, txs] of spec.indexes.entries()) {
      if (index > 0) base = src.checkpoint();
      if (snapshotsAt.has(index)) {
        const path = snapshotPath(root, name, index);
        const mtime = new Date(time += step);
        const size = await writeObject(path, base, mtime);
        const obj: BuiltObject = {
          kind: "snapshot",
          path,
          generation: name,
          index,
          offset: 0,
          mtime,
          raw: base,
          size,
          state: base,
          lastId,
        };
        gen.snapshots.push(obj);
        objects.push(obj);
      }
      const firstId = lastId + 1;
      for (let k = 0; k < txs; k++) {
        src.db.exec("BEGIN");
        insert.run(++lastId, payload(lastId, rowBytes));
        src.db.exec("COMMIT");
      }
      const wal = src.wal();
      const parts = splitAtCommits(wal, pageSize);
      if (parts.length !== txs) {
        throw new Error(`index ${index}: ${txs} transactions gave ${parts.length} segments`);
      }
      for (const [k, [offset, raw]] of parts.entries()) {
        const path = segmentPath(root, name, index, offset);
        const mtime = new Date(time += step);
        const size = await writeObject(path, raw, mtime);
        const state = await checkpointed(scratch, base, wal.slice(0, offset + raw.length));
        const obj: BuiltObject = {
          kind: "wal",
          path,
          generation: name,
          index,
          offset,
          mtime,
          raw,
          size,
          state,
          lastId: firstId + k,
        };
        gen.segments.push(obj);
        objects.push(obj);
      }
    }
  }
  const latest = src.checkpoint();
  const last = objects.at(-1);
  if (last && !equalBytes(last.state, latest)) {
    throw new Error("builder self-check: the oracle's last state differs from the source database");
  }
  await Deno.remove(scratch, { recursive: true }).catch(() => {});
  return { root, url: `file://${root}`, generations, objects, latest, lastId };
}

/** Byte equality without assertion noise. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Copies a replica directory tree (to damage a copy while keeping the original intact), keeping mtimes. */
export async function copyReplica(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    const a = join(from, entry.name);
    const b = join(to, entry.name);
    if (entry.isDirectory) {
      await copyReplica(a, b);
    } else {
      await Deno.copyFile(a, b);
      const st = await Deno.stat(a);
      await Deno.utime(b, st.atime ?? st.mtime!, st.mtime!);
    }
  }
}

/** Names in a directory, sorted (empty when it does not exist). */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir), (e) => e.name)).sort();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}
