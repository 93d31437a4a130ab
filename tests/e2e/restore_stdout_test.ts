/**
 * `restore -o -` with memory bounded as for a file: a replica whose WAL rewrites far more
 * pages than a restore keeps in memory comes out on standard output byte for byte, within a
 * peak RSS that holding those pages would exceed, and leaves no staging file behind.
 */

import assert from "node:assert/strict";
import { buildReplica } from "../support/replica_builder.ts";
import { tempDir } from "../support/poll.ts";
import { fileHash, sha256Hex } from "../support/hash.ts";
import { MAIN_TS } from "../support/cli.ts";

/** Pages the one WAL transaction writes: 128 MiB, four times the replay's memory budget. */
const WAL_BYTES = 128 * 1024 * 1024;
/** The bound for every restore (a file restore of this replica peaks near 150 MB). */
const MAX_RSS_MB = 200;

Deno.test({
  name: "restore -o - of a WAL larger than the memory bound: exact bytes, bounded RSS",
  sanitizeResources: false,
  fn: async () => {
    await using dir = await tempDir();
    const replica = await buildReplica({
      dir: dir.path,
      generations: [{ indexes: [1] }],
      rowBytes: WAL_BYTES,
    });
    const out = `${dir.path}/out.db`;
    const tmp = `${dir.path}/tmp`;
    await Deno.mkdir(tmp);
    const run = await new Deno.Command("/usr/bin/time", {
      args: [
        "-f",
        "%M",
        "sh",
        "-c",
        `exec "$0" run -A "$1" restore -o - "$2" > "$3"`,
        Deno.execPath(),
        MAIN_TS,
        replica.url,
        out,
      ],
      env: { NO_COLOR: "1", TMPDIR: tmp },
      stdout: "null",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(run.stderr).trim();
    assert.equal(run.code, 0, err);
    assert.equal(
      await fileHash(out),
      await sha256Hex(replica.latest.slice()),
      "stdout = the database",
    );
    const peakMb = Number(err.split("\n").at(-1)) / 1024;
    // Holding the WAL's pages in memory would take 128 MiB on top of about 110 MB.
    assert.ok(peakMb < MAX_RSS_MB, `peak RSS ${peakMb.toFixed(1)} MB`);
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "the staging directory is removed");
  },
});
