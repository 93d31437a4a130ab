/**
 * `litestream validate` and the validators built on it, end to end: our replicate runs as a
 * subprocess, applications are separate `sqlite3` processes, S3 replicas live in s3rver, and
 * replicas are damaged on disk (or in the bucket) the way storage or an operator could.
 *
 * Cases:
 * 1. `validate DB_PATH` with no replicator running (in-process): a file and an S3 replica are ok,
 *    the columns are right and the checksum is the database's real content.
 * 2. `validate DB_PATH` against a running `replicate` while a writer commits and checkpoints:
 *    every run is ok (never a false mismatch).
 * 3. `validation-interval` inside replicate logs `validator: status=ok`, never a mismatch.
 * 4. Corruption: `validate REPLICA_URL` names a damaged WAL segment (compressed bytes, or a page
 *    byte re-compressed), a missing segment and a foreign snapshot; `validate DB_PATH` catches a
 *    damaged segment and a page changed behind a valid WAL checksum chain (a mismatch).
 * 5. deploy/validate.ts: ok for a healthy S3 replica, not ok plus a webhook POST after damage,
 *    runnable without write/FFI/run permission, no SQLite or subprocess in its module graph, and
 *    credentials taken from the `env` it is given.
 *
 * Waiting is always polling with a deadline (never a bare sleep).
 */

import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { tempDir, waitFor } from "../support/poll.ts";
import { createWriterTable, sqlite, stopping, Writer } from "../support/sqlite_cli.ts";
import { startS3rver, type TestS3Server } from "../support/s3_server.ts";
import { listReplicaObjects, type ReplicaObject } from "../support/fixtures.ts";
import { copyReplica } from "../support/replica_builder.ts";
import { configYaml, s3ReplicaKeys, type YamlKeys } from "../support/config_yaml.ts";
import { fileHash } from "../support/hash.ts";
import {
  type CliResult,
  describeResult,
  restoreOk,
  runLitestream,
  SqliteShell,
  startReplicate,
  stopOk,
} from "../support/replicate_process.ts";
import { hex8, walSegmentName } from "../../lib/names.ts";
import { compressFrame, decompressFrame } from "../../lib/lz4/mod.ts";
import { validateReplicas } from "../../deploy/validate.ts";
import {
  DEPLOY_VALIDATE,
  runRestrictedValidate,
  type Summary,
} from "../support/deploy_validate.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

const REPO = fileURLToPath(new URL("../../", import.meta.url));

/** One row of `validate -json DB_PATH`. */
interface DbRow {
  replica: string;
  position: string;
  primary: string;
  replica_checksum: string;
  status: string;
  ms: number;
}

/** One row of `validate -json REPLICA_URL`. */
interface UrlRow {
  replica: string;
  generation: string;
  snapshots: number;
  segments: number;
  /** Checksum records compared, or "none found". */
  records: number | string;
  latest: string;
  status: string;
}

/** Runs `validate -json ...args`; returns the result and the parsed rows (undefined if not JSON). */
async function validateJson<T>(args: string[]): Promise<{ r: CliResult; rows?: T[] }> {
  const r = await runLitestream(["validate", "-json", ...args], { timeoutMs: 40_000 });
  let rows: T[] | undefined;
  try {
    rows = JSON.parse(r.out);
  } catch { /* not JSON: the caller's assertion shows the output */ }
  return { r, rows };
}

const POSITION_RE = /^([0-9a-f]{16})\/([0-9a-f]{8}):(\d+)$/;
const SHA256_RE = /^[0-9a-f]{64}$/;

/** Closes a sqlite3 shell when the scope ends. */
function closing(shell: SqliteShell): AsyncDisposable {
  return { [Symbol.asyncDispose]: () => shell.close().then(() => {}, () => {}) };
}

const segmentName = (o: { index: number; offset: number }) => walSegmentName(o.index, o.offset);

/** WAL segments of a file replica, in (generation, index, offset) order. */
async function segmentsOf(replica: string): Promise<ReplicaObject[]> {
  return (await listReplicaObjects(replica)).filter((o) => o.kind === "wal");
}

/** Snapshots of a file replica, in (generation, index) order. */
async function snapshotsOf(replica: string): Promise<ReplicaObject[]> {
  return (await listReplicaObjects(replica)).filter((o) => o.kind === "snapshot");
}

/** XORs one byte of `bytes` (a copy) at `at`. */
function flipped(bytes: Uint8Array, at: number): Uint8Array {
  const copy = bytes.slice();
  copy[at] ^= 0xff;
  return copy;
}

/** Flips a byte in the middle of a file (for an LZ4 object: inside the compressed payload). */
async function flipFileByte(path: string): Promise<void> {
  const bytes = await Deno.readFile(path);
  await Deno.writeFile(path, flipped(bytes, Math.floor(bytes.length / 2)));
}

