/** The file replica client runs the `ReplicaClient` contract in a scratch directory. */

import { dirname, join, relative } from "node:path";
import { FileReplicaClient } from "./mod.ts";
import { replicaClientContract } from "../contract.ts";
import { tempDir } from "../../tests/support/poll.ts";
import { readDirOrEmpty } from "../../lib/os/fs.ts";

/** Paths of every file under `dir`, relative to `root`. */
async function filesUnder(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readDirOrEmpty(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) out.push(...await filesUnder(root, path));
    else out.push(relative(root, path));
  }
  return out.sort();
}

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
