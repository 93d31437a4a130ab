/**
 * Directory replication (issue 10), with real processes and files: a `dir` entry with
 * `recursive` and `watch` while databases are created (new subdirectories, `VACUUM INTO`,
 * renamed in), written by separate `sqlite3` writers, deleted and replaced; every replica
 * restores (ours and v0.3.13) to exactly its database's content, deleted ones keep theirs, and
 * no database's meta directory or replica holds another's generation. Then several hundred
 * databases in one process with writers on a random subset, and bad input.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { tempDir, waitFor } from "../support/poll.ts";
import { createWriterTable, sqlite, Writer } from "../support/sqlite_cli.ts";
import {
  describeResult,
  runLitestream,
  startReplicate,
  stopOk,
} from "../support/replicate_process.ts";
import { restoreWithV0313 } from "../support/litestream_v0313.ts";
import { dbDigest, restoreFileReplica } from "../support/db_digest.ts";
import { readDirOrEmpty } from "../../lib/os/fs.ts";

/** A config with one `dir` entry (fast intervals) and one file replica under `replicas`. */
function dirConfig(dir: string, replicas: string, keys: Record<string, string | boolean>): string {
  const extra = Object.entries(keys).map(([k, v]) => `    ${k}: ${v}\n`).join("");
  return `logging:\n  level: info\ndbs:\n  - dir: ${dir}\n    pattern: "*.db"\n${extra}` +
    `    monitor-interval: 100ms\n    checkpoint-interval: 1s\n` +
    `    min-checkpoint-page-count: 20\n    replicas:\n      - path: ${replicas}\n` +
    `        sync-interval: 100ms\n`;
}

/** A database with a marker table naming it, so that cross-talk shows in its content. */
async function createMarked(path: string, name: string): Promise<void> {
  await sqlite(
    path,
    `CREATE TABLE IF NOT EXISTS who (name TEXT); INSERT INTO who VALUES ('${name}');`,
  );
}

/** Generations in a directory's `generations/` (a meta directory or a file replica). */
async function generationsIn(root: string): Promise<string[]> {
  return (await readDirOrEmpty(join(root, "generations"))).map((e) => e.name).sort();
}

