/**
 * Replica object names (lib/names.ts): the exact `%08x` spelling v0.3.13 writes, strict parsing
 * that ignores foreign names, generation names, positions as logged, and their order.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  comparePos,
  formatPos,
  hex8,
  isGeneration,
  MAX_INDEX,
  newGeneration,
  parseSnapshotName,
  parseWalSegmentName,
  snapshotName,
  walSegmentName,
} from "./names.ts";

const u32 = fc.integer({ min: 0, max: 0xffffffff });

Deno.test("hex8 writes Go's %08x: lowercase, zero-padded, any 32-bit number", () => {
  assert.equal(hex8(0), "00000000");
  assert.equal(hex8(10), "0000000a");
  assert.equal(hex8(0x4080), "00004080");
  assert.equal(hex8(MAX_INDEX), "7fffffff");
  assert.equal(hex8(0xffffffff), "ffffffff");
  // Nothing outside 32 bits or fractional gets a name: it would not parse back.
  for (const bad of [-1, 0x100000000, 1.5, NaN, Infinity]) {
    assert.throws(() => hex8(bad), RangeError, String(bad));
  }
});

Deno.test("snapshot and segment names as v0.3.13 writes them", () => {
  assert.equal(snapshotName(10), "0000000a.snapshot.lz4");
  assert.equal(walSegmentName(0, 0x4080), "00000000_00004080.wal.lz4");
  assert.equal(parseSnapshotName("0000000a.snapshot.lz4"), 10);
  assert.deepEqual(parseWalSegmentName("00000001_00004080.wal.lz4"), { index: 1, offset: 0x4080 });
});

Deno.test("names round trip for every 32-bit index and offset", () => {
  fc.assert(fc.property(u32, (i) => parseSnapshotName(snapshotName(i)) === i));
  fc.assert(
    fc.property(u32, u32, (index, offset) => {
      assert.deepEqual(parseWalSegmentName(walSegmentName(index, offset)), { index, offset });
    }),
  );
});

Deno.test("only exactly 8 lowercase hex digits parse; foreign names are undefined", () => {
  const foreignSnapshots = [
    "a.snapshot.lz4", // too short
    "0000000a0.snapshot.lz4", // 9 digits
    "0000000A.snapshot.lz4", // uppercase
    "0000000g.snapshot.lz4",
    "0000000a.snapshot", // no .lz4 (v0.3.13 always compresses)
    "0000000a.snapshot.lz4.tmp", // an upload in progress
    " 0000000a.snapshot.lz4",
    "0000000a_00000000.wal.lz4", // a segment is not a snapshot
  ];
  for (const name of foreignSnapshots) assert.equal(parseSnapshotName(name), undefined, name);
  const foreignSegments = [
    "0000000a_0.wal.lz4",
    "a_00000000.wal.lz4",
    "0000000a_000000000.wal.lz4",
    "0000000A_00000000.wal.lz4",
    "0000000a-00000000.wal.lz4",
    "0000000a_00000000.wal",
    "0000000a_00000000.wal.lz4.tmp",
    "0000000a.snapshot.lz4",
  ];
  for (const name of foreignSegments) assert.equal(parseWalSegmentName(name), undefined, name);
  // Any string that parses is one the formatter writes: parsing is exactly the inverse.
  fc.assert(
    fc.property(fc.string(), (s) => {
      const i = parseSnapshotName(s);
      return i === undefined || snapshotName(i) === s;
    }),
  );
});

Deno.test("generation names are exactly 16 lowercase hex characters", () => {
  assert.ok(isGeneration("0123456789abcdef"));
  for (
    const bad of ["0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", "", "g".repeat(16)]
  ) {
    assert.ok(!isGeneration(bad), bad);
  }
  const made = new Set(Array.from({ length: 50 }, newGeneration));
  for (const g of made) assert.ok(isGeneration(g), g);
  assert.equal(made.size, 50, "new generations are random");
});

Deno.test("formatPos logs <generation>/<index %08x>:<offset decimal>, or empty for none", () => {
  const generation = "0123456789abcdef";
  assert.equal(formatPos({ generation, index: 10, offset: 4152 }), `${generation}/0000000a:4152`);
  assert.equal(formatPos({ generation: "", index: 1, offset: 2 }), "");
  assert.equal(formatPos(undefined), "");
});

Deno.test("comparePos orders by index, then offset", () => {
  const sorted = [
    { index: 0, offset: 0 },
    { index: 0, offset: 4152 },
    { index: 1, offset: 0 },
    { index: 1, offset: 32 },
    { index: 2, offset: 0 },
  ];
  const shuffled = [sorted[3], sorted[0], sorted[4], sorted[2], sorted[1]];
  assert.deepEqual(shuffled.sort(comparePos), sorted);
  assert.equal(comparePos({ index: 3, offset: 8 }, { index: 3, offset: 8 }), 0);
  fc.assert(
    fc.property(u32, u32, u32, u32, (i1, o1, i2, o2) => {
      const c = Math.sign(comparePos({ index: i1, offset: o1 }, { index: i2, offset: o2 }));
      const [a, b] = [walSegmentName(i1, o1), walSegmentName(i2, o2)];
      const byName = a < b ? -1 : a > b ? 1 : 0;
      // Fixed-width names sort like positions: a listing in name order is in position order.
      return c === byName;
    }),
  );
});
