import assert from "node:assert/strict";
import { decodeFrameHeader, decodeWalHeader, frameAlign, walChecksum } from "./wal.ts";
import { decodeDbHeader } from "./header.ts";

const hex = (s: string) => Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));

Deno.test("WAL checksum matches the spec's test vector for a header", () => {
  const header = hex("377f0682002de218000010000000000baa2f4c1dee9a35b3");
  assert.deepEqual(walChecksum(header, false), [0xfd3332bd, 0x7350a550]);
});

Deno.test("WAL header decodes and rejects bad magic and checksum", () => {
  const b = new Uint8Array(32);
  b.set(hex("377f0682002de218000010000000000baa2f4c1dee9a35b3"));
  new DataView(b.buffer).setUint32(24, 0xfd3332bd);
  new DataView(b.buffer).setUint32(28, 0x7350a550);
  const h = decodeWalHeader(b);
  assert.equal(typeof h, "object");
  if (typeof h === "string") return;
  assert.equal(h.pageSize, 4096);
  assert.equal(h.bigEndian, false);
  assert.equal(h.checkpointSeq, 11);
  assert.equal(h.salt1, 0xaa2f4c1d);
  assert.equal(decodeWalHeader(b.with(31, b[31] ^ 1)), "invalid wal header checksum");
  assert.equal(decodeWalHeader(b.with(3, 0x84)), "invalid wal header magic");
  assert.equal(decodeWalHeader(b.subarray(0, 20)), "short WAL header");
});

Deno.test("big-endian checksums read words big-endian", () => {
  const data = hex("0000000100000002");
  assert.deepEqual(walChecksum(data, true), [1, 3]);
  assert.deepEqual(walChecksum(data, false), [0x01000000, 0x03000000]);
});

Deno.test("frame header fields decode big-endian", () => {
  const f = hex("00000003000000180102030405060708090a0b0c0d0e0f10");
  assert.deepEqual(decodeFrameHeader(f), {
    pgno: 3,
    commitSize: 24,
    salt1: 0x01020304,
    salt2: 0x05060708,
    checksum: [0x090a0b0c, 0x0d0e0f10],
  });
});

Deno.test("frameAlign rounds down to whole frames", () => {
  assert.equal(frameAlign(0, 4096), 0);
  assert.equal(frameAlign(31, 4096), 0);
  assert.equal(frameAlign(32, 4096), 32);
  assert.equal(frameAlign(32 + 4120 - 1, 4096), 32);
  assert.equal(frameAlign(32 + 4120 * 3, 4096), 32 + 4120 * 3);
});

Deno.test("database header: page size 65536 is encoded as 1; non-SQLite bytes are named", () => {
  const b = new Uint8Array(100);
  b.set(new TextEncoder().encode("SQLite format 3\0"));
  new DataView(b.buffer).setUint16(16, 1);
  b[18] = 2;
  b[19] = 2;
  new DataView(b.buffer).setUint32(28, 7);
  const h = decodeDbHeader(b);
  assert.equal(typeof h, "object");
  if (typeof h === "string") return;
  assert.equal(h.pageSize, 65536);
  assert.equal(h.pageCount, 7);
  assert.match(decodeDbHeader(new Uint8Array(100)) as string, /bad header magic/);
  assert.match(decodeDbHeader(new Uint8Array(10)) as string, /shorter/);
});
