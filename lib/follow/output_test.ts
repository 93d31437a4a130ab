/**
 * The output under SQLite's locks, against the sqlite3 CLI: a change killed half-way (its
 * descriptor closed, as a killed process's would be) leaves a hot journal that a read-only
 * reader refuses rather than read a torn state, and that the next follower rolls back to the
 * exact bytes before; a finished change is visible at once, with the header in follower form; a
 * change made visible whose journal was left behind (killed before deleting it) is kept in the
 * same boot and rolled back after a reboot.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../../tests/support/poll.ts";
import { sqlite, SQLITE3 } from "../../tests/support/sqlite_cli.ts";
import { Logger } from "../log.ts";
import { exists } from "../os/fs.ts";
import { decodeDbHeader } from "../sqlite/header.ts";
import { decodeJournal, journalPath } from "./journal.ts";
import { FollowedOutput, prepareImage } from "./output.ts";

const log = new Logger({ write: () => {} });

async function readOnly(db: string): Promise<{ out: string; err: string }> {
  const o = await new Deno.Command(SQLITE3, {
    args: ["-readonly", "-batch", db, "SELECT count(*), sum(length(v)) FROM t;"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { out: dec.decode(o.stdout).trim(), err: dec.decode(o.stderr).trim() };
}

/** What a follower starting on `db` does with a journal left there (see `FollowedOutput.rollBack`). */
async function rollBackOnce(db: string): Promise<Awaited<ReturnType<FollowedOutput["rollBack"]>>> {
  const out = FollowedOutput.open(db, log);
  try {
    return await out.rollBack();
  } finally {
    out.close();
  }
}

Deno.test("a change cut off half-way is refused to readers and rolled back by the next follower", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "o.db");
  await sqlite(
    db,
    "PRAGMA page_size=1024; CREATE TABLE t(v); " +
      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<100) " +
      "INSERT INTO t SELECT randomblob(300) FROM c;",
  );
  await prepareImage(db, log);
  const header = decodeDbHeader((await Deno.readFile(db)).subarray(0, 100));
  assert.ok(typeof header !== "string");
  assert.deepEqual([header.writeVersion, header.readVersion], [1, 1]);
  const before = await Deno.readFile(db);
  const pages = before.length / 1024;
  const expected = (await readOnly(db)).out;

  // Journal and overwrite pages 2..4 with garbage, cut the file, then "die".
  const out = FollowedOutput.open(db, log);
  assert.equal(await out.reserve(), true);
  await out.beginChange([2, 3, 4], pages - 5);
  assert.equal(await out.lock(), true);
  const sink = out.sink();
  for (const pgno of [2, 3, 4]) await sink.write(pgno, new Uint8Array(1024).fill(0xee));
  await sink.truncate(pages - 5);
  out.close(); // the process's locks go with its descriptor
  assert.ok(await Deno.stat(journalPath(db)));

  const refused = await readOnly(db);
  assert.notEqual(refused.out, expected, "no torn state is read");
  assert.match(refused.err, /readonly|read-only/i);

  assert.equal(await rollBackOnce(db), "rolled back");
  assert.deepEqual(await Deno.readFile(db), before, "back to the exact bytes before");
  assert.equal(await exists(journalPath(db)), false);
  assert.equal((await readOnly(db)).out, expected);
});