/** SQLite's WAL checksum over `data` (multiple of 8 bytes), continuing from `seed`. */
function walChecksum(data: Uint8Array, bigEndian: boolean, seed: [number, number]) {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let [s0, s1] = seed;
  for (let i = 0; i < data.length; i += 8) {
    s0 = (s0 + dv.getUint32(i, !bigEndian) + s1) >>> 0;
    s1 = (s1 + dv.getUint32(i + 4, !bigEndian) + s0) >>> 0;
  }
  return [s0, s1] as [number, number];
}

/**
 * Changes one byte of the page in the last frame of WAL index `segments` (all segments of one
 * index, in offset order, the first starting with the WAL header) and recomputes that frame's
 * checksum so the WAL checksum chain stays valid. Rewrites only the last segment (LZ4 again).
 * Returns the tampered page number.
 */
async function tamperLastFrameKeepingChain(segments: ReplicaObject[]): Promise<number> {
  const parts = await Promise.all(
    segments.map(async (s) => decompressFrame(await Deno.readFile(s.path), s.path)),
  );
  const wal = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    wal.set(p, at);
    at += p.length;
  }
  const dv = new DataView(wal.buffer);
  const bigEndian = dv.getUint32(0) === 0x377f0683;
  const pageSize = dv.getUint32(8);
  const frameSize = 24 + pageSize;
  const frames = (wal.length - 32) / frameSize;
  assert.ok(Number.isInteger(frames) && frames >= 1, `WAL of ${frames} frames`);
  const last = 32 + (frames - 1) * frameSize;
  const seedAt = frames === 1 ? 24 : last - frameSize + 16;
  const seed: [number, number] = [dv.getUint32(seedAt), dv.getUint32(seedAt + 4)];
  // Header fields (checksums included) are stored big-endian; the words summed follow the magic.
  wal[last + 24 + pageSize - 1] ^= 0x5a; // last byte of the page (row data on a leaf)
  const sum = walChecksum(
    wal.subarray(last, last + 8),
    bigEndian,
    seed,
  );
  const sum2 = walChecksum(wal.subarray(last + 24, last + frameSize), bigEndian, sum);
  dv.setUint32(last + 16, sum2[0]);
  dv.setUint32(last + 20, sum2[1]);
  const lastSegment = segments.at(-1)!;
  assert.ok(last >= lastSegment.offset, "the last frame lies in the last segment");
  await Deno.writeFile(lastSegment.path, compressFrame(wal.subarray(lastSegment.offset)));
  return dv.getUint32(last);
}

/** Inserts `rows` rows of random 1 KiB blobs into `t` of a fresh WAL database (one-shot sqlite3). */
async function seedDatabase(db: string, rows: number): Promise<void> {
  await createWriterTable(db);
  await sqlite(
    db,
    `INSERT INTO t (id, v) SELECT value, randomblob(1024) FROM generate_series(1, ${rows});`,
  );
}

/** Writes `<dir>/litestream.yml` and returns its path. */
async function writeConfig(
  dir: string,
  db: string,
  replicas: YamlKeys[],
  extra: YamlKeys = {},
): Promise<string> {
  const cfg = join(dir, "litestream.yml");
  await Deno.writeTextFile(cfg, configYaml([{ path: db, replicas, extra }]));
  return cfg;
}

/**
 * Replicates `db` with a writer for a while (so several WAL indexes and segments exist), then
 * stops the writer and replicate. `done` says when enough was replicated.
 */
async function replicateWhileWriting(
  dir: string,
  cfg: string,
  db: string,
  done: () => Promise<boolean>,
): Promise<void> {
  await using rep = startReplicate(["-config", cfg], { logPath: join(dir, "replicate.log") });
  await rep.waitForLog(/snapshot written/);
  const writer = await Writer.start(db, { pauseMs: 5 });
  await using _w = stopping(writer);
  await waitFor("the replica to hold enough WAL", done, 20_000, 100);
  await writer.stop();
  await stopOk(rep);
}

// ---------------------------------------------------------------------------------------------
// 1. In-process validation (no replicator running)

