/**
 * Batch selection: what continues a position, within a byte budget, and what is a gap.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { WalSegmentInfo } from "../replica_client.ts";
import type { FollowPosition } from "./position.ts";
import { nextSegments } from "./batch.ts";

const G = "0123456789abcdef";
const seg = (index: number, offset: number, size = 100): WalSegmentInfo => ({
  generation: G,
  index,
  offset,
  size,
  createdAt: new Date(0),
});
const chain = (index: number, offset: number): FollowPosition => ({
  generation: G,
  index,
  offset,
  chain: {
    index,
    offset,
    header: {
      magic: 0,
      bigEndian: false,
      version: 0,
      pageSize: 4096,
      checkpointSeq: 0,
      salt1: 0,
      salt2: 0,
      checksum: [0, 0],
    },
    checksum: [0, 0],
  },
});
const at = (b: ReturnType<typeof nextSegments>) =>
  typeof b === "string" ? b : b.batch.map((s) => `${s.index}:${s.offset}`);

Deno.test("nextSegments continues the position and the following indexes", () => {
  const listing = [seg(1, 0), seg(1, 32), seg(2, 0), seg(2, 500), seg(3, 0)];
  assert.deepEqual(at(nextSegments(listing, chain(1, 32), 1e9)), ["1:32", "2:0", "2:500", "3:0"]);
  assert.deepEqual(at(nextSegments(listing, chain(2, 900), 1e9)), ["3:0"]);
  assert.deepEqual(nextSegments(listing, chain(3, 700), 1e9), { batch: [], more: false });
});

Deno.test("nextSegments after a snapshot (no chain) starts only at its index's start", () => {
  const snap: FollowPosition = { generation: G, index: 4, offset: 0 };
  assert.deepEqual(at(nextSegments([seg(4, 0), seg(4, 80)], snap, 1e9)), ["4:0", "4:80"]);
  assert.match(at(nextSegments([seg(5, 0)], snap, 1e9)) as string, /gap.*00000005\/00000000/);
});

Deno.test("nextSegments reports gaps and stops a batch before one", () => {
  assert.match(
    at(nextSegments([seg(9, 0)], chain(5, 4152), 1e9)) as string,
    /gap in the replica's wal: next segment 00000009\/00000000, expected 00000005\/00001038 or 00000006\/00000000/,
  );
  assert.match(at(nextSegments([seg(5, 8000)], chain(5, 4152), 1e9)) as string, /gap/);
  assert.deepEqual(at(nextSegments([seg(6, 0), seg(8, 0)], chain(5, 4152), 1e9)), ["6:0"]);
});

Deno.test("nextSegments keeps to the byte budget but always takes one segment", () => {
  const listing = [seg(1, 32, 600), seg(1, 64, 600), seg(1, 96, 600)];
  assert.deepEqual(nextSegments(listing, chain(1, 32), 1000), { batch: [listing[0]], more: true });
  assert.deepEqual(at(nextSegments(listing, chain(1, 32), 100)), ["1:32"]);
  assert.equal((nextSegments(listing, chain(1, 32), 1800) as { more: boolean }).more, false);
});
