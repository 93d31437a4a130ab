/**
 * Checksum records let a replica be validated without its primary: they are
 * written after each snapshot and each validated position, ignored by
 * v0.3.13, and a tampered record is reported naming it. Also
 * `restore -integrity-check`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../support/poll.ts";
import { describeResult, runCommand, runLitestream } from "../support/cli.ts";
import { litestreamV0313 } from "../support/litestream_v0313.ts";
import { sqlite } from "../support/sqlite_cli.ts";

async function replicatedOnce(dir: string): Promise<{ db: string; replica: string; url: string }> {
  const db = join(dir, "app.db");
  const replica = join(dir, "replica");
  await sqlite(db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);");
  await sqlite(db, "INSERT INTO t(v) SELECT randomblob(500) FROM generate_series(1, 200);");
  const cfg = join(dir, "litestream.yml");
  await Deno.writeTextFile(cfg, `dbs:\n  - path: ${db}\n    replicas:\n      - path: ${replica}\n`);
  // No replicator runs: validate syncs in-process, takes the first snapshot and records checksums.
  const v = await runLitestream(["validate", "-config", cfg, db]);
  assert.equal(v.code, 0, describeResult(v));
  return { db, replica, url: `file://${replica}` };
}

async function recordFiles(replica: string): Promise<string[]> {
  const out: string[] = [];
  for await (const g of Deno.readDir(join(replica, "generations"))) {
    for await (const f of Deno.readDir(join(replica, "generations", g.name, "checksums"))) {
      out.push(join(replica, "generations", g.name, "checksums", f.name));
    }
  }
  return out;
}

Deno.test("records: written, checked by validate REPLICA_URL, ignored by v0.3.13, tampering named", async () => {
  await using dir = await tempDir();
  const { replica, url } = await replicatedOnce(dir.path);
  const records = await recordFiles(replica);
  assert.ok(records.length >= 1, "at least one checksum record");

  const ok = await runLitestream(["validate", "-json", url]);
  assert.equal(ok.code, 0, describeResult(ok));
  const rows = JSON.parse(ok.out) as { records: number | string; status: string }[];
  assert.ok(
    rows.every((r) => typeof r.records === "number" && r.records >= 1 && r.status === "ok"),
    ok.out,
  );

  // v0.3.13 lists and restores the replica as if the records were not there.
  const bin = await litestreamV0313();
  const v0313 = await runCommand(bin, ["restore", "-o", join(dir.path, "v.db"), url]);
  assert.equal(v0313.code, 0, describeResult(v0313));
  const ours = await runLitestream(["restore", "-o", join(dir.path, "o.db"), url]);
  assert.equal(ours.code, 0, describeResult(ours));
  assert.deepEqual(
    await Deno.readFile(join(dir.path, "o.db")),
    await Deno.readFile(join(dir.path, "v.db")),
  );

  const record = JSON.parse(await Deno.readTextFile(records[0]));
  record.sha256 = record.sha256.replace(/^./, (c: string) => c === "0" ? "1" : "0");
  await Deno.writeTextFile(records[0], JSON.stringify(record));
  const bad = await runLitestream(["validate", url]);
  assert.equal(bad.code, 1, describeResult(bad));
  assert.ok(bad.out.includes(records[0]), `the tampered record is named:\n${bad.out}`);
});

Deno.test("records: a replica without records still validates, and says none were found", async () => {
  await using dir = await tempDir();
  const { replica, url } = await replicatedOnce(dir.path);
  for (const r of await recordFiles(replica)) await Deno.remove(r);
  const r = await runLitestream(["validate", url]);
  assert.equal(r.code, 0, describeResult(r));
  assert.match(r.out, /none found/);
});

Deno.test("restore -integrity-check quick|full checks the result before it is put in place", async () => {
  await using dir = await tempDir();
  const { url } = await replicatedOnce(dir.path);
  for (const mode of ["quick", "full"]) {
    const out = join(dir.path, `${mode}.db`);
    const r = await runLitestream(["restore", "-integrity-check", mode, "-o", out, url]);
    assert.equal(r.code, 0, describeResult(r));
    assert.match(r.err, new RegExp(`integrity check passed mode=${mode}`));
    assert.equal(await sqlite(out, "SELECT count(*) FROM t;"), "200");
  }
  const listing = [...Deno.readDirSync(dir.path)].map((e) => e.name).filter((n) =>
    /quick|full/.test(n)
  ).sort();
  assert.deepEqual(listing, ["full.db", "quick.db"], "no -wal, -shm or temporary files are left");

  const bad = await runLitestream([
    "restore",
    "-integrity-check",
    "fast",
    "-o",
    join(dir.path, "x.db"),
    url,
  ]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /-integrity-check: use quick or full/);
  const stdout = await runLitestream(["restore", "-integrity-check", "quick", "-o", "-", url]);
  assert.equal(stdout.code, 1);
  assert.match(stdout.err, /needs a file output/);
});