Deno.test("a finished change is visible at once and bumps the change counter", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "f.db");
  await sqlite(db, "PRAGMA page_size=1024; CREATE TABLE t(v); INSERT INTO t VALUES (x'01');");
  await prepareImage(db, log);
  const counter = (await Deno.readFile(db)).subarray(24, 28);
  const donor = join(dir.path, "d.db");
  await sqlite(
    db.replace("f.db", "d.db"),
    "PRAGMA page_size=1024; CREATE TABLE t(v); INSERT INTO t VALUES (x'01'), (x'0203');",
  );
  const image = await Deno.readFile(donor);
  const out = FollowedOutput.open(db, log);
  try {
    assert.equal(await out.reserve(), true);
    await out.beginChange([1, 2], image.length / 1024);
    assert.equal(await out.lock(), true);
    const sink = out.sink();
    for (let p = 1; p <= image.length / 1024; p++) {
      await sink.write(p, image.subarray((p - 1) * 1024, p * 1024));
    }
    await out.finish(image.length / 1024);
  } finally {
    out.close();
  }
  assert.equal((await readOnly(db)).out, "2|3");
  const after = await Deno.readFile(db);
  assert.notDeepEqual(after.subarray(24, 28), counter);
  assert.deepEqual(after.subarray(24, 28), after.subarray(92, 96), "version-valid-for equals it");
  assert.deepEqual([after[18], after[19]], [1, 1]);
  assert.equal(await exists(journalPath(db)), false);
});

Deno.test("a visible change whose journal was left behind is kept in the same boot, rolled back after a reboot", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "k.db");
  await sqlite(
    db,
    "PRAGMA page_size=1024; CREATE TABLE t(v); " +
      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<50) " +
      "INSERT INTO t SELECT randomblob(300) FROM c;",
  );
  await prepareImage(db, log);
  const before = await Deno.readFile(db);
  const pages = before.length / 1024;
  // A change deleting half the rows, made with the sqlite3 CLI on a copy: its pages are the donor.
  const donor = join(dir.path, "donor.db");
  await Deno.writeFile(donor, before);
  await sqlite(donor, "DELETE FROM t WHERE rowid % 2 = 0;");
  const image = await Deno.readFile(donor);

  /** Applies the change, keeping a copy of its journal as a follower killed after the writes would. */
  async function change(): Promise<Uint8Array> {
    const out = FollowedOutput.open(db, log);
    try {
      assert.equal(await out.reserve(), true);
      await out.beginChange(Array.from({ length: pages }, (_, i) => i + 1), pages);
      const journal = await Deno.readFile(journalPath(db));
      assert.equal(await out.lock(), true);
      const sink = out.sink();
      for (let p = 1; p <= image.length / 1024; p++) {
        await sink.write(p, image.subarray((p - 1) * 1024, p * 1024));
      }
      await out.finish(image.length / 1024);
      return journal;
    } finally {
      out.close();
    }
  }

  const journal = await change();
  const after = await Deno.readFile(db);
  const expected = (await readOnly(db)).out;
  assert.equal(expected, "25|7500");
  await Deno.writeFile(journalPath(db), journal);
  assert.equal(await rollBackOnce(db), "kept");
  assert.deepEqual(await Deno.readFile(db), after, "the change stays");
  assert.equal(await exists(journalPath(db)), false);
  assert.equal((await readOnly(db)).out, expected);

  // The same journal written in another boot: the page cache may have lost writes, roll back.
  const other = journal.slice();
  other[40] = other[40] === 0x30 ? 0x31 : 0x30; // first character of the mark's boot id
  await Deno.writeFile(journalPath(db), other);
  assert.equal(await rollBackOnce(db), "rolled back");
  assert.deepEqual(await Deno.readFile(db), before, "back to the exact bytes before");
});

Deno.test("an abandoned change leaves a journal that is not hot, removed at the next start", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "a.db");
  await sqlite(db, "PRAGMA page_size=1024; CREATE TABLE t(v); INSERT INTO t VALUES (x'01');");
  await prepareImage(db, log);
  const before = await Deno.readFile(db);
  const out = FollowedOutput.open(db, log);
  try {
    assert.equal(await out.reserve(), true);
    await out.beginChange([1], before.length / 1024);
    await out.abandon();
  } finally {
    out.close();
  }
  assert.equal(decodeJournal(await Deno.readFile(journalPath(db)), "j"), undefined, "not hot");
  assert.equal((await readOnly(db)).out, "1|1", "readers read");
  assert.equal(await rollBackOnce(db), undefined);
  assert.equal(await exists(journalPath(db)), false);
  assert.deepEqual(await Deno.readFile(db), before);
});