Deno.test("validate DB_PATH without a replicator: file and S3 replicas are ok", async () => {
  await using dir = await tempDir();
  await using s3 = await startS3rver();
  const db = join(dir.path, "db.sqlite");
  await seedDatabase(db, 300);
  const cfg = await writeConfig(dir.path, db, [
    { path: join(dir.path, "replica") },
    s3ReplicaKeys({ srv: s3, path: "in-process/db" }),
  ]);
  // An application holds the database open with committed frames in its WAL.
  const app = new SqliteShell(db);
  await using _app = closing(app);
  await app.run(
    "INSERT INTO t (id, v) SELECT value, randomblob(1024) FROM generate_series(301, 400);",
  );

  const { r, rows } = await validateJson<DbRow>(["-config", cfg, db]);
  assert.equal(r.code, 0, describeResult(r));
  assert.ok(rows, describeResult(r));
  assert.deepEqual(rows.map((x) => x.replica).sort(), ["file", "s3"], describeResult(r));
  for (const row of rows) {
    assert.equal(row.status, "ok", JSON.stringify(row));
    assert.match(row.position, POSITION_RE);
    assert.match(row.primary, SHA256_RE);
    assert.equal(row.replica_checksum, row.primary);
    assert.equal(typeof row.ms, "number");
  }
  assert.equal(rows[0].position, rows[1].position, "both replicas validated at one position");
  assert.equal(rows[0].primary, rows[1].primary);
  console.log(
    `in-process validate: ${rows.map((x) => `${x.replica} ${x.ms} ms`).join(", ")}; ` +
      `command ${r.ms.toFixed(0)} ms`,
  );

  // The checksum is the database's content: a restore of the S3 replica has exactly those bytes.
  const restored = await restoreOk(dir.path, ["-config", cfg, "-replica", "s3", db]);
  assert.equal(await fileHash(restored), rows[0].primary);

  // The table form: v0.3.13-like columns, one row per replica.
  const table = await runLitestream(["validate", "-config", cfg, db]);
  assert.equal(table.code, 0, describeResult(table));
  const lines = table.out.trimEnd().split("\n");
  assert.deepEqual(lines[0].split(/\s+/), [
    "replica",
    "position",
    "primary",
    "replica_checksum",
    "status",
    "ms",
  ]);
  assert.equal(lines.length, 3, table.out);
  for (const line of lines.slice(1)) {
    const cols = line.split(/\s+/);
    assert.equal(cols.length, 6, line);
    assert.equal(cols[4], "ok", line);
    assert.equal(cols[2], cols[3], line);
  }

  // -replica selects one.
  const one = await validateJson<DbRow>(["-config", cfg, "-replica", "file", db]);
  assert.equal(one.r.code, 0, describeResult(one.r));
  assert.deepEqual(one.rows?.map((x) => [x.replica, x.status]), [["file", "ok"]]);

  // After the application checkpoints, the database file itself has the validated bytes.
  await app.run("PRAGMA wal_checkpoint(TRUNCATE);");
  assert.equal(await fileHash(db), rows[0].primary);
});

// ---------------------------------------------------------------------------------------------
// 2. Against a running replicate, with writes and checkpoints during validation

Deno.test("validate DB_PATH against a running replicate under writes and checkpoints: always ok", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "db.sqlite");
  const replica = join(dir.path, "replica");
  await createWriterTable(db);
  const cfg = await writeConfig(dir.path, db, [{ path: replica }]);
  await using rep = startReplicate(["-config", cfg], { logPath: join(dir.path, "replicate.log") });
  await rep.waitForLog(/snapshot written/);
  const writer = await Writer.start(db, { pauseMs: 5 });
  await using _w = stopping(writer);
  // Let a checkpoint move the WAL to a later index before validating.
  await waitFor(
    "a second WAL index",
    async () => {
      return new Set((await segmentsOf(replica)).map((s) => s.index)).size >= 2;
    },
    15_000,
    100,
  );

  const runs: { code: number; rows?: DbRow[]; ms: number; detail: string }[] = [];
  const startId = writer.lastId;
  const indexesBefore = Math.max(...(await segmentsOf(replica)).map((s) => s.index));
  for (let i = 0; i < 15; i++) {
    const { r, rows } = await validateJson<DbRow>(["-config", cfg, "-timeout", "20s", db]);
    runs.push({ code: r.code, rows, ms: r.ms, detail: describeResult(r) });
  }
  const endId = writer.lastId;
  await writer.stop();
  const indexesAfter = Math.max(...(await segmentsOf(replica)).map((s) => s.index));

  const bad = runs.filter((x) =>
    x.code !== 0 || !x.rows || x.rows.length !== 1 || x.rows[0].status !== "ok"
  );
  const positions = runs.flatMap((x) => x.rows?.map((row) => row.position) ?? []);
  console.log(
    `15 validations against replicate: ${runs.length - bad.length} ok; command ms ${
      runs.map((x) => x.ms.toFixed(0)).join(",")
    }; validation ms ${runs.map((x) => x.rows?.[0]?.ms).join(",")}; positions ${
      positions.join(" ")
    }; rows ${startId}..${endId}; indexes ${indexesBefore}..${indexesAfter}`,
  );
  assert.deepEqual(bad.map((x) => x.detail), [], "every validation is ok");
  // The property is only meaningful if the database moved on during the runs.
  assert.ok(endId - startId > 100, `the writer committed during validation (${startId}..${endId})`);
  assert.ok(
    indexesAfter > indexesBefore,
    `checkpoints started new WAL indexes during validation (${indexesBefore}..${indexesAfter})`,
  );
  const validated = new Set(positions.map((p) => p.match(POSITION_RE)![2]));
  assert.ok(validated.size >= 2, `validated at several WAL indexes: ${[...validated]}`);
  assert.equal(new Set(positions).size, positions.length, "every run at a new position");
  const generations = new Set(positions.map((p) => p.match(POSITION_RE)![1]));
  assert.equal(
    generations.size,
    1,
    `validation never forced a new generation: ${[...generations]}`,
  );
  const log = await rep.log();
  assert.doesNotMatch(log, /status=mismatch|validator: failed/);
  await stopOk(rep);
});

