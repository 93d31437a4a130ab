import assert from "node:assert/strict";
import fc from "fast-check";
import { WalReplayer } from "./replay.ts";
import { CorruptionError } from "../errors.ts";
import { PageMap, type PageSink } from "./page_map.ts";
import { payload, splitAtCommits, WalSource } from "../../tests/support/wal_source.ts";
import { tempDir } from "../../tests/support/poll.ts";

const GEN = "0123456789abcdef";

/** An in-memory database image that a replay flushes into. */
class MemoryImage implements PageSink {
  constructor(public bytes: Uint8Array, readonly pageSize: number) {}
  write(pgno: number, page: Uint8Array): Promise<void> {
    const end = pgno * this.pageSize;
    if (end > this.bytes.length) this.resize(end);
    this.bytes.set(page, (pgno - 1) * this.pageSize);
    return Promise.resolve();
  }
  truncate(pages: number): Promise<void> {
    this.resize(pages * this.pageSize);
    return Promise.resolve();
  }
  resize(n: number) {
    const next = new Uint8Array(n);
    next.set(this.bytes.subarray(0, Math.min(n, this.bytes.length)));
    this.bytes = next;
  }
}

async function replay(
  base: Uint8Array,
  wals: Uint8Array[],
  pageSize: number,
  flushBytes?: number,
  every = 1,
) {
  const image = new MemoryImage(base.slice(), pageSize);
  const replayer = new WalReplayer(pageSize, image, flushBytes);
  for (const [index, wal] of wals.entries()) {
    for (const [offset, bytes] of splitAtCommits(wal, pageSize, every)) {
      await replayer.apply(
        { generation: GEN, index, offset },
        `seg ${index}/${offset}`,
        ReadableStream.from([bytes]),
      );
    }
  }
  await replayer.pages?.flush(image);
  return image.bytes;
}

type Op = { kind: "insert"; n: number; size: number } | { kind: "delete"; mod: number } | {
  kind: "update";
  size: number;
} | {
  kind: "vacuum";
};

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("insert" as const),
      n: fc.integer({ min: 1, max: 30 }),
      size: fc.integer({ min: 1, max: 3000 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("delete" as const),
      mod: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("update" as const),
      size: fc.integer({ min: 1, max: 5000 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "vacuum" as const }) },
);

function run(src: WalSource, op: Op, seed: number) {
  switch (op.kind) {
    case "insert": {
      const stmt = src.db.prepare("INSERT INTO t(v) VALUES (?)");
      src.db.exec("BEGIN");
      for (let i = 0; i < op.n; i++) stmt.run(payload(seed + i, op.size));
      src.db.exec("COMMIT");
      break;
    }
    case "delete":
      src.tx(`DELETE FROM t WHERE id % ${op.mod + 1} = 0`);
      break;
    case "update":
      src.db.prepare("UPDATE t SET v = ? WHERE id % 3 = 1").run(payload(seed, op.size));
      break;
    case "vacuum":
      src.db.exec("VACUUM");
      break;
  }
}

Deno.test("replaying WAL segments equals SQLite's own checkpoint, byte for byte (property)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(opArb, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 3 }),
      fc.constantFrom(1024, 4096),
      fc.constantFrom(1, 2, 3),
      fc.constantFrom(undefined, 8192),
      async (incarnations, pageSize, every, flushBytes) => {
        await using dir = await tempDir();
        using src = new WalSource(dir.path, pageSize);
        src.tx("INSERT INTO t(v) VALUES (x'00')");
        const base = src.checkpoint();
        const wals: Uint8Array[] = [];
        let seed = 1;
        for (const ops of incarnations) {
          for (const op of ops) run(src, op, seed++ * 100);
          wals.push(src.wal());
          // RESTART-style boundary: the next write starts a new WAL incarnation (a new index).
          src.checkpoint();
        }
        const expected = Deno.readFileSync(src.path);
        const actual = await replay(
          base,
          wals.filter((w) => w.length > 0),
          pageSize,
          flushBytes,
          every,
        );
        assert.equal(actual.length, expected.length, "restored size");
        assert.ok(
          actual.every((b, i) => b === expected[i]),
          "restored bytes equal SQLite's checkpoint",
        );
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("replay errors name the object: flipped byte, gap, missing header, trailing uncommitted frames", async () => {
  await using dir = await tempDir();
  using src = new WalSource(dir.path, 1024);
  const base = src.checkpoint();
  for (let i = 0; i < 3; i++) src.tx(`INSERT INTO t(v) VALUES (randomblob(500))`);
  const segs = splitAtCommits(src.wal(), 1024);
  assert.equal(segs.length, 3);
  const apply = async (list: [number, Uint8Array][]) => {
    const r = new WalReplayer(1024, new MemoryImage(base.slice(), 1024));
    for (const [offset, bytes] of list) {
      await r.apply(
        { generation: GEN, index: 0, offset },
        `obj@${offset}`,
        ReadableStream.from([bytes]),
      );
    }
  };
  await apply(segs); // the intact chain applies

  const flipped = segs[1][1].slice();
  flipped[100] ^= 0xff;
  await assert.rejects(
    apply([segs[0], [segs[1][0], flipped], segs[2]]),
    (e: Error) =>
      e instanceof CorruptionError && e.message.startsWith(`obj@${segs[1][0]}:`) &&
      /checksum/.test(e.message),
  );

  await assert.rejects(
    apply([segs[0], segs[2]]),
    (e: Error) =>
      e instanceof CorruptionError && /expected offset/.test(e.message) &&
      e.message.startsWith(`obj@${segs[2][0]}`),
  );

  await assert.rejects(apply([segs[1]]), /missing initial wal segment/);

  const cut = segs[0][1].subarray(0, segs[0][1].length - 10);
  await assert.rejects(apply([[0, cut]]), /truncated frame/);

  // Clearing the commit field of the last frame leaves a transaction open at the end of the segment.
  const open = segs[0][1].slice();
  new DataView(open.buffer).setUint32(open.length - 1024 - 24 + 4, 0);
  await assert.rejects(apply([[0, open]]), /checksum|inside a transaction/);
});

Deno.test("WalReplayer: a map handed in is emptied first and filled as its own", () => {
  const map = new PageMap(1024);
  map.put(3, new Uint8Array(1024).fill(7));
  map.commit(5);
  const r = new WalReplayer(map);
  assert.equal(r.pages, map);
  assert.equal(map.bytes, 0);
  assert.equal(map.size, undefined);
  assert.equal(map.floor, Infinity);
});
