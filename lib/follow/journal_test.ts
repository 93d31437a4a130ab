/**
 * The rollback journal against real SQLite: a journal we write for pages we then overwrite is
 * hot to the sqlite3 CLI, which refuses to read it read-only and rolls it back read-write,
 * giving back the database as it was (the follower's mark in the header's padding changes
 * nothing for SQLite); our own decoder agrees.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../../tests/support/poll.ts";
import { sqlite, SQLITE3 } from "../../tests/support/sqlite_cli.ts";
import { decodeJournal, encodeJournal, journalPath, journalSize, pageChecksum } from "./journal.ts";

Deno.test("pageChecksum adds every 200th byte from the end to the nonce", () => {
  const page = new Uint8Array(1024);
  page[824] = 3;
  page[624] = 4;
  page[24] = 5;
  page[0] = 100; // never counted
  assert.equal(pageChecksum(10, page), 10 + 3 + 4 + 5);
});

Deno.test("a journal we write is rolled back by SQLite itself", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "j.db");
  await sqlite(
    db,
    "PRAGMA page_size=1024; CREATE TABLE t(x); " +
      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<200) " +
      "INSERT INTO t SELECT randomblob(100) FROM c;",
  );
  const before = await Deno.readFile(db);
  const pageSize = 1024;
  const dbPages = before.length / pageSize;
  // Journal pages 1 and 3, then damage them and grow the file, as a killed follower would.
  const read = (pgno: number, into: Uint8Array) =>
    into.set(before.subarray((pgno - 1) * pageSize, pgno * pageSize));
  // With the follower's mark in the header's padding, which SQLite must ignore.
  const mark = { boot: "0b6f3c1e-2d4a-4c5b-9e8f-7a6b5c4d3e2f", counter: 0xfffffffe };
  // Into a reused buffer larger than needed, holding old bytes.
  const out = new Uint8Array(journalSize(3, pageSize)).fill(0xaa);
  const journal = encodeJournal(out, [1, 3], read, dbPages, pageSize, 0x12345678, mark);
  assert.equal(journal.length, journalSize(2, pageSize));
  const decoded = decodeJournal(journal, "j");
  assert.deepEqual(decoded?.records.map((r) => r.pgno), [1, 3]);
  assert.deepEqual(decoded?.mark, mark);
  await Deno.writeFile(journalPath(db), journal);
  const damaged = new Uint8Array(before.length + 2 * pageSize).fill(0x55);
  damaged.set(before.subarray(pageSize, 2 * pageSize), pageSize); // page 2 intact
  damaged.set(before.subarray(3 * pageSize), 3 * pageSize); // pages 4.. intact
  damaged.set(before.subarray(0, 16), 0); // keep the magic: a header SQLite still recognises
  await Deno.writeFile(db, damaged);

  const ro = await new Deno.Command(SQLITE3, {
    args: ["-readonly", "-batch", db, "SELECT count(*) FROM t;"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.notEqual(new TextDecoder().decode(ro.stdout).trim(), "200", "read-only reader refused");
  assert.match(new TextDecoder().decode(ro.stderr), /readonly|read-only/i);

  assert.equal(await sqlite(db, "SELECT count(*) FROM t;"), "200");
  assert.deepEqual(await Deno.readFile(db), before, "rolled back to the bytes before");
  assert.equal(await Deno.stat(journalPath(db)).then(() => true, () => false), false);
});

Deno.test("decodeJournal: empty or zeroed is not hot; records stop at a bad checksum", () => {
  assert.equal(decodeJournal(new Uint8Array(0), "j"), undefined);
  assert.equal(decodeJournal(new Uint8Array(600), "j"), undefined);
  const page = (v: number) => new Uint8Array(512).fill(v);
  const bytes = encodeJournal(
    new Uint8Array(journalSize(2, 512)),
    [1, 2],
    (pgno, into) => into.set(page(pgno)),
    2,
    512,
    7,
  );
  assert.equal(decodeJournal(bytes, "j")?.mark, undefined, "no mark unless given");
  bytes[bytes.length - 1] ^= 1; // the second record's checksum
  assert.deepEqual(decodeJournal(bytes, "j")?.records.map((r) => r.pgno), [1]);
  assert.throws(
    () => decodeJournal(new Uint8Array([1, 2, 3]), "j"),
    /not an SQLite rollback journal/,
  );
});
