/**
 * `LockProbe` against the real thing: the sqlite3 CLI in another process holds SQLite's WAL
 * write lock in the `-shm`, and the probe names its pid; the WAL-index header it reads says
 * how many frames are committed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  decodeWalIndex,
  SHM_CKPT_LOCK,
  SHM_WRITE_LOCK,
  WAL_INDEX_READ_SIZE,
} from "../sqlite/shm.ts";
import { tempDir, waitFor } from "../../tests/support/poll.ts";
import { sqlite, SQLITE3 } from "../../tests/support/sqlite_cli.ts";
import { LockProbe } from "./lock_probe.ts";

Deno.test("LockProbe names another process's WAL write lock and reads the WAL-index header", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "p.db");
  await sqlite(db, "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);");
  // A CLI session keeps the -shm (and so the WAL-index) in place between CLI runs.
  const holder = new Deno.Command(SQLITE3, { args: [db], stdin: "piped", stdout: "piped" })
    .spawn();
  const stdin = holder.stdin.getWriter();
  const out = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const said = async (word: string) => {
    await waitFor(`the CLI to say ${word}`, async () => {
      const { value } = await out.read();
      seen += value ?? "";
      return seen.includes(word);
    });
  };
  await stdin.write(new TextEncoder().encode("SELECT 'opened' FROM t LIMIT 1;\n"));
  await said("opened"); // its read made SQLite create the -shm
  const probe = LockProbe.open(`${db}-shm`);
  assert.ok(probe instanceof LockProbe, String(probe));
  try {
    assert.equal(probe.holder(SHM_WRITE_LOCK), undefined, "nobody writes yet");
    await stdin.write(new TextEncoder().encode("BEGIN IMMEDIATE; SELECT 'locked';\n"));
    await said("locked");
    const write = probe.holder(SHM_WRITE_LOCK);
    assert.deepEqual(write, { pid: holder.pid, exclusive: true });
    assert.equal(probe.holder(SHM_CKPT_LOCK), undefined, "no checkpoint runs");
    await stdin.write(
      new TextEncoder().encode("INSERT INTO t VALUES (2); COMMIT; SELECT 'done';\n"),
    );
    await said("done");
    assert.equal(probe.holder(SHM_WRITE_LOCK), undefined, "released at commit");

    const buf = new Uint8Array(WAL_INDEX_READ_SIZE);
    const state = decodeWalIndex(buf.subarray(0, probe.read(buf, 0)));
    assert.ok(state);
    const wal = await Deno.readFile(`${db}-wal`);
    const pageSize = new DataView(wal.buffer).getUint32(8);
    assert.equal(state.mxFrame, (wal.length - 32) / (24 + pageSize), "frames in the WAL");
    assert.deepEqual(state.salt, wal.subarray(16, 24), "salts as in the WAL header");
    assert.equal(state.readMarks.length, 5);
    assert.equal(state.readMarks[0], 0, "mark 0 reads the database file alone");
    for (const mark of state.readMarks) {
      assert.ok(mark <= state.mxFrame || mark === 0xffffffff, `read mark ${mark}`);
    }
  } finally {
    probe.close();
    await stdin.close();
    await out.cancel();
    await holder.status;
  }
});

Deno.test("LockProbe.open says why when the file is missing", () => {
  const probe = LockProbe.open("/nonexistent/x.db-shm");
  assert.equal(typeof probe, "string");
});