// ---------------------------------------------------------------------------------------------
// 3. validation-interval inside replicate

Deno.test("validation-interval in replicate logs status=ok under writes, never a mismatch", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "db.sqlite");
  await createWriterTable(db);
  const cfg = await writeConfig(dir.path, db, [
    { path: join(dir.path, "replica"), "validation-interval": "1s" },
  ]);
  await using rep = startReplicate(["-config", cfg], { logPath: join(dir.path, "replicate.log") });
  await rep.waitForLog(/snapshot written/);
  const writer = await Writer.start(db, { pauseMs: 5 });
  await using _w = stopping(writer);
  const okLines = await waitFor(
    "four validator: status=ok lines",
    async () => {
      const lines = (await rep.log()).split("\n").filter((l) => /validator: status=ok/.test(l));
      return lines.length >= 4 ? lines : undefined;
    },
    20_000,
    100,
  ).catch(async (err) => {
    throw new Error(`${(err as Error).message}\n--- log ---\n${await rep.log()}`);
  });
  await writer.stop();
  await stopOk(rep);
  const log = await rep.log();
  const bad = log.split("\n").filter((l) => /validator: (status=mismatch|failed)/.test(l));
  assert.deepEqual(bad, [], "no mismatch or failed validation");
  const positions = okLines.map((l) => l.match(/position=(\S+)/)?.[1]);
  console.log(
    `validation-interval: ${okLines.length} ok at ${positions.join(" ")}; ms ${
      okLines.map((l) => l.match(/\bms=(\d+)/)?.[1]).join(",")
    }`,
  );
  assert.ok(new Set(positions).size >= 2, `validated at several positions: ${positions}`);
});

// ---------------------------------------------------------------------------------------------
// 4. Corruption

/** Replicas written by our replicate: `multi` (a snapshot every second), `single` (one snapshot). */
async function buildDamageFixtures(dir: string) {
  const db = join(dir, "db.sqlite");
  const multi = join(dir, "multi");
  const single = join(dir, "single");
  // Rows before replication starts: the first snapshot holds pages the WAL never rewrites.
  await seedDatabase(db, 200);
  // WAL indexes long enough to span several syncs, so some have a segment in their middle.
  const cfg = await writeConfig(dir, db, [
    { path: multi, name: "multi", "snapshot-interval": "1s" },
    { path: single, name: "single" },
  ], { "min-checkpoint-page-count": 60 });
  await replicateWhileWriting(dir, cfg, db, async () => {
    const segs = await segmentsOf(multi);
    const snaps = await snapshotsOf(multi);
    return snaps.length >= 2 && new Set(segs.map((s) => s.index)).size >= 3 && segs.length >= 6 &&
      middleOfIndex(segs) >= 0 && new Set(segs.map((s) => s.generation)).size === 1 &&
      (await segmentsOf(single)).length >= 6;
  });
  return { db, cfg, multi, single };
}

/** Position in `segs` of a segment inside a WAL index (not its first, not its last), or -1. */
function middleOfIndex(segs: ReplicaObject[]): number {
  return segs.findIndex((s, k) => s.offset > 0 && segs[k + 1]?.index === s.index);
}

/** A middle WAL segment of a replica that is neither the first nor the last. */
async function middleSegment(replica: string): Promise<ReplicaObject> {
  const segs = await segmentsOf(replica);
  return segs[Math.floor(segs.length / 2)];
}

