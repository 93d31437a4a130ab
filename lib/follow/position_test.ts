/**
 * The follow position file: round trips, atomic replacement, and refusal of what is not one.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../../tests/support/poll.ts";
import {
  decodePosition,
  encodePosition,
  type FollowPosition,
  positionPath,
  readPosition,
  writePosition,
} from "./position.ts";

const CHAIN_POS: FollowPosition = {
  generation: "0123456789abcdef",
  index: 7,
  offset: 4152,
  chain: {
    index: 7,
    offset: 4152,
    header: {
      magic: 0x377f0682,
      bigEndian: false,
      version: 3007000,
      pageSize: 4096,
      checkpointSeq: 3,
      salt1: 0xdeadbeef,
      salt2: 1,
      checksum: [5, 6],
    },
    checksum: [0xffffffff, 0],
  },
};

Deno.test("positions round-trip, with and without a replay chain", () => {
  const plain = { generation: "0123456789abcdef", index: 0, offset: 0 };
  assert.deepEqual(decodePosition(encodePosition(plain), "p"), plain);
  assert.deepEqual(decodePosition(encodePosition(CHAIN_POS), "p"), CHAIN_POS);
  const rec = { ...plain, recovering: true };
  assert.deepEqual(decodePosition(encodePosition(rec), "p"), rec);
});

Deno.test("decodePosition names the file and what is wrong", () => {
  assert.throws(() => decodePosition("{", "/x/p.json"), /\/x\/p\.json.*not JSON/);
  assert.throws(() => decodePosition('{"version":2}', "p"), /unknown version 2/);
  const ok = JSON.parse(encodePosition(CHAIN_POS));
  assert.throws(
    () => decodePosition(JSON.stringify({ ...ok, generation: "xyz" }), "p"),
    /bad generation/,
  );
  assert.throws(
    () => decodePosition(JSON.stringify({ ...ok, offset: -1 }), "p"),
    /bad index or offset/,
  );
  // A chain that is not at the position is refused: its checksum would check the wrong frames.
  assert.throws(
    () => decodePosition(JSON.stringify({ ...ok, offset: 32 }), "p"),
    /bad replay chain/,
  );
});

Deno.test("writePosition replaces the file atomically; readPosition reads it back", async () => {
  await using dir = await tempDir();
  const out = join(dir.path, "copy.db");
  assert.equal(await readPosition(out), undefined);
  await writePosition(out, CHAIN_POS);
  await writePosition(out, { ...CHAIN_POS, recovering: true });
  assert.deepEqual(await readPosition(out), { ...CHAIN_POS, recovering: true });
  assert.equal(positionPath(out), `${out}-follow.json`);
  const names = [...Deno.readDirSync(dir.path)].map((e) => e.name).sort();
  assert.deepEqual(names, ["copy.db-follow.json"], "no temporary file left");
});