/** Polls our restore of `replica` until it holds `digest`; returns the restored path. */
async function waitForDigest(replica: string, digest: string, out: string): Promise<void> {
  let last = "";
  await waitFor(
    `a restore of ${replica} equal to its database`,
    async () => {
      await Deno.remove(out).catch(() => {});
      try {
        await restoreFileReplica(replica, out);
        last = await dbDigest(out);
      } catch (err) {
        last = (err as Error).message;
      }
      return last === digest;
    },
    60_000,
    200,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}; last: ${last}`);
  });
}

Deno.test("dir replication: recursive + watch while databases are created, written, deleted and replaced", async () => {
  await using tmp = await tempDir("dir-repl-");
  const data = join(tmp.path, "data");
  const bk = join(tmp.path, "bk");
  const outside = join(tmp.path, "outside");
  await Deno.mkdir(join(data, "sub"), { recursive: true });
  await Deno.mkdir(outside);
  // Present at start-up; also a file that is not a database and one matching no pattern.
  for (const name of ["a.db", "sub/b.db", "g.db", "h.db"]) {
    await createWriterTable(join(data, name));
    await createMarked(join(data, name), name);
  }
  await Deno.writeTextFile(join(data, "notes.db"), "not a database, though named like one");
  await Deno.writeTextFile(join(data, "readme.txt"), "ignored");
  const cfg = join(tmp.path, "litestream.yml");
  await Deno.writeTextFile(cfg, dirConfig(data, bk, { recursive: true, watch: true }));
  await using rep = startReplicate(["-config", cfg], { logPath: join(tmp.path, "replicate.log") });
  await rep.waitForLog(/replicating directory.*databases=4/, { timeoutMs: 30_000 });

  const writers = new Map<string, Writer>();
  const startWriter = async (name: string, table = "t") => {
    writers.set(name, await Writer.start(join(data, name), { table, blobSize: 64, pauseMs: 30 }));
  };
  await startWriter("a.db");
  await startWriter("sub/b.db");
  // New while running: beside the others, and in new nested subdirectories.
  await createMarked(join(data, "c.db"), "c.db");
  await startWriter("c.db");
  await Deno.mkdir(join(data, "new/deeper"), { recursive: true });
  await createMarked(join(data, "new/deeper/d.db"), "new/deeper/d.db");
  await startWriter("new/deeper/d.db");
  // VACUUM INTO from a database being written, and one built elsewhere and renamed in.
  await sqlite(join(data, "a.db"), `VACUUM INTO '${join(data, "e.db")}';`);
  await createMarked(join(outside, "f.db"), "new/f.db");
  await Deno.rename(join(outside, "f.db"), join(data, "new/f.db"));
  for (const name of ["c.db", "new/deeper/d.db", "e.db", "new/f.db"]) {
    await rep.waitForLog(new RegExp(`snapshot written" db=${join(data, name)} `), {
      timeoutMs: 30_000,
    });
  }

  // Deleted: its replica, caught up first, stays.
  const gDigest = await dbDigest(join(data, "g.db"));
  await waitForDigest(join(bk, "g.db"), gDigest, join(tmp.path, "g.check"));
  for (const s of ["", "-wal", "-shm"]) await Deno.remove(join(data, `g.db${s}`));
  await rep.waitForLog(new RegExp(`database deleted.*db=${join(data, "g.db")}`), {
    timeoutMs: 30_000,
  });

  // Replaced by rename (no WAL left beside it), then written: the existing "replaced" case.
  await sqlite(
    join(outside, "h2.db"),
    "PRAGMA journal_mode=WAL; CREATE TABLE who (name TEXT); INSERT INTO who VALUES ('h.db v2');",
  );
  await Deno.rename(join(outside, "h2.db"), join(data, "h.db"));
  for (const s of ["-wal", "-shm"]) await Deno.remove(join(data, `h.db${s}`)).catch(() => {});
  await startWriter("h.db", "u");

  await waitFor(
    "every writer past 40 rows",
    () => [...writers.values()].every((w) => w.lastId >= 40),
    30_000,
  );
  for (const w of writers.values()) await w.stop();

  const live = ["a.db", "sub/b.db", "c.db", "new/deeper/d.db", "e.db", "new/f.db", "h.db"];
  const digests = new Map<string, string>();
  for (const name of live) digests.set(name, await dbDigest(join(data, name)));
  digests.set("g.db", gDigest);
  for (const [name, digest] of digests) {
    await waitForDigest(
      join(bk, name),
      digest,
      join(tmp.path, `${name.replaceAll("/", "_")}.ours`),
    );
  }
  await stopOk(rep);

  // Config mode: the path names the replica, for a database that no longer exists too.
  for (const name of ["g.db", "new/deeper/d.db"]) {
    const out = join(tmp.path, `${name.replaceAll("/", "_")}.cli`);
    const r = await runLitestream(["restore", "-config", cfg, "-o", out, join(data, name)]);
    assert.equal(r.code, 0, describeResult(r));
    assert.equal(await dbDigest(out), digests.get(name), `${name} restored by the CLI`);
  }
  // v0.3.13 restores every replica to the same content.
  for (const [name, digest] of digests) {
    const out = await restoreWithV0313(
      join(tmp.path, "v0313", name),
      [],
      `file://${join(bk, name)}`,
    );
    assert.equal(await dbDigest(out), digest, `${name} restored by v0.3.13`);
  }
  // No database's meta directory or replica holds another's generation.
  const seen = new Map<string, string>();
  for (const name of [...live, "g.db"]) {
    const meta = join(data, name, "..", `.${name.split("/").at(-1)}-litestream`);
    const gens = await generationsIn(join(bk, name));
    assert.ok(gens.length > 0, `${name}: replica has a generation`);
    for (const g of [...gens, ...await generationsIn(meta)]) {
      assert.equal(seen.get(g) ?? name, name, `generation ${g} in ${name} and ${seen.get(g)}`);
      seen.set(g, name);
    }
  }
  const log = await rep.log();
  assert.doesNotMatch(log, /not replicated|cannot read|sync error/);
  assert.ok(!log.includes(join(data, "notes.db")), "a file that is not a database is left alone");
});