Deno.test("validate REPLICA_URL names damaged, missing and foreign objects", async (t) => {
  await using dir = await tempDir();
  const { multi, single } = await buildDamageFixtures(dir.path);
  let copies = 0;
  /** A fresh copy of `replica` to damage. */
  const copy = async (replica: string) => {
    const to = join(dir.path, `copy-${++copies}`);
    await copyReplica(replica, to);
    return to;
  };

  await t.step("the undamaged replicas are ok", async () => {
    for (const replica of [multi, single]) {
      const started = performance.now();
      const { r, rows } = await validateJson<UrlRow>([`file://${replica}`]);
      assert.equal(r.code, 0, describeResult(r));
      assert.ok(rows && rows.length === 1, describeResult(r));
      assert.equal(rows[0].status, "ok");
      assert.match(rows[0].latest, SHA256_RE);
      console.log(
        `validate ${basename(replica)}: ${rows[0].snapshots} snapshots, ${
          rows[0].segments
        } segments, ${rows[0].records} checksum records, ${
          (performance.now() - started).toFixed(0)
        } ms`,
      );
    }
  });

  await t.step("a flipped byte in a WAL segment's compressed payload", async () => {
    const replica = await copy(multi);
    const seg = await middleSegment(replica);
    await flipFileByte(seg.path);
    const { r, rows } = await validateJson<UrlRow>([`file://${replica}`]);
    console.log(`flipped LZ4 byte in ${segmentName(seg)}: ${rows?.[0]?.status}`);
    assert.equal(r.code, 1, describeResult(r));
    assert.ok(rows?.length === 1, describeResult(r));
    assert.notEqual(rows[0].status, "ok");
    assert.ok(rows[0].status.includes(segmentName(seg)), `names the segment: ${rows[0].status}`);
  });

  await t.step(
    "a page byte changed inside a segment (valid LZ4, broken WAL checksum)",
    async () => {
      const replica = await copy(multi);
      const seg = await middleSegment(replica);
      const wal = decompressFrame(await Deno.readFile(seg.path), seg.path);
      // Past any WAL header and frame header: a byte of the first page in this segment.
      const pageByte = (seg.offset === 0 ? 32 : 0) + 24 + 100;
      await Deno.writeFile(seg.path, compressFrame(flipped(wal, pageByte)));
      const { r, rows } = await validateJson<UrlRow>([`file://${replica}`]);
      console.log(`page byte in ${segmentName(seg)}: ${rows?.[0]?.status}`);
      assert.equal(r.code, 1, describeResult(r));
      assert.ok(rows?.length === 1, describeResult(r));
      assert.ok(rows[0].status.includes(segmentName(seg)), `names the segment: ${rows[0].status}`);
    },
  );

  await t.step("a deleted middle segment", async () => {
    const replica = await copy(multi);
    const segs = await segmentsOf(replica);
    // A segment followed by another of the same index: the gap is inside one WAL.
    const i = middleOfIndex(segs);
    assert.ok(i > 0, `a middle segment with a successor in its index: ${segs.map(segmentName)}`);
    const seg = segs[i];
    await Deno.remove(seg.path);
    const { r, rows } = await validateJson<UrlRow>([`file://${replica}`]);
    console.log(`deleted ${segmentName(seg)}: ${rows?.[0]?.status}`);
    assert.equal(r.code, 1, describeResult(r));
    assert.ok(rows?.length === 1, describeResult(r));
    assert.notEqual(rows[0].status, "ok");
    // The gap is named: the missing segment's index, and its offset or its successor's.
    const next = segs[i + 1];
    assert.ok(
      rows[0].status.includes(hex8(seg.index)) &&
        (rows[0].status.includes(hex8(seg.offset)) || rows[0].status.includes(segmentName(next)) ||
          rows[0].status.includes(String(seg.offset))),
      `names the gap at ${segmentName(seg)}: ${rows[0].status}`,
    );
  });

  /**
   * Replaces a snapshot's content with an LZ4 snapshot of another SQLite database (same page
   * size), keeping its name and modification time: only the bytes differ.
   */
  const replaceWithForeign = async (snap: ReplicaObject) => {
    const other = join(dir.path, `other-${crypto.randomUUID()}.db`);
    await seedDatabase(other, 50);
    const st = await Deno.stat(snap.path);
    await Deno.writeFile(snap.path, compressFrame(await Deno.readFile(other)));
    await Deno.utime(snap.path, st.atime ?? st.mtime!, st.mtime!);
  };

  for (const which of ["newest", "oldest"] as const) {
    await t.step(`the ${which} of several snapshots replaced by another database's`, async () => {
      const replica = await copy(multi);
      const snaps = await snapshotsOf(replica);
      const snap = which === "newest" ? snaps.at(-1)! : snaps[0];
      await replaceWithForeign(snap);
      const { r, rows } = await validateJson<UrlRow>([`file://${replica}`]);
      console.log(`foreign ${which} snapshot ${hex8(snap.index)}: ${rows?.[0]?.status}`);
      assert.equal(r.code, 1, describeResult(r));
      assert.ok(rows?.length === 1, describeResult(r));
      assert.notEqual(rows[0].status, "ok");
    });
  }

  await t.step("the only snapshot replaced by another database's", async () => {
    const replica = await copy(single);
    const snaps = await snapshotsOf(replica);
    assert.equal(snaps.length, 1);
    await replaceWithForeign(snaps[0]);
    const { r, rows } = await validateJson<UrlRow>([`file://${replica}`]);
    console.log(
      `foreign only snapshot: exit ${r.code}, records ${rows?.[0]?.records}: ${
        rows?.[0]?.status ?? r.err.trim()
      }`,
    );
    // Restoring this replica yields a database that is not the primary's (the WAL replays over
    // another database's pages); the replica-only check must not call it ok.
    assert.equal(r.code, 1, describeResult(r));
    assert.ok(rows?.length === 1, describeResult(r));
    assert.ok(
      rows[0].status.includes(`${hex8(0)}.snapshot.lz4`) || /record|checksum/.test(rows[0].status),
      `names the snapshot or the checksum record: ${rows[0].status}`,
    );
  });
});

