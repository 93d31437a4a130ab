/**
 * The `ReplicaClient` contract: one suite of test steps that every backend
 * (file, S3 servers, the in-memory double) runs unchanged, so they agree on
 * listing order and shapes, missing objects, overwrites, deletes, odd names,
 * large objects, checksum records and error names. Backend-specific
 * behaviour (request counts, multipart, URL parsing) is tested beside each
 * backend.
 *
 * @module
 */

import assert from "node:assert/strict";
import { LitestreamError, NotFoundError } from "../lib/errors.ts";
import { newGeneration, type Pos } from "../lib/names.ts";
import type { ReplicaClient } from "../lib/replica_client.ts";
import { recordName } from "../lib/core/checksum_record.ts";
import { payload } from "../tests/support/wal_source.ts";
import { bytesOf, chunked, rejectsWith, streamOf, textOf, throwsWith } from "./test_streams.ts";

/** A backend under test: how to get fresh clients and look behind them. */
export interface ContractBackend<C extends ReplicaClient = ReplicaClient> {
  /**
   * A fresh, empty client whose location is named by `name` (a directory, a
   * key prefix, …); `name` may hold any character but `/`.
   */
  client(name: string): C | Promise<C>;
  /** Every key stored under the client's root, relative to it (`generations/…`), sorted. */
  keys(client: C): Promise<string[]>;
  /** Stores `data` under `key` (relative to the client's root), bypassing the client. */
  putRaw(client: C, key: string, data: Uint8Array): Promise<void>;
  /**
   * The stored size of an object written with `length` bytes, for a client that transforms what
   * it stores (the age decorator encrypts); by default the length itself.
   */
  storedSize?(length: number): number;
  /**
   * The store ignores conditional writes (s3rver): `writeLease` compares by reading first, so
   * only two writes racing each other can both succeed. Default: conditional writes are atomic.
   */
  leaseRaces?: boolean;
  /** Listings carry `createdAtNs` (file mtimes); else it is absent. */
  nanosecondTimes?: boolean;
  /** For backends whose reads resume after a broken body: how to break the next reads. */
  ranges?: {
    /** Makes the next `times` object bodies break after `afterBytes` bytes. */
    breakReads(times: number, afterBytes: number): void;
    /** Backend-specific checks after such a read of `size` bytes by a fresh `client`. */
    check?(client: C, size: number): void;
  };
}

/** Every legal name character but `/`: ASCII punctuation, a space, and non-ASCII letters. */
export const ODD_NAME = "odd name !\"#$%&'()*+,-.:;<=>?@[\\]^_`{|}~ é€中";

