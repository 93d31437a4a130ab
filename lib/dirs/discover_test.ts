/**
 * Finding databases under a `dir` entry (lib/dirs/discover.ts): the pure rules on listings
 * and headers, and `findDatabases` on a real directory tree with files that are not
 * databases, companions, meta directories and an unreadable subdirectory.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../../tests/support/poll.ts";
import { compileGlob } from "./glob.ts";
import {
  beginsWithSqliteHeader,
  type DirRule,
  findDatabases,
  hasSqliteMagic,
  planDir,
} from "./discover.ts";
import { holdFile } from "../os/held_files.ts";

const HEADER = new TextEncoder().encode("SQLite format 3\0");

function rule(dir: string, pattern = "*.db", recursive = true, metaDir?: string): DirRule {
  return { dir, matches: compileGlob(pattern) as (n: string) => boolean, recursive, metaDir };
}

Deno.test("planDir: subdirectories and candidates, never companions or meta directories", () => {
  const f = (name: string) => ({ name, isDirectory: false, isFile: true });
  const d = (name: string) => ({ name, isDirectory: true, isFile: false });
  const listing = [
    f("a.db"),
    f("a.db-wal"),
    f("a.db-shm"),
    f("b.db-journal"),
    f("c.txt"),
    d("sub"),
    d(".a.db-litestream"),
    d("meta"),
  ];
  assert.deepEqual(planDir(rule("/r", "*.db", true, "/r/meta"), "/r", listing), {
    subdirs: ["/r/sub"],
    candidates: ["/r/a.db"],
  });
  assert.deepEqual(planDir(rule("/r", "*", false), "/r", listing).candidates, [
    "/r/a.db",
    "/r/c.txt",
  ]);
  assert.deepEqual(planDir(rule("/r", "*", false), "/r", listing).subdirs, []);
});

Deno.test("hasSqliteMagic: the 16-byte magic, nothing shorter", () => {
  assert.ok(hasSqliteMagic(HEADER));
  assert.ok(!hasSqliteMagic(HEADER.subarray(0, 15)));
  assert.ok(!hasSqliteMagic(new TextEncoder().encode("SQLite format 4\0")));
});

Deno.test("findDatabases: real tree; problems reported with their path, the rest found", async () => {
  await using tmp = await tempDir("discover");
  const dir = tmp.path;
  const write = (p: string, b: Uint8Array) => Deno.writeFile(join(dir, p), b);
  await Deno.mkdir(join(dir, "x/y"), { recursive: true });
  await Deno.mkdir(join(dir, ".a.db-litestream"));
  await write("a.db", HEADER);
  await write("a.db-wal", HEADER);
  await write("empty.db", new Uint8Array());
  await write("text.db", new TextEncoder().encode("hello, not a database"));
  await write("x/y/deep.db", HEADER);
  await write(".a.db-litestream/inner.db", HEADER);
  const { dbs, problems } = await findDatabases(rule(dir));
  assert.deepEqual(dbs, [join(dir, "a.db"), join(dir, "x/y/deep.db")]);
  assert.deepEqual(problems, []);
  const flat = await findDatabases(rule(dir, "*.db", false));
  assert.deepEqual(flat.dbs, [join(dir, "a.db")]);
  // A known database is taken as it is, not opened.
  const known = await findDatabases(rule(dir), (p) => p.endsWith("text.db"));
  assert.ok(known.dbs.includes(join(dir, "text.db")));
  if (Deno.uid() !== 0) {
    await Deno.chmod(join(dir, "x"), 0);
    try {
      const r = await findDatabases(rule(dir));
      assert.deepEqual(r.dbs, [join(dir, "a.db")]);
      assert.equal(r.problems.length, 1);
      assert.equal(r.problems[0].path, join(dir, "x"));
    } finally {
      await Deno.chmod(join(dir, "x"), 0o755);
    }
  }
  await assert.rejects(() => findDatabases(rule(join(dir, "missing"))), Deno.errors.NotFound);
});

Deno.test("beginsWithSqliteHeader: a file this process holds SQLite's locks on is a database, never opened", async () => {
  await using dir = await tempDir();
  const moved = join(dir.path, "moved.db");
  // Not SQLite content: only the held-file note can make it a database, so nothing read it.
  await Deno.writeTextFile(moved, "not read");
  using file = await Deno.open(moved, { read: true });
  assert.equal(await beginsWithSqliteHeader(moved), false);
  const unhold = holdFile(file);
  try {
    assert.equal(await beginsWithSqliteHeader(moved), true);
  } finally {
    unhold();
  }
});
