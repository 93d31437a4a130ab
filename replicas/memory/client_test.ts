/**
 * The in-memory client runs the `ReplicaClient` contract, and its faults do
 * what they promise: failures on the n-th call, stalls, truncated reads.
 */

import assert from "node:assert/strict";
import { newGeneration } from "../../lib/names.ts";
import { LitestreamError } from "../../lib/errors.ts";
import { MemoryReplicaClient } from "./mod.ts";
import { replicaClientContract } from "../contract.ts";
import { rejectsWith, streamOf, textOf } from "../test_streams.ts";

Deno.test("memory client contract", async (t) => {
  await replicaClientContract(t, {
    client: (name) => new MemoryReplicaClient(name),
    keys: (c) => Promise.resolve(c.keys()),
    putRaw: (c, key, data) => Promise.resolve(c.putRaw(key, data)),
  });
});

Deno.test("memory client: the n-th call of an operation fails, and only that one", async () => {
  const c = new MemoryReplicaClient();
  const gen = newGeneration();
  const pos = { generation: gen, index: 0, offset: 0 };
  await c.writeWalSegment(pos, streamOf("before"));
  const custom = new Error("disk on fire");
  c.faults.fail("writeWalSegment", 2, custom);
  c.faults.fail("snapshots");
  await c.writeWalSegment({ ...pos, offset: 6 }, streamOf("first"));
  const err = await c.writeWalSegment({ ...pos, offset: 11 }, streamOf("second")).catch((e) => e);
  assert.equal(err, custom);
  await rejectsWith(() => c.snapshots(gen), LitestreamError, "injected snapshots failure");
  assert.deepEqual(await c.snapshots(gen), []);
  assert.deepEqual((await c.walSegments(gen)).map((s) => s.offset), [0, 6]);
  assert.deepEqual(c.faults.calls.writeWalSegment, 3);
});

Deno.test("memory client: a stalled call waits for release or abort", async () => {
  const c = new MemoryReplicaClient();
  const gen = newGeneration();
  const held = c.faults.stall("writeSnapshot");
  let done = false;
  const write = c.writeSnapshot(gen, 0, streamOf("snap")).finally(() => done = true);
  await held.reached;
  assert.deepEqual([done, await c.snapshots(gen)], [false, []]);
  held.release();
  assert.deepEqual((await write).size, 4);

  const aborted = c.faults.stall("readSnapshot");
  const read = c.readSnapshot(gen, 0);
  await aborted.reached;
  aborted.abort();
  await rejectsWith(() => read, LitestreamError, "stalled readSnapshot aborted");
  assert.deepEqual(await textOf(await c.readSnapshot(gen, 0)), "snap");
});

Deno.test("memory client: a truncated read ends early, once", async () => {
  const c = new MemoryReplicaClient();
  const gen = newGeneration();
  await c.writeSnapshot(gen, 0, streamOf("0123456789"));
  await c.writeRecord(gen, "00000000_00000000.json", new TextEncoder().encode('{"a":1}'));
  c.faults.truncate("readSnapshot", 4);
  c.faults.truncate("readRecord", 2);
  assert.deepEqual(await textOf(await c.readSnapshot(gen, 0)), "0123");
  assert.deepEqual(await textOf(await c.readSnapshot(gen, 0)), "0123456789");
  assert.deepEqual(await c.readRecord(gen, "00000000_00000000.json"), new Uint8Array([123, 34]));
});
