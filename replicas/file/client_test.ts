/** The file replica client runs the `ReplicaClient` contract in a scratch directory. */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { FileReplicaClient } from "./mod.ts";
import { replicaClientContract } from "../contract.ts";
import { tempDir } from "../../tests/support/poll.ts";
import { filesUnder } from "../test_streams.ts";

Deno.test("file client contract", async (t) => {
  await using dir = await tempDir();
  await replicaClientContract(t, {
    client: (name) => new FileReplicaClient(join(dir.path, name)),
    keys: (c) => filesUnder(c.root),
    putRaw: async (c, key, data) => {
      await Deno.mkdir(dirname(join(c.root, key)), { recursive: true });
      await Deno.writeFile(join(c.root, key), data);
    },
    nanosecondTimes: true,
  });
});

Deno.test("file client: watchWal wakes when a segment is renamed into place, not for its temporary file; walSegments from a position", async () => {
  await using dir = await tempDir();
  const client = new FileReplicaClient(join(dir.path, "r"));
  const generation = "0123456789abcdef";
  const seg = (offset: number) => ({ generation, index: 1, offset });
  assert.equal(client.watchWal(generation), undefined, "no WAL directory yet");
  await client.writeWalSegment(seg(0), ReadableStream.from([new Uint8Array([1])]));
  const watch = client.watchWal(generation);
  assert.ok(watch);
  try {
    await Deno.writeFile(`${client.walSegmentPath(seg(32))}.tmp`, new Uint8Array([2]));
    assert.equal(await watch.wait(300), "timeout");
    await client.writeWalSegment(seg(32), ReadableStream.from([new Uint8Array([2])]));
    assert.equal(await watch.wait(10_000), "event");
    watch.rearm();
    assert.equal(await watch.wait(50), "timeout");
    assert.deepEqual(
      (await client.walSegments(generation, { index: 1, offset: 32 })).map((s) => s.offset),
      [32],
      "listed from a position",
    );
  } finally {
    await watch.close();
  }
});