Deno.test("dir replication: several hundred databases in one process, writers on a random subset", async () => {
  await using tmp = await tempDir("dir-many-");
  const data = join(tmp.path, "data");
  const bk = join(tmp.path, "bk");
  const N = 300;
  const names = Array.from({ length: N }, (_, i) => `t${String(i).padStart(4, "0")}.db`);
  for (const [i, name] of names.entries()) {
    await Deno.mkdir(join(data, `s${i % 10}`), { recursive: true });
    const db = new DatabaseSync(join(data, `s${i % 10}`, name));
    db.exec(
      `PRAGMA journal_mode=WAL; CREATE TABLE who (name TEXT); INSERT INTO who VALUES ('${name}');` +
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);",
    );
    db.close();
  }
  const paths = names.map((name, i) => join(data, `s${i % 10}`, name));
  const cfg = join(tmp.path, "litestream.yml");
  await Deno.writeTextFile(cfg, dirConfig(data, bk, { recursive: true }));
  await using rep = startReplicate(["-config", cfg], { logPath: join(tmp.path, "replicate.log") });
  await waitFor(
    `${N} snapshots`,
    async () => {
      return ((await rep.log()).match(/snapshot written/g) ?? []).length >= N;
    },
    120_000,
    500,
  );

  // Writers on a random subset, then one commit to every database (fan-out).
  const subset = [...paths].sort(() => Math.random() - 0.5).slice(0, 8);
  const writers = await Promise.all(
    subset.map((p) => Writer.start(p, { blobSize: 64, pauseMs: 50 })),
  );
  await waitFor("writers past 20 rows", () => writers.every((w) => w.lastId >= 20), 30_000);
  for (const w of writers) await w.stop();
  for (const p of paths) {
    const db = new DatabaseSync(p);
    db.exec("PRAGMA busy_timeout = 5000; INSERT INTO who VALUES ('fan-out');");
    db.close();
  }
  const started = performance.now();
  for (const [i, p] of paths.entries()) {
    const rel = `s${i % 10}/${names[i]}`;
    await waitForDigest(join(bk, rel), await dbDigest(p), join(tmp.path, "check.db"));
  }
  console.log(
    `  ${N} databases: every replica equal to its database ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s after the fan-out commit`,
  );
  await stopOk(rep);
  for (const i of [0, 137, N - 1]) {
    const rel = `s${i % 10}/${names[i]}`;
    const out = await restoreWithV0313(join(tmp.path, "v0313", rel), [], `file://${join(bk, rel)}`);
    assert.equal(await dbDigest(out), await dbDigest(paths[i]), `${rel} restored by v0.3.13`);
  }
});

Deno.test("dir replication: bad input is a one-line error naming the key or path", async (t) => {
  await using tmp = await tempDir("dir-bad-");
  const data = join(tmp.path, "data");
  await Deno.mkdir(data);
  const run = async (yaml: string) => {
    const cfg = join(tmp.path, `c${crypto.randomUUID().slice(0, 6)}.yml`);
    await Deno.writeTextFile(cfg, yaml);
    return await runLitestream(["replicate", "-config", cfg], { timeoutMs: 60_000 });
  };
  const r = `    replicas:\n      - path: ${tmp.path}/bk\n`;
  const cases: [string, string, RegExp][] = [
    [
      "path and dir",
      `dbs:\n  - path: ${data}/a.db\n    dir: ${data}\n    pattern: "*"\n${r}`,
      /dbs\[0\]\.dir: cannot specify both path and dir/,
    ],
    ["dir without pattern", `dbs:\n  - dir: ${data}\n${r}`, /dbs\[0\]\.pattern: required with dir/],
    [
      "watch without dir",
      `dbs:\n  - path: ${data}/a.db\n    watch: true\n${r}`,
      /dbs\[0\]\.watch: requires dir/,
    ],
    [
      "meta-dir without dir",
      `dbs:\n  - path: ${data}/a.db\n    meta-dir: /m\n${r}`,
      /dbs\[0\]\.meta-dir: requires dir/,
    ],
    [
      "meta-path with meta-dir",
      `dbs:\n  - dir: ${data}\n    pattern: "*"\n    meta-path: /m\n    meta-dir: /n\n${r}`,
      /dbs\[0\]\.meta-path: cannot be used with dir/,
    ],
    [
      "dir that does not exist",
      `dbs:\n  - dir: ${data}/nope\n    pattern: "*.db"\n${r}`,
      /dbs\[0\]\.dir: cannot use .*nope/,
    ],
    [
      "no database without watch",
      `dbs:\n  - dir: ${data}\n    pattern: "*.db"\n${r}`,
      /dbs\[0\]\.dir: no database matching "\*\.db"/,
    ],
  ];
  for (const [what, yaml, want] of cases) {
    await t.step(what, async () => {
      const res = await run(yaml);
      assert.equal(res.code, 1, describeResult(res));
      const lines = res.err.trim().split("\n");
      assert.match(lines.at(-1)!, want, describeResult(res));
    });
  }
  await t.step("an unreadable subdirectory is logged; the rest replicated", async () => {
    if (Deno.uid() === 0) {
      console.log("  skipped: running as root, which reads any directory");
      return;
    }
    await createWriterTable(join(data, "ok.db"));
    await Deno.mkdir(join(data, "locked"));
    await createWriterTable(join(data, "locked", "x.db"));
    await Deno.chmod(join(data, "locked"), 0);
    try {
      const cfg = join(tmp.path, "locked.yml");
      await Deno.writeTextFile(cfg, dirConfig(data, join(tmp.path, "bk"), { recursive: true }));
      await using rep = startReplicate(["-config", cfg], { logPath: join(tmp.path, "locked.log") });
      await rep.waitForLog(/cannot read.*locked/, { timeoutMs: 30_000 });
      await rep.waitForLog(/snapshot written" db=\S*ok\.db /, { timeoutMs: 30_000 });
      await stopOk(rep);
    } finally {
      await Deno.chmod(join(data, "locked"), 0o755);
    }
  });
});