/** Runs the contract's steps on `backend` inside the test `t`. */
export async function replicaClientContract<C extends ReplicaClient>(
  t: Deno.TestContext,
  backend: ContractBackend<C>,
): Promise<void> {
  const { client, keys } = backend;
  const stored = (length: number) => backend.storedSize?.(length) ?? length;
  const seg = (generation: string, index: number, offset: number): Pos => ({
    generation,
    index,
    offset,
  });

  await t.step("a fresh replica is empty", async () => {
    const c = await client("fresh");
    const gen = newGeneration();
    assert.deepEqual(await c.generations(), []);
    assert.deepEqual(await c.snapshots(gen), []);
    assert.deepEqual(await c.walSegments(gen), []);
    assert.deepEqual(await c.records(gen), []);
    assert.deepEqual(await keys(c), []);
  });

  await t.step("objects are stored under v0.3.13 keys, described by location and key", async () => {
    const c = await client("layout");
    const gen = newGeneration();
    const pos = seg(gen, 10, 16512);
    await c.writeSnapshot(gen, 10, streamOf("snap"));
    await c.writeWalSegment(pos, streamOf("wal"));
    await c.writeRecord(gen, recordName(pos), new TextEncoder().encode("{}"));
    const dir = `generations/${gen}`;
    assert.deepEqual(await keys(c), [
      `${dir}/checksums/0000000a_00004080.json`,
      `${dir}/snapshots/0000000a.snapshot.lz4`,
      `${dir}/wal/0000000a_00004080.wal.lz4`,
    ]);
    assert.deepEqual(await c.generations(), [gen]);
    const described = [
      [c.describe("snapshot", pos), `${dir}/snapshots/0000000a.snapshot.lz4`],
      [c.describe("wal", pos), `${dir}/wal/0000000a_00004080.wal.lz4`],
      [c.describeRecord(gen, recordName(pos)), `${dir}/checksums/0000000a_00004080.json`],
    ];
    for (const [text, key] of described) assert.deepEqual(text, `${c.location}/${key}`);
    await c.deleteGeneration(gen);
    assert.deepEqual(await c.generations(), []);
    assert.deepEqual(await keys(c), []);
  });

  await t.step("write, list, read and delete snapshots and segments", async () => {
    const c = await client("crud");
    const gen = newGeneration();
    const before = Date.now() - 5_000; // S3 timestamps have second precision.
    for (const index of [2, 0, 10]) {
      const info = await c.writeSnapshot(gen, index, streamOf(`snapshot ${index}`, "!"));
      assert.deepEqual([info.generation, info.index, info.size], [
        gen,
        index,
        stored(`snapshot ${index}!`.length),
      ]);
      assert.ok(info.createdAt instanceof Date);
    }
    const positions = [[1, 0], [0, 4152], [0, 0], [1, 32]].map(([i, o]) => seg(gen, i, o));
    for (const pos of positions) {
      const info = await c.writeWalSegment(pos, streamOf(`wal ${pos.index}/${pos.offset}`));
      assert.deepEqual(info.size, stored(`wal ${pos.index}/${pos.offset}`.length));
      assert.deepEqual([info.generation, info.index, info.offset], [gen, pos.index, pos.offset]);
    }
    const snaps = await c.snapshots(gen);
    assert.deepEqual(snaps.map((s) => [s.generation, s.index, s.size]), [
      [gen, 0, stored(11)],
      [gen, 2, stored(11)],
      [gen, 10, stored(12)],
    ]);
    const segs = await c.walSegments(gen);
    assert.deepEqual(segs.map((s) => [s.generation, s.index, s.offset, s.size]), [
      [gen, 0, 0, stored(7)],
      [gen, 0, 4152, stored(10)],
      [gen, 1, 0, stored(7)],
      [gen, 1, 32, stored(8)],
    ]);
    for (const s of [...snaps, ...segs]) {
      const ms = s.createdAt.getTime();
      assert.ok(ms > before && ms < Date.now() + 5_000, `createdAt ${s.createdAt.toISOString()}`);
      if (backend.nanosecondTimes) {
        assert.deepEqual(s.createdAtNs! / 1_000_000n, BigInt(ms), "createdAtNs within createdAt");
      } else {
        assert.deepEqual(s.createdAtNs, undefined);
      }
    }
    assert.deepEqual(await textOf(await c.readSnapshot(gen, 2)), "snapshot 2!");
    assert.deepEqual(await textOf(await c.readWalSegment(positions[1])), "wal 0/4152");

    await c.deleteSnapshot(gen, 2);
    await c.deleteSnapshot(gen, 2); // Missing: not an error.
    assert.deepEqual((await c.snapshots(gen)).map((s) => s.index), [0, 10]);
    await c.deleteWalSegments(positions.slice(0, 2));
    assert.deepEqual((await c.walSegments(gen)).map((s) => [s.index, s.offset]), [[0, 0], [1, 32]]);
    await c.deleteGeneration(gen);
    assert.deepEqual(await keys(c), []);
  });

  await t.step("generations are listed sorted, whatever object they hold", async () => {
    const c = await client("generations");
    const gens = [newGeneration(), newGeneration(), newGeneration()];
    await c.writeWalSegment(seg(gens[0], 0, 0), streamOf("w"));
    await c.writeSnapshot(gens[1], 0, streamOf("s"));
    await c.writeRecord(gens[2], recordName(seg(gens[2], 0, 0)), new Uint8Array([1]));
    assert.deepEqual(await c.generations(), [...gens].sort());
    for (const gen of gens) await c.deleteGeneration(gen);
    assert.deepEqual(await c.generations(), []);
  });

  await t.step("foreign names are ignored, missing objects are NotFoundError", async () => {
    const c = await client("foreign");
    const gen = newGeneration();
    await c.writeSnapshot(gen, 1, streamOf("s"));
    await c.writeWalSegment(seg(gen, 1, 0), streamOf("w"));
    await c.writeRecord(gen, "00000001_00000000.json", new Uint8Array([1]));
    const foreign = [
      "generations/0123456789ABCDEF/snapshots/00000001.snapshot.lz4",
      "generations/0123456789abcde/snapshots/00000001.snapshot.lz4",
      "generations/notes.txt",
      `generations/${gen}/snapshots/0000000A.snapshot.lz4`,
      `generations/${gen}/snapshots/000000001.snapshot.lz4`,
      `generations/${gen}/snapshots/00000001.snapshot.lz4.tmp`,
      `generations/${gen}/wal/00000001_00000000.wal`,
      `generations/${gen}/wal/nested/00000002_00000000.wal.lz4`,
      `generations/${gen}/checksums/00000001_00000000.json.tmp`,
      `generations/${gen}/checksums/notes.txt`,
      `generations/${gen}x/wal/00000002_00000000.wal.lz4`,
    ];
    for (const key of foreign) await backend.putRaw(c, key, new Uint8Array([120]));
    assert.deepEqual(await c.generations(), [gen]);
    assert.deepEqual((await c.snapshots(gen)).map((s) => s.index), [1]);
    assert.deepEqual((await c.walSegments(gen)).map((s) => [s.index, s.offset]), [[1, 0]]);
    assert.deepEqual((await c.records(gen)).map((r) => r.name), ["00000001_00000000.json"]);

    const missing = newGeneration();
    assert.deepEqual(await c.snapshots(missing), []);
    assert.deepEqual(await c.walSegments(missing), []);
    assert.deepEqual(await c.records(missing), []);
    await rejectsWith(() => c.readSnapshot(missing, 0), NotFoundError, "object not found");
    const absent = seg(gen, 9, 0);
    await rejectsWith(() => c.readWalSegment(absent), NotFoundError, c.describe("wal", absent));
    await rejectsWith(
      () => c.readRecord(gen, "00000009_00000000.json"),
      NotFoundError,
      c.describeRecord(gen, "00000009_00000000.json"),
    );
    await c.deleteGeneration(missing);
    throwsWith(() => c.describe("snapshot", seg("../x", 0, 0)), LitestreamError);
  });

  await t.step("an overwritten object holds the new bytes", async () => {
    const c = await client("overwrite");
    const gen = newGeneration();
    const pos = seg(gen, 3, 64);
    const name = recordName(pos);
    for (const text of ["first version", "second"]) {
      await c.writeSnapshot(gen, 3, streamOf(text));
      await c.writeWalSegment(pos, streamOf(text));
      await c.writeRecord(gen, name, new TextEncoder().encode(text));
    }
    assert.deepEqual((await c.snapshots(gen)).map((s) => [s.index, s.size]), [[3, stored(6)]]);
    assert.deepEqual((await c.walSegments(gen)).map((s) => [s.offset, s.size]), [[64, stored(6)]]);
    assert.deepEqual((await c.records(gen)).map((r) => [r.name, r.size]), [[name, stored(6)]]);
    assert.deepEqual(await textOf(await c.readSnapshot(gen, 3)), "second");
    assert.deepEqual(await textOf(await c.readWalSegment(pos)), "second");
    assert.deepEqual(new TextDecoder().decode(await c.readRecord(gen, name)), "second");
  });

  await t.step("deleting what is not there is not an error", async () => {
    const c = await client("deletes");
    const gen = newGeneration();
    await c.writeSnapshot(gen, 1, streamOf("s"));
    const missing = newGeneration();
    await c.deleteSnapshot(missing, 0);
    await c.deleteSnapshot(gen, 7);
    await c.deleteWalSegments([]);
    await c.deleteWalSegments([seg(gen, 1, 0), seg(missing, 0, 0)]);
    await c.deleteRecords(gen, []);
    await c.deleteRecords(missing, ["00000000_00000000.json"]);
    await c.deleteGeneration(missing);
    assert.deepEqual((await c.snapshots(gen)).map((s) => s.index), [1]);
    await c.deleteGeneration(gen);
    await c.deleteGeneration(gen);
    assert.deepEqual(await keys(c), []);
  });

  await t.step("a location name may hold any character but /", async () => {
    const c = await client(ODD_NAME);
    assert.ok(c.location.includes(ODD_NAME), c.location);
    const gen = newGeneration();
    const pos = seg(gen, 0, 0);
    await c.writeSnapshot(gen, 0, streamOf("snap"));
    await c.writeWalSegment(pos, streamOf("wal"));
    await c.writeRecord(gen, recordName(pos), new Uint8Array([1, 2]));
    assert.deepEqual(await c.generations(), [gen]);
    assert.deepEqual((await c.snapshots(gen)).map((s) => s.size), [stored(4)]);
    assert.deepEqual((await c.walSegments(gen)).map((s) => s.size), [stored(3)]);
    assert.deepEqual((await c.records(gen)).map((r) => r.size), [stored(2)]);
    assert.deepEqual(await textOf(await c.readSnapshot(gen, 0)), "snap");
    assert.deepEqual(await textOf(await c.readWalSegment(pos)), "wal");
    assert.deepEqual(await c.readRecord(gen, recordName(pos)), new Uint8Array([1, 2]));
    assert.ok(c.describe("wal", pos).includes(ODD_NAME));
    await rejectsWith(() => c.readSnapshot(gen, 1), NotFoundError, ODD_NAME);
    await c.deleteGeneration(gen);
    assert.deepEqual(await keys(c), []);
  });

  await t.step("a large object streams in and out whole", async () => {
    const c = await client("large");
    const gen = newGeneration();
    const data = payload(1, 11 * 1024 * 1024 + 12345);
    const info = await c.writeSnapshot(gen, 0, chunked(data));
    assert.deepEqual(info.size, stored(data.length));
    assert.deepEqual((await c.snapshots(gen))[0].size, stored(data.length));
    assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0)), data);
    await c.deleteGeneration(gen);
  });

  await t.step(
    "a write whose data fails rejects with that failure and stores nothing",
    async () => {
      const c = await client("failed-source");
      const gen = newGeneration();
      const broken = new Error("source broke");
      let sent = false;
      const data = new ReadableStream<Uint8Array>({
        pull(ctrl) {
          if (sent) return ctrl.error(broken);
          sent = true;
          ctrl.enqueue(new Uint8Array(1000));
        },
      });
      const err = await c.writeSnapshot(gen, 0, data).then(() => undefined, (e) => e);
      assert.equal(err, broken);
      assert.deepEqual(await c.snapshots(gen), []);
      assert.deepEqual(await keys(c), []);
    },
  );

  await t.step("checksum records: sorted, read back, deleted", async () => {
    const c = await client("records");
    const gen = newGeneration();
    const positions = [seg(gen, 2, 0), seg(gen, 0, 4152), seg(gen, 0, 32)];
    for (const pos of positions) {
      const body = new TextEncoder().encode(`record ${pos.index}/${pos.offset}`);
      const info = await c.writeRecord(gen, recordName(pos), body);
      assert.deepEqual([info.generation, info.name, info.size], [
        gen,
        recordName(pos),
        stored(body.length),
      ]);
      assert.ok(info.createdAt instanceof Date);
    }
    const listed = await c.records(gen);
    assert.deepEqual(listed.map((r) => [r.generation, r.name, r.size]), [
      [gen, "00000000_00000020.json", stored(11)],
      [gen, "00000000_00001038.json", stored(13)],
      [gen, "00000002_00000000.json", stored(10)],
    ]);
    assert.ok(listed.every((r) => r.createdAt instanceof Date));
    const text = new TextDecoder().decode(await c.readRecord(gen, "00000000_00001038.json"));
    assert.deepEqual(text, "record 0/4152");
    await c.deleteRecords(gen, ["00000000_00000020.json", "00000005_00000000.json"]);
    assert.deepEqual((await c.records(gen)).map((r) => r.name), [
      "00000000_00001038.json",
      "00000002_00000000.json",
    ]);
    await c.deleteGeneration(gen);
    assert.deepEqual(await c.records(gen), []);
  });

  await t.step("the lease object: compare-and-swap, outside generations/", async () => {
    const c = await client("lease");
    const text = (s: string) => new TextEncoder().encode(s);
    assert.equal(await c.readLease(), undefined);
    const v1 = await c.writeLease(text("one"), undefined);
    assert.ok(v1 !== undefined, "the first write creates it");
    assert.equal(await c.writeLease(text("again"), undefined), undefined, "only if absent");
    const read1 = await c.readLease();
    assert.deepEqual([new TextDecoder().decode(read1!.data), read1!.version], ["one", v1]);
    const v2 = await c.writeLease(text("two"), v1);
    assert.ok(v2 !== undefined && v2 !== v1, "a write with the current version succeeds");
    assert.equal(await c.writeLease(text("stale"), v1), undefined, "a stale version fails");
    assert.equal(await c.writeLease(text("bogus"), "no-such-version"), undefined);
    const read2 = await c.readLease();
    assert.deepEqual([new TextDecoder().decode(read2!.data), read2!.version], ["two", v2]);
    // v0.3.13 and our listings never see it; a generation still lists alone.
    const gen = newGeneration();
    await c.writeSnapshot(gen, 0, streamOf("snap"));
    assert.deepEqual(await c.generations(), [gen]);
    assert.ok((await keys(c)).every((k) => !k.startsWith("generations/") || k.includes(gen)));
    if (!backend.leaseRaces) {
      const results = await Promise.all(
        ["a", "b", "c", "d"].map((s) => c.writeLease(text(s), v2)),
      );
      assert.equal(results.filter((v) => v !== undefined).length, 1, "one racing write wins");
      const winner = results.findIndex((v) => v !== undefined);
      const read3 = await c.readLease();
      assert.deepEqual(
        [new TextDecoder().decode(read3!.data), read3!.version],
        [["a", "b", "c", "d"][winner], results[winner]],
      );
    }
  });

  const ranges = backend.ranges;
  if (ranges) {
    await t.step("a download that breaks mid-body resumes where it stopped", async () => {
      const c = await client("resume");
      const gen = newGeneration();
      const data = payload(7, 300_000);
      await c.writeSnapshot(gen, 0, streamOf(data));
      ranges.breakReads(2, 100_000);
      assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0)), data);
      ranges.check?.(c, data.length);
    });
  }
}
