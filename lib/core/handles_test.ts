import assert from "node:assert/strict";
import { readMarkTaken } from "./handles.ts";
import type { WalIndexState } from "../sqlite/shm.ts";

const UNUSED = 0xffffffff;

function index(mxFrame: number, nBackfill: number, readMarks: number[], salt = 1): WalIndexState {
  return { mxFrame, nBackfill, readMarks, salt: new Uint8Array([salt, 0, 0, 0, 0, 0, 0, 0]) };
}

Deno.test("readMarkTaken: mark 0 for a fully backfilled WAL, the last frame where a mark holds it", () => {
  const marks = [0, 12, UNUSED, UNUSED, UNUSED];
  assert.equal(readMarkTaken(index(12, 12, marks), index(12, 12, marks)), 0);
  assert.equal(readMarkTaken(index(0, 0, marks), index(0, 0, marks)), 0, "an empty WAL");
  assert.equal(readMarkTaken(index(12, 4, marks), index(12, 4, marks)), 12);
});

Deno.test("readMarkTaken: unknown when every mark is below the WAL's end or the WAL moved", () => {
  const busy = [0, 3, 5, 7, 9];
  assert.equal(readMarkTaken(index(12, 4, busy), index(12, 4, busy)), undefined);
  const marks = [0, 12, UNUSED, UNUSED, UNUSED];
  assert.equal(readMarkTaken(index(11, 4, marks), index(12, 4, marks)), undefined, "a commit");
  assert.equal(readMarkTaken(index(12, 4, marks), index(12, 12, marks)), undefined, "a backfill");
  assert.equal(readMarkTaken(index(12, 4, marks), index(12, 4, marks, 2)), undefined, "a restart");
  assert.equal(readMarkTaken(undefined, index(12, 4, marks)), undefined, "no -shm to read");
});