Deno.test("validate DB_PATH (in process) catches a damaged replica and a tampered page", async (t) => {
  await using dir = await tempDir();
  const db = join(dir.path, "db.sqlite");
  const replica = join(dir.path, "bad");
  await seedDatabase(db, 100);
  // No checkpoint thresholds are reached: a validation without new commits writes nothing,
  // so every validation after the setup is at the same position.
  const cfg = await writeConfig(dir.path, db, [
    { path: replica, name: "bad" },
    { path: join(dir.path, "good"), name: "good" },
  ], {
    "checkpoint-interval": "1h",
    "min-checkpoint-page-count": 100000,
    "max-checkpoint-page-count": 200000,
  });
  // An application writes while another connection keeps a read transaction open, as
  // applications do: checkpoints cannot complete, so the WAL never restarts between the one-shot
  // validations and each continues the same generation (a restarted WAL would start a new one).
  const reader = new SqliteShell(db);
  await using _reader = closing(reader);
  await reader.run("BEGIN; SELECT count(*) FROM t;");
  const app = new SqliteShell(db);
  await using _app = closing(app);
  let first: { r: CliResult; rows?: DbRow[] } | undefined;
  for (let id = 101; id < 161; id += 20) {
    await app.run(
      `INSERT INTO t (id, v) SELECT value, randomblob(1024) FROM generate_series(${id}, ${
        id + 9
      });`,
    );
    await app.run(
      `INSERT INTO t (id, v) SELECT value, randomblob(1024) FROM generate_series(${id + 10}, ${
        id + 19
      });`,
    );
    first = await validateJson<DbRow>(["-config", cfg, db]);
    assert.equal(first.r.code, 0, describeResult(first.r));
    assert.deepEqual(first.rows?.map((x) => x.status), ["ok", "ok"], describeResult(first.r));
  }
  // No writes from here on: every validation below is at this position.
  assert.ok(first?.rows);
  const position = first.rows[0].position;
  assert.equal(first.rows[1].position, position, describeResult(first.r));
  const [, generation, indexHex, offsetText] = position.match(POSITION_RE)!;
  const index = parseInt(indexHex, 16);
  const used = (await segmentsOf(replica)).filter((s) =>
    s.generation === generation && (s.index < index || s.offset < Number(offsetText))
  );
  const upTo = used.filter((s) => s.index === index);
  assert.ok(upTo.length >= 1, `segments of ${position}: ${used.map(segmentName)}`);
  const last = upTo.at(-1)!;
  assert.ok(used.length >= 2, `a segment before the last: ${used.map(segmentName)}`);

  /** Runs validate with `path` damaged by `damage`, then puts the original bytes back. */
  const withDamage = async (path: string, damage: () => Promise<unknown>) => {
    const original = await Deno.readFile(path);
    try {
      await damage();
      return await validateJson<DbRow>(["-config", cfg, db]);
    } finally {
      await Deno.writeFile(path, original);
    }
  };
  /** The report: "bad" as `check` says, "good" still ok, at the same position, exit 1. */
  const assertReport = (
    { r, rows }: { r: CliResult; rows?: DbRow[] },
    check: (bad: DbRow) => void,
  ) => {
    // Caught: exit 1 and the object named somewhere.
    assert.equal(r.code, 1, describeResult(r));
    assert.ok(rows, `a report (-json) for every replica, not an abort: ${describeResult(r)}`);
    const byName = Object.fromEntries(rows.map((x) => [x.replica, x]));
    assert.equal(byName.good?.status, "ok", describeResult(r));
    assert.equal(byName.bad?.position, position, describeResult(r));
    check(byName.bad);
  };

  await t.step("a flipped byte in an earlier segment: error naming it", async () => {
    const seg = used.at(-2)!;
    const res = await withDamage(seg.path, () => flipFileByte(seg.path));
    console.log(
      `in-process, flipped byte in ${segmentName(seg)}: ${
        res.rows?.map((x) => `${x.replica}=${x.status}`).join(", ") ?? res.r.err.trim()
      }`,
    );
    assertReport(res, (bad) => assert.ok(bad.status.includes(segmentName(seg)), bad.status));
  });

  await t.step("a flipped byte in the last segment: error naming it", async () => {
    const res = await withDamage(last.path, () => flipFileByte(last.path));
    console.log(
      `in-process, flipped byte in last ${segmentName(last)}: ${
        res.rows?.map((x) => `${x.replica}=${x.status}`).join(", ") ?? res.r.err.trim()
      }`,
    );
    assert.ok(
      (res.r.out + res.r.err).includes(segmentName(last)),
      `names the segment: ${describeResult(res.r)}`,
    );
    assertReport(res, (bad) => assert.ok(bad.status.includes(segmentName(last)), bad.status));
  });

  await t.step("a page changed behind a valid WAL checksum chain: mismatch", async () => {
    let page = 0;
    let alone: { r: CliResult; rows?: UrlRow[] } | undefined;
    const res = await withDamage(last.path, async () => {
      page = await tamperLastFrameKeepingChain(upTo);
      // Every object still decodes and the WAL chain is intact.
      alone = await validateJson<UrlRow>([`file://${replica}`]);
    });
    console.log(
      `tampered page ${page} in ${segmentName(last)}: in-process ${
        res.rows?.map((x) => `${x.replica}=${x.status}`).join(", ")
      }; replica-only: ${alone?.rows?.[0]?.status}`,
    );
    assertReport(res, (bad) => {
      assert.equal(bad.status, "mismatch");
      assert.notEqual(bad.replica_checksum, bad.primary);
    });
    // The replica-only check cannot see this unless a checksum record covers the tampered
    // frame (records are written after snapshots): reported, not asserted.
  });

  await t.step("with the objects put back, ok again at the same position", async () => {
    const { r, rows } = await validateJson<DbRow>(["-config", cfg, db]);
    assert.equal(r.code, 0, describeResult(r));
    assert.deepEqual(rows?.map((x) => [x.position, x.status]), [
      [position, "ok"],
      [position, "ok"],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// 5. deploy/validate.ts

/** A webhook receiver on 127.0.0.1 recording POSTed JSON bodies. */
function startWebhook() {
  const posts: { method: string; type: string | null; body: unknown }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const text = await req.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch { /* recorded as text */ }
    posts.push({ method: req.method, type: req.headers.get("content-type"), body });
    return new Response("ok");
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    posts,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** An S3 replica at `prefix` in s3rver written by our replicate while a writer commits. */
async function buildS3Replica(dir: string, s3: TestS3Server, prefix: string): Promise<S3Client> {
  const db = join(dir, "db.sqlite");
  await createWriterTable(db);
  const cfg = await writeConfig(dir, db, [s3ReplicaKeys({ srv: s3, path: prefix })]);
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
  await replicateWhileWriting(dir, cfg, db, async () => {
    const keys = await listKeys(client, s3.bucket, prefix);
    return keys.filter((k) => k.endsWith(".wal.lz4")).length >= 5;
  });
  return client;
}

async function listKeys(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/` }));
  return (out.Contents ?? []).map((o) => o.Key!).sort();
}

Deno.test("deploy/validate.ts against s3rver: healthy ok, damaged not ok with a webhook POST", async (t) => {
  await using dir = await tempDir();
  await using s3 = await startS3rver();
  await using hook = startWebhook();
  const prefix = "deploy/db";
  const client = await buildS3Replica(dir.path, s3, prefix);
  try {
    const env: Record<string, string> = {
      LITESTREAM_VALIDATE_REPLICAS: `s3://${s3.bucket}/${prefix}`,
      LITESTREAM_VALIDATE_ENDPOINT: s3.endpoint,
      LITESTREAM_VALIDATE_REGION: "us-east-1",
      LITESTREAM_ACCESS_KEY_ID: s3.accessKeyId,
      LITESTREAM_SECRET_ACCESS_KEY: s3.secretAccessKey,
      LITESTREAM_VALIDATE_WEBHOOK: hook.url,
    };
    const assertHealthy = (summary: Summary, detail: string) => {
      assert.equal(summary.ok, true, detail);
      assert.equal(summary.replicas.length, 1, detail);
      const entry = summary.replicas[0];
      assert.equal(entry.url, env.LITESTREAM_VALIDATE_REPLICAS);
      assert.equal(entry.ok, true, detail);
      assert.ok(entry.generations.length >= 1 && entry.generations.every((g) => g.ok), detail);
      assert.ok(entry.generations.some((g) => g.segments >= 5), detail);
    };

    await t.step("healthy, with only --allow-read --allow-net --allow-env", async () => {
      hook.posts.length = 0;
      const run = await runRestrictedValidate(dir.path, env);
      console.log(`deploy validate, no --allow-sys: ${run.summary.replicas[0]?.error ?? "ok"}`);
      assertHealthy(run.summary, run.detail);
    });

    await t.step("healthy, without write, FFI or run permission (sys allowed)", async () => {
      hook.posts.length = 0;
      const run = await runRestrictedValidate(dir.path, env, ["--allow-sys"]);
      console.log(`deploy validate (healthy, subprocess): ${run.ms.toFixed(0)} ms`);
      assert.deepEqual(run.perms, [["write", "prompt"], ["ffi", "prompt"], ["run", "prompt"]]);
      assertHealthy(run.summary, run.detail);
      assert.equal(hook.posts.length, 0, "no webhook call when everything is ok");
    });

    await t.step(
      "validateReplicas(env, post) in process takes the credentials from env",
      async () => {
        for (const name of ["AWS_ACCESS_KEY_ID", "LITESTREAM_ACCESS_KEY_ID", "AWS_PROFILE"]) {
          assert.equal(
            Deno.env.get(name),
            undefined,
            `test needs ${name} unset in its environment`,
          );
        }
        const posts: string[] = [];
        const post: typeof fetch = (input) => {
          posts.push(String(input));
          return Promise.resolve(new Response("ok"));
        };
        const summary = await validateReplicas(env, post);
        assertHealthy(summary, JSON.stringify(summary));
        assert.deepEqual(posts, []);
      },
    );

    // Damage one WAL segment in the bucket: a byte of its compressed payload.
    const walKeys = (await listKeys(client, s3.bucket, prefix)).filter((k) =>
      k.endsWith(".wal.lz4")
    );
    const key = walKeys[Math.floor(walKeys.length / 2)];
    const got = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
    const bytes = await got.Body!.transformToByteArray();
    await client.send(
      new PutObjectCommand({
        Bucket: s3.bucket,
        Key: key,
        Body: flipped(bytes, Math.floor(bytes.length / 2)),
      }),
    );

    await t.step(
      "damaged: not ok, names the object, the webhook receives the summary",
      async () => {
        const run = await runRestrictedValidate(dir.path, env, ["--allow-sys"]);
        assert.equal(run.summary.ok, false, run.detail);
        const bad = run.summary.replicas[0];
        assert.equal(bad.ok, false, run.detail);
        const errors = bad.generations.flatMap((g) => g.errors);
        console.log(`deploy validate (damaged ${basename(key)}): ${errors.join("; ")}`);
        assert.ok(errors.some((e) => e.includes(key)), `names s3://…/${key}: ${run.detail}`);
        await waitFor("the webhook POST", () => hook.posts.length > 0, 5_000);
        assert.equal(hook.posts.length, 1);
        assert.equal(hook.posts[0].method, "POST");
        assert.match(hook.posts[0].type ?? "", /application\/json/);
        const posted = hook.posts[0].body as Summary;
        assert.equal(posted.ok, false);
        assert.deepEqual(posted.replicas, run.summary.replicas);
        assert.equal(posted.checkedAt, run.summary.checkedAt);
      },
    );
  } finally {
    client.destroy();
  }
});

Deno.test("deploy/validate.ts: module graph has no SQLite, FFI or subprocess", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--config", join(REPO, "deno.json"), DEPLOY_VALIDATE],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string; local?: string }[];
  };
  const local = info.modules.filter((m) => m.specifier.startsWith("file://"));
  const names = local.map((m) => m.specifier.slice(`file://${REPO}`.length));
  assert.ok(
    names.includes("lib/validate/position.ts") && names.includes("replicas/s3/client.ts"),
    `${names}`,
  );
  // The WAL and header formats live in lib/sqlite/ too; the driver's modules must not be loaded.
  const driver = /^lib\/sqlite\/(driver|database|ffi|node)\.ts$/;
  assert.deepEqual(names.filter((n) => driver.test(n)), [], "no SQLite driver module");
  for (const m of local) {
    const text = await Deno.readTextFile(fileURLToPath(m.specifier));
    const uses = text.match(/Deno\.(dlopen|Command|run)\b|node:child_process|\bdlopen\(/g);
    assert.equal(uses, null, `${m.specifier} uses ${uses}`);
  }
  console.log(
    `deploy/validate.ts graph: ${local.length} local modules, ${info.modules.length} total`,
  );
});
