/**
 * `DbFile` against the real thing: with RESERVED the sqlite3 CLI in another process still reads;
 * while it holds SQLite's EXCLUSIVE lock, it cannot (busy), and can again once the lock is
 * dropped back to RESERVED (which still keeps writers out); a reader in a transaction keeps it waiting, and it is
 * reported; once released, reading works again.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir, waitFor } from "../../tests/support/poll.ts";
import { sqlite, SQLITE3 } from "../../tests/support/sqlite_cli.ts";
import { DbFile } from "./db_lock.ts";

/** Runs one query in a fresh sqlite3 with no busy timeout; returns stdout and stderr. */
async function tryRead(db: string): Promise<{ out: string; err: string }> {
  const o = await new Deno.Command(SQLITE3, {
    args: ["-readonly", "-batch", db, "SELECT count(*) FROM t;"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { out: dec.decode(o.stdout).trim(), err: dec.decode(o.stderr).trim() };
}

Deno.test("DbFile's lock excludes SQLite readers, waits for one in a transaction, then releases", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "l.db");
  await sqlite(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);");
  const file = DbFile.open(db);
  try {
    // RESERVED alone: readers keep reading.
    assert.equal(await file.reserve(), true);
    assert.equal((await tryRead(db)).out, "2");
    assert.equal(await file.lock(), true);
    assert.match((await tryRead(db)).err, /database is locked/);
    // Back to RESERVED: readers read again, a writer still cannot start.
    file.downgrade();
    assert.equal(file.locked, false);
    assert.equal(file.reserved, true);
    assert.equal((await tryRead(db)).out, "2");
    const write = await new Deno.Command(SQLITE3, {
      args: ["-batch", db, "INSERT INTO t VALUES (3);"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.match(new TextDecoder().decode(write.stderr), /database is locked/);
    file.unlock();
    assert.equal((await tryRead(db)).out, "2");

    // A reader inside a transaction holds SHARED: the lock waits (and reports) until it ends.
    const reader = new Deno.Command(SQLITE3, {
      args: ["-readonly", "-batch", db],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const stdin = reader.stdin.getWriter();
    const lines = reader.stdout.pipeThrough(new TextDecoderStream()).getReader();
    await stdin.write(new TextEncoder().encode("BEGIN; SELECT count(*) FROM t;\n"));
    assert.equal((await lines.read()).value?.trim(), "2");
    const reports: (number | undefined)[] = [];
    const locking = file.lock(undefined, (_ms, pid) => reports.push(pid), 200);
    await waitFor("the wait reported", () => reports.length >= 1);
    assert.equal(file.locked, false, "waits while the reader's transaction is open");
    assert.ok(reports.length >= 1 && reports[0] === reader.pid, `reported ${reports}`);
    await stdin.write(new TextEncoder().encode("COMMIT;\n"));
    assert.equal(await locking, true);
    await stdin.close();
    await lines.cancel();
    await reader.status;
  } finally {
    file.close();
  }
  assert.equal((await tryRead(db)).out, "2");
});
