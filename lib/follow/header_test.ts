/**
 * The follower's header edits, checked against SQLite's own reading of the header.
 *
 * @module
 */

import assert from "node:assert/strict";
import { decodeDbHeader } from "../sqlite/header.ts";
import { followerHeader, nextChangeCounter } from "./header.ts";

Deno.test("followerHeader: rollback mode, counter and version-valid-for equal, size set", () => {
  const head = new Uint8Array(100);
  head.set(new TextEncoder().encode("SQLite format 3\0"));
  head[16] = 0x10; // 4096
  head[18] = 2;
  head[19] = 2;
  head[96] = 0xaa; // SQLite version number: left alone
  const out = followerHeader(head, 0x01020304, 77);
  const h = decodeDbHeader(out);
  assert.ok(typeof h !== "string");
  assert.deepEqual([h.writeVersion, h.readVersion, h.changeCounter, h.pageCount], [
    1,
    1,
    0x01020304,
    77,
  ]);
  assert.deepEqual([...out.subarray(92, 96)], [1, 2, 3, 4]);
  assert.equal(out[96], 0xaa);
  assert.equal(head[18], 2, "the input is not changed");
});

Deno.test("nextChangeCounter wraps at 32 bits and never repeats the previous value", () => {
  assert.equal(nextChangeCounter(5), 6);
  assert.equal(nextChangeCounter(0xffffffff), 0);
});
