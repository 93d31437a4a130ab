/** The file replica client runs the `ReplicaClient` contract in a scratch directory. */

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
