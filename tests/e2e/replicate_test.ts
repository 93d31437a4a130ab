/**
 * `litestream replicate` end to end, against real parts only: our replicate runs as a
 * subprocess (`deno run main.ts replicate`), applications are separate `sqlite3` processes
 * (writers committing numbered rows, checkpointers, a process that deletes the WAL or replaces
 * the database), and every check restores with our `restore` command and inspects the result
 * with `sqlite3` (integrity check, row counts, content hashes, bytes).
 *
 * Waiting is always polling with a deadline (never a bare sleep). Monitor and sync intervals
 * are 100 ms and checkpoint thresholds are small so WAL indexes advance within seconds.
 */

import assert from "node:assert/strict";
import { tempDir, waitFor } from "../support/poll.ts";
import {
  createWriterTable,
  integrityCheck,
  sqlite,
  stopping,
  Writer,
} from "../support/sqlite_cli.ts";
import { listReplicaObjects } from "../support/fixtures.ts";
import { configYaml, type DbYaml } from "../support/config_yaml.ts";
import { fileHash } from "../support/hash.ts";
import {
  describeResult,
  newGenerations,
  type ReplicateProcess,
  restoreOk,
  runLitestream,
  SqliteShell,
  startReplicate,
  stopOk,
  waitForRestore,
} from "../support/replicate_process.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

/** Writes `dbs` as `<dir>/litestream.yml` and starts replicate with it; log in `<dir>/replicate.log`. */
async function startWithConfig(dir: string, dbs: DbYaml[]): Promise<ReplicateProcess> {
  const cfg = `${dir}/litestream.yml`;
  await Deno.writeTextFile(cfg, configYaml(dbs));
  return startReplicate(["-config", cfg], { logPath: `${dir}/replicate.log` });
}

/** `file://` URL of an absolute directory. */
const url = (path: string) => `file://${path}`;

/** Distinct (generation, index) pairs of WAL segments on a file replica. */
async function walIndexes(replica: string): Promise<Set<string>> {
  const objects = await listReplicaObjects(replica);
  return new Set(objects.filter((o) => o.kind === "wal").map((o) => `${o.generation}/${o.index}`));
}

/** Snapshots on a file replica, as `generation/index`. */
async function snapshotsOf(replica: string): Promise<string[]> {
  return (await listReplicaObjects(replica)).filter((o) => o.kind === "snapshot").map((o) =>
    `${o.generation}/${o.index}`
  );
}

/** Hash of a query's rows (the sqlite3 shell's SHA3 extension): content comparison. */
function contentHash(db: string, query: string): Promise<string> {
  return sqlite(db, `SELECT hex(sha3_query('${query.replaceAll("'", "''")}'));`);
}

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

/** Pages (1-based) that differ between two database files of equal page size. */
function differingPages(a: Uint8Array, b: Uint8Array, pageSize: number): number[] {
  const pages: number[] = [];
  const n = Math.max(a.length, b.length) / pageSize;
  for (let p = 0; p < n; p++) {
    const x = a.subarray(p * pageSize, (p + 1) * pageSize);
    const y = b.subarray(p * pageSize, (p + 1) * pageSize);
    if (x.length !== y.length || x.some((v, i) => v !== y[i])) pages.push(p + 1);
  }
  return pages;
}

/** Lines of the log that report errors or warnings, for messages. */
function problems(log: string): string {
  return log.split("\n").filter((l) => /level=(ERROR|WARN)| (ERROR|WARN) /.test(l)).join("\n");
}

// ---------------------------------------------------------------------------------------------
// 1. One writer, checkpoints advancing the index; restore equals the source byte for byte.

Deno.test("replicate: a writer process with checkpoints; restore equals the source byte for byte", async () => {
  await using dir = await tempDir("replicate-1-");
  const db = `${dir.path}/app.db`;
  const replica = `${dir.path}/replica`;
  await createWriterTable(db);
  await using rep = await startWithConfig(dir.path, [{ path: db, replicas: [{ path: replica }] }]);
  await rep.waitForLog(/snapshot written/);

  const writer = await Writer.start(db);
  await using _w = stopping(writer);
  await waitFor(
    "the replica to hold at least 5 WAL indexes",
    async () => (await walIndexes(replica)).size >= 5 && writer.lastId >= 200,
    20_000,
  );
  const lastId = await writer.stop();
  const { path: restored, ms } = await waitForRestore(dir.path, [url(replica)], [
    { table: "t", lastId },
  ]);
  console.log(
    `  case 1: ${lastId} rows, ${(await walIndexes(replica)).size} indexes; ` +
      `restore caught up ${ms.toFixed(0)} ms after the last commit`,
  );
  const stopMs = await stopOk(rep);
  console.log(`  case 1: SIGTERM to exit ${stopMs.toFixed(0)} ms`);

  const log = await rep.log();
  const gens = newGenerations(log);
  assert.deepEqual(gens.map((g) => g.reason), ["no generation exists"], `generations: ${log}`);
  assert.equal(problems(log), "", "no warnings or errors");

  // The final sync on shutdown shipped everything: a restore after the stop equals the source.
  const final = { path: await restoreOk(dir.path, [url(replica)]) };
  await sqlite(db, "PRAGMA wal_checkpoint(TRUNCATE);");
  await sqlite(final.path, "PRAGMA wal_checkpoint(TRUNCATE);");
  assert.equal(await integrityCheck(final.path), "ok");
  assert.equal(await integrityCheck(restored), "ok");
  const q = "SELECT id, v FROM t ORDER BY id";
  assert.equal(await contentHash(final.path, q), await contentHash(db, q), "table t content");
  assert.equal(
    await sqlite(final.path, "SELECT * FROM _litestream_seq"),
    await sqlite(db, "SELECT * FROM _litestream_seq"),
    "Litestream's own last write (_litestream_seq) is replicated too",
  );
  // Byte-for-byte: the restored file is the source's page images (both fully checkpointed, both
  // in WAL mode); no page may differ, not even the header.
  const [a, b] = [await Deno.readFile(db), await Deno.readFile(final.path)];
  const pageSize = Number(await sqlite(db, "PRAGMA page_size"));
  assert.deepEqual(differingPages(a, b, pageSize), [], `sizes ${a.length} vs ${b.length}`);
});

// ---------------------------------------------------------------------------------------------
// 2. Two writer processes at once.

Deno.test("replicate: two writer processes on different tables; every row of both restored", async () => {
  await using dir = await tempDir("replicate-2-");
  const db = `${dir.path}/app.db`;
  const replica = `${dir.path}/replica`;
  await createWriterTable(db, "a");
  await createWriterTable(db, "b");
  await using rep = await startWithConfig(dir.path, [{ path: db, replicas: [{ path: replica }] }]);
  await rep.waitForLog(/snapshot written/);

  const wa = await Writer.start(db, { table: "a", pauseMs: 10 });
  await using _a = stopping(wa);
  const wb = await Writer.start(db, { table: "b", pauseMs: 10, rowsPerTransaction: 5 });
  await using _b = stopping(wb);
  await waitFor(
    "both writers to commit and the index to advance",
    async () => wa.lastId >= 150 && wb.lastId >= 300 && (await walIndexes(replica)).size >= 4,
    20_000,
  );
  const [lastA, lastB] = [await wa.stop(), await wb.stop()];
  const { ms } = await waitForRestore(dir.path, [url(replica)], [
    { table: "a", lastId: lastA },
    { table: "b", lastId: lastB },
  ]);
  console.log(`  case 2: a=${lastA} b=${lastB} rows; caught up ${ms.toFixed(0)} ms after`);
  await stopOk(rep);
  const log = await rep.log();
  assert.deepEqual(newGenerations(log).map((g) => g.reason), ["no generation exists"]);
  assert.equal(problems(log), "", "no warnings or errors");
});

// ---------------------------------------------------------------------------------------------
// 3. The application checkpoints on its own.

/** One application: a writer and a checkpointer process on one database. */
interface CheckpointingApp {
  db: string;
  replica: string;
  writer: Writer;
  shell: SqliteShell;
  results: Record<"PASSIVE" | "RESTART" | "TRUNCATE", string[]>;
  loop: Promise<void>;
}

Deno.test("replicate: the application checkpoints (PASSIVE/RESTART/TRUNCATE) in a loop while writing", async () => {
  await using dir = await tempDir("replicate-3-");
  // Three databases at once in one replicate: the hazard is a race, three raise its odds.
  const names = ["a", "b", "c"];
  for (const n of names) await createWriterTable(`${dir.path}/${n}.db`);
  // Frequent checkpoints of our own: each one briefly releases the read transaction.
  await using rep = await startWithConfig(
    dir.path,
    names.map((n) => ({
      path: `${dir.path}/${n}.db`,
      replicas: [{ path: `${dir.path}/${n}-replica` }],
      extra: { "min-checkpoint-page-count": 8 },
    })),
  );
  await waitFor("a snapshot of every database", async () => {
    for (const n of names) {
      if ((await snapshotsOf(`${dir.path}/${n}-replica`)).length === 0) return false;
    }
    return true;
  });

  let stop = false;
  const apps: CheckpointingApp[] = [];
  try {
    for (const n of names) {
      const db = `${dir.path}/${n}.db`;
      const writer = await Writer.start(db, { pauseMs: 5 });
      const shell = new SqliteShell(db, 50);
      const results: CheckpointingApp["results"] = { PASSIVE: [], RESTART: [], TRUNCATE: [] };
      const loop = (async () => {
        for (let i = 0; !stop; i++) {
          const mode = (["PASSIVE", "RESTART", "TRUNCATE"] as const)[i % 3];
          results[mode].push(...await shell.run(`PRAGMA wal_checkpoint(${mode});`));
          // One checkpoint per commit: back to back, RESTART and TRUNCATE (which hold the
          // write lock while their busy handler waits for replicate's read transaction)
          // would starve the writer, as they do with v0.3.13.
          const seen = writer.transactions;
          await waitFor("another commit", () => stop || writer.transactions > seen, 10_000, 2);
        }
      })();
      apps.push({ db, replica: `${dir.path}/${n}-replica`, writer, shell, results, loop });
    }
    await waitFor(
      "rows and application checkpoints",
      () => apps.every((a) => a.writer.lastId >= 600 && a.results.TRUNCATE.length >= 20),
      30_000,
    ).catch(async (err) => {
      const state = apps.map((a) =>
        `${a.db}: writer at ${a.writer.lastId}, app checkpoints ${a.results.TRUNCATE.length * 3}`
      );
      const tail = (await rep.log()).split("\n").filter((l) => !/wal segment written/.test(l));
      throw new Error(`${err.message}\n${state.join("\n")}\n${tail.slice(-12).join("\n")}`, {
        cause: err,
      });
    });
  } finally {
    stop = true;
    for (const a of apps) {
      await a.loop.catch(() => {});
      await a.shell.close();
    }
  }
  const lastIds: number[] = [];
  for (const a of apps) lastIds.push(await a.writer.stop());
  const outcomes = await Promise.all(
    apps.map((a, i) =>
      waitForRestore(dir.path, [url(a.replica)], [{ table: "t", lastId: lastIds[i] }], 10_000)
        .then((r) => `ok, caught up in ${r.ms.toFixed(0)} ms`, (e) => `FAILED: ${e.message}`)
    ),
  );
  await stopOk(rep);

  const log = await rep.log();
  const busy = (a: CheckpointingApp, m: keyof CheckpointingApp["results"]) =>
    a.results[m].filter((r) => r.startsWith("1|")).length;
  for (const [i, a] of apps.entries()) {
    const ours = log.split("\n").filter((l) =>
      l.includes(`db=${a.db} `) && /msg=checkpoint/.test(l)
    );
    console.log(
      `  case 3: ${a.db}: ${lastIds[i]} rows; app checkpoints: ` +
        Object.keys(a.results).map((m) => {
          const k = m as keyof CheckpointingApp["results"];
          return `${m} ${a.results[k].length} (busy ${busy(a, k)})`;
        }).join(", ") +
        `; ours: ${ours.length} (busy ${ours.filter((l) => /result=1,/.test(l)).length}); ` +
        `indexes ${(await walIndexes(a.replica)).size}; restore ${outcomes[i].split("\n")[0]}`,
    );
  }
  const gens = newGenerations(log);
  console.log(`  case 3: generations: ${JSON.stringify(gens.map((g) => g.reason))}`);
  // The application's checkpoints, let through or refused, never cost a new generation.
  assert.deepEqual(gens.map((g) => g.reason), names.map(() => "no generation exists"));
  assert.deepEqual(
    outcomes.filter((o) => !o.startsWith("ok")),
    [],
    "every replica restores all rows",
  );
  // Our own `_litestream_seq` write may time out (busy) while the application's RESTART and
  // TRUNCATE checkpoints hold the write lock; that is logged and retried, not a failure. Any
  // other error is.
  const errors = log.split("\n").filter((l) => /level=ERROR/.test(l));
  console.log(`  case 3: ${errors.length} sync errors logged`);
  assert.deepEqual(errors.filter((l) => !/database is locked/.test(l)), []);
});

// ---------------------------------------------------------------------------------------------
// 4. The application deletes the WAL while replicate is stopped.

Deno.test("replicate: WAL checkpointed away and deleted while stopped; new generation, all rows", async () => {
  await using dir = await tempDir("replicate-4-");
  const db = `${dir.path}/app.db`;
  const replica = `${dir.path}/replica`;
  await createWriterTable(db);
  const dbs = [{ path: db, replicas: [{ path: replica }] }];
  const rep1 = await startWithConfig(dir.path, dbs);
  await rep1.waitForLog(/snapshot written/);
  const w1 = await Writer.start(db);
  await waitFor("rows", () => w1.lastId >= 100);
  const last1 = await w1.stop();
  await waitForRestore(dir.path, [url(replica)], [{ table: "t", lastId: last1 }]);
  await stopOk(rep1);
  const firstGen = newGenerations(await rep1.log())[0].generation;
  assert.ok(await exists(`${db}-wal`), "replicate leaves the WAL in place (persist WAL)");

  // The application checkpoints and, as the last connection to close, deletes the WAL.
  assert.match(await sqlite(db, "PRAGMA wal_checkpoint(TRUNCATE);"), /^0\|0\|0$/);
  assert.ok(!await exists(`${db}-wal`), "sqlite3 closing last removed the WAL");
  const w2 = await Writer.start(db);
  await waitFor("more rows", () => w2.lastId >= last1 + 60);
  const last2 = await w2.stop();
  assert.ok(!await exists(`${db}-wal`), "the WAL is gone again");

  const mark = await rep1.mark();
  await using rep2 = startReplicate(["-config", `${dir.path}/litestream.yml`], {
    logPath: rep1.logPath,
  });
  const m = await rep2.waitForLog(/sync: new generation.*/, { after: mark });
  const restartLog = (await rep2.log()).slice(mark);
  const gen = newGenerations(restartLog)[0];
  assert.notEqual(gen.generation, firstGen);
  assert.match(
    restartLog,
    /cannot determine last wal position, clearing generation.*reason="?primary wal header missing/,
    m[0],
  );
  const { ms } = await waitForRestore(dir.path, [url(replica)], [{ table: "t", lastId: last2 }]);
  console.log(
    `  case 4: new generation reason=${JSON.stringify(gen.reason)}; restore ${ms.toFixed(0)} ms`,
  );
  await stopOk(rep2);
});

// ---------------------------------------------------------------------------------------------
// 5. The database file is replaced (rename) under a running replicate.

Deno.test("replicate: database replaced by rename while running; restore is one coherent database", async () => {
  await using dir = await tempDir("replicate-5-");
  const db = `${dir.path}/app.db`;
  const replica = `${dir.path}/replica`;
  await createWriterTable(db);
  await using rep = await startWithConfig(dir.path, [{ path: db, replicas: [{ path: replica }] }]);
  await rep.waitForLog(/snapshot written/);
  const w1 = await Writer.start(db);
  await waitFor("rows", () => w1.lastId >= 100);
  const oldLast = await w1.stop();
  await waitForRestore(dir.path, [url(replica)], [{ table: "t", lastId: oldLast }]);
  const q = "SELECT id, v FROM t ORDER BY id";
  const oldHash = await contentHash(db, q);

  // A different database: table t with other ids, built elsewhere, no WAL left beside it.
  const other = `${dir.path}/other.db`;
  await sqlite(
    other,
    "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);" +
      "WITH RECURSIVE n(i) AS (SELECT 5001 UNION ALL SELECT i+1 FROM n WHERE i < 5050) " +
      "INSERT INTO t SELECT i, randomblob(1024) FROM n;",
  );
  assert.ok(!await exists(`${other}-wal`));
  const mark = await rep.mark();
  await Deno.rename(other, db);
  await Deno.remove(`${db}-wal`).catch(() => {});
  await Deno.remove(`${db}-shm`).catch(() => {});
  const newHashBase = await contentHash(db, q);
  // The application keeps writing to the new database (table u).
  const w2 = await Writer.start(db, { table: "u" });
  await using _w2 = stopping(w2);
  await waitFor("rows in the new database", () => w2.lastId >= 100);
  // Give replicate a chance to notice: a new generation, or an error, after the replacement.
  const reaction = await rep.waitForLog(/sync: new generation.*|sync error.*/, {
    after: mark,
    timeoutMs: 10_000,
  }).then((m) => m[0], (e) => `none: ${(e as Error).message.split("\n")[0]}`);
  const newLast = await w2.stop();
  // Let the monitor see the final state of the new database before stopping.
  await waitFor("a few more monitor ticks", async () => (await rep.log()).length > mark, 5_000);
  await stopOk(rep);
  const afterLog = (await rep.log()).slice(mark);

  const r = { path: await restoreOk(dir.path, [url(replica)]) };
  const integrity = await integrityCheck(r.path);
  const tHash = await contentHash(r.path, q).catch((e) => `error: ${e.message}`);
  const uRows = await sqlite(r.path, "SELECT count(*) || '|' || coalesce(max(id),0) FROM u")
    .catch(() => "no table u");
  const state = tHash === oldHash && uRows === "no table u"
    ? "old database"
    : tHash === newHashBase && /^(\d+)\|\1$/.test(uRows)
    ? `new database (u rows ${uRows}, writer reached ${newLast})`
    : `A MIX: t matches ${
      tHash === oldHash ? "old" : tHash === newHashBase ? "new" : "neither"
    }, u: ${uRows}`;
  console.log(
    `  case 5: first reaction: ${reaction}\n  case 5: new generations after the replacement: ${
      JSON.stringify(newGenerations(afterLog))
    }\n  case 5: restored = ${state}; integrity: ${integrity.split("\n")[0]}`,
  );
  assert.equal(integrity, "ok", `restored database integrity; state: ${state}\n${afterLog}`);
  assert.ok(
    !state.startsWith("A MIX"),
    `restored ${state}\n--- log after replace ---\n${afterLog}`,
  );
  // The new database was replicated, under a new generation with a reason.
  assert.ok(
    newGenerations(afterLog).length > 0,
    `a new generation after the replacement:\n${afterLog}`,
  );
  assert.match(state, /^new database/, "the replica follows the database now at the path");
});

// ---------------------------------------------------------------------------------------------
// 6. The database does not exist yet.

Deno.test("replicate: a database created after replicate started is replicated", async () => {
  await using dir = await tempDir("replicate-6-");
  const db = `${dir.path}/later.db`;
  const replica = `${dir.path}/replica`;
  await using rep = await startWithConfig(dir.path, [{ path: db, replicas: [{ path: replica }] }]);
  await rep.waitForLog(/replicating to/);
  const mark = await rep.mark();
  // Several monitor ticks pass without the database: nothing is created at its path.
  await waitFor("3 monitor intervals", async () => {
    const st = await Deno.stat(rep.logPath);
    return Date.now() - st.mtime!.getTime() > 300;
  });
  assert.ok(!await exists(db), "replicate does not create the database");
  assert.ok(!await exists(`${dir.path}/.later.db-litestream`), "no meta dir before the database");

  const writer = await Writer.start(db);
  await using _w = stopping(writer);
  await rep.waitForLog(/initialized db/, { after: mark });
  await rep.waitForLog(/sync: new generation/, { after: mark });
  await waitFor("rows", () => writer.lastId >= 100);
  const lastId = await writer.stop();
  const { ms } = await waitForRestore(dir.path, [url(replica)], [{ table: "t", lastId }]);
  console.log(`  case 6: ${lastId} rows; caught up ${ms.toFixed(0)} ms after the last commit`);
  await stopOk(rep);
  const log = await rep.log();
  assert.doesNotMatch(log, /sync error|replica sync failed/, problems(log));
});

// ---------------------------------------------------------------------------------------------
// 7. A rollback-journal database is switched to WAL (URL mode: default 1 s intervals, stderr log).

Deno.test("replicate: a DELETE-journal database is switched to WAL and replicated (URL mode)", async () => {
  await using dir = await tempDir("replicate-7-");
  const db = `${dir.path}/rollback.db`;
  const replica = `${dir.path}/replica`;
  await sqlite(
    db,
    "PRAGMA journal_mode=DELETE; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);" +
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 80) " +
      "INSERT INTO t SELECT i, randomblob(1024) FROM n;",
  );
  assert.equal(await sqlite(db, "PRAGMA journal_mode;"), "delete");
  await using rep = startReplicate([db, url(replica)], { logPath: `${dir.path}/replicate.log` });
  await rep.waitForLog(/switched database to WAL journal mode.*from="?delete/);
  assert.equal(await sqlite(db, "PRAGMA journal_mode;"), "wal");
  await waitForRestore(dir.path, [url(replica)], [{ table: "t", lastId: 80 }]);
  // And it keeps replicating in WAL mode.
  const writer = await Writer.start(db);
  await using _w = stopping(writer);
  await waitFor("rows", () => writer.lastId >= 140);
  const lastId = await writer.stop();
  const { ms } = await waitForRestore(dir.path, [url(replica)], [{ table: "t", lastId }]);
  console.log(
    `  case 7: URL mode (1 s intervals) caught up ${ms.toFixed(0)} ms after the last commit`,
  );
  await stopOk(rep);
});

// ---------------------------------------------------------------------------------------------
// 8. Several databases, two replicas of one; one replica broken and repaired.

Deno.test("replicate: a broken replica logs errors, the others go on, and it recovers once repaired", async () => {
  await using dir = await tempDir("replicate-8-");
  const db1 = `${dir.path}/one.db`;
  const db2 = `${dir.path}/two.db`;
  const [r1, r2, r3] = ["r1", "r2", "r3"].map((n) => `${dir.path}/${n}`);
  await createWriterTable(db1);
  await createWriterTable(db2);
  await using rep = await startWithConfig(dir.path, [
    { path: db1, replicas: [{ path: r1, name: "good" }, { path: r2, name: "broken" }] },
    { path: db2, replicas: [{ path: r3 }] },
  ]);
  await waitFor(
    "a snapshot in every replica",
    async () =>
      (await snapshotsOf(r1)).length > 0 && (await snapshotsOf(r2)).length > 0 &&
      (await snapshotsOf(r3)).length > 0,
  );

  const w1 = await Writer.start(db1);
  await using _w1 = stopping(w1);
  const w2 = await Writer.start(db2);
  await using _w2 = stopping(w2);
  await waitFor("rows", () => w1.lastId >= 40 && w2.lastId >= 40);
  // The broken replica's directory is replaced by a file (root ignores chmod). By renames: the
  // replicator writes into the directory all the while (a recursive remove can then fail with
  // "Directory not empty") and may create it again before the file is in place.
  const mark = await rep.mark();
  const obstacle = `${dir.path}/obstacle`;
  await Deno.writeTextFile(obstacle, "not a directory\n");
  let moved = 0;
  await waitFor("the broken replica's directory replaced by a file", async () => {
    if ((await Deno.stat(r2).catch(() => undefined))?.isDirectory) {
      await Deno.rename(r2, `${r2}.old-${moved++}`);
    }
    return await Deno.rename(obstacle, r2).then(() => true, () => false);
  });
  await rep.waitForLog(/replica sync failed.*replica=broken/, { after: mark });
  await waitFor("more rows", () => w1.lastId >= 200 && w2.lastId >= 200);
  const [last1, last2] = [await w1.stop(), await w2.stop()];

  // The healthy replicas are complete while the broken one fails.
  await waitForRestore(dir.path, [url(r1)], [{ table: "t", lastId: last1 }]);
  await waitForRestore(dir.path, [url(r3)], [{ table: "t", lastId: last2 }]);
  const errors = (await rep.log()).slice(mark).split("\n").filter((l) =>
    /replica sync failed/.test(l)
  );
  assert.ok(errors.every((l) => /replica=broken/.test(l)), errors.join("\n"));
  assert.match(errors[0], /r2/, "the error names the replica's path");

  // Repair: the obstacle goes away (the old contents are lost: the replica must recover them).
  const repaired = performance.now();
  await Deno.remove(r2);
  const { ms } = await waitForRestore(dir.path, [url(r2)], [{ table: "t", lastId: last1 }], 20_000)
    .catch(async (err) => {
      const objects = (await listReplicaObjects(r2)).map((o) =>
        `${o.kind} ${o.generation}/${o.index}/${o.offset}`
      );
      throw new Error(
        `${(err as Error).message}\nr2 holds: ${objects.join(", ")}\n--- log since repair ---\n${
          (await rep.log()).slice(mark).split("\n").slice(-15).join("\n")
        }`,
        { cause: err },
      );
    });
  console.log(
    `  case 8: ${errors.length} errors logged while broken; restorable ${
      (performance.now() - repaired).toFixed(0)
    } ms after repair (last poll ${ms.toFixed(0)} ms)`,
  );
  await stopOk(rep);
});

// ---------------------------------------------------------------------------------------------
// 9. Restart continuity.

Deno.test("replicate: restarted while the application keeps writing; the generation continues", async () => {
  await using dir = await tempDir("replicate-9-");
  const db = `${dir.path}/app.db`;
  const replica = `${dir.path}/replica`;
  await createWriterTable(db);
  const dbs = [{ path: db, replicas: [{ path: replica }] }];
  const rep1 = await startWithConfig(dir.path, dbs);
  await rep1.waitForLog(/snapshot written/);
  // The writer stays connected across the restart, as an application does; slow enough that
  // its own auto-checkpoint (1000 pages) cannot restart the WAL while replicate is down.
  const writer = await Writer.start(db, { pauseMs: 30 });
  await using _w = stopping(writer);
  await waitFor(
    "rows and an index advance",
    async () => writer.lastId >= 80 && (await walIndexes(replica)).size >= 2,
  );
  await stopOk(rep1);
  const gen1 = newGenerations(await rep1.log());
  assert.equal(gen1.length, 1);
  const snapshots = await snapshotsOf(replica);
  const stoppedAt = writer.lastId;
  await waitFor("rows written while replicate is down", () => writer.lastId >= stoppedAt + 40);

  const mark = await rep1.mark();
  await using rep2 = startReplicate(["-config", `${dir.path}/litestream.yml`], {
    logPath: rep1.logPath,
  });
  await rep2.waitForLog(/initialized db/, { after: mark });
  await waitFor("more rows after the restart", () => writer.lastId >= stoppedAt + 120);
  const lastId = await writer.stop();
  const { ms } = await waitForRestore(dir.path, [url(replica)], [{ table: "t", lastId }]);
  await stopOk(rep2);
  const restartLog = (await rep2.log()).slice(mark);
  assert.deepEqual(newGenerations(restartLog), [], `no new generation:\n${restartLog}`);
  assert.doesNotMatch(restartLog, /clearing generation/);
  const gensOnReplica = new Set((await listReplicaObjects(replica)).map((o) => o.generation));
  assert.deepEqual([...gensOnReplica], [gen1[0].generation]);
  // The restart itself took no snapshot (later checkpoints may not either: no snapshot-interval).
  assert.deepEqual(await snapshotsOf(replica), snapshots);
  console.log(`  case 9: same generation ${gen1[0].generation}; caught up in ${ms.toFixed(0)} ms`);
});

// ---------------------------------------------------------------------------------------------
// 10. Bad input: clear errors, quick non-zero exit, no damage.

Deno.test("replicate: bad input fails fast with a clear error and leaves the database untouched", async (t) => {
  await using dir = await tempDir("replicate-10-");
  const db = `${dir.path}/app.db`;
  await createWriterTable(db);
  await sqlite(db, "INSERT INTO t VALUES (1, randomblob(100)); PRAGMA wal_checkpoint(TRUNCATE);");
  const dbHash = await fileHash(db);
  const junk = `${dir.path}/junk.db`;
  await Deno.writeFile(junk, crypto.getRandomValues(new Uint8Array(8192)));
  const junkHash = await fileHash(junk);
  const dirDb = `${dir.path}/adir.db`;
  await Deno.mkdir(dirDb);
  const blocker = `${dir.path}/blocker`;
  await Deno.writeTextFile(blocker, "a file\n");

  const cfg = async (name: string, yaml: string) => {
    const p = `${dir.path}/${name}.yml`;
    await Deno.writeTextFile(p, yaml);
    return p;
  };
  const cases: { name: string; args: string[]; expect: RegExp[]; env?: Record<string, string> }[] =
    [
      {
        name: "unknown replica type",
        args: [
          "-config",
          await cfg(
            "type",
            `dbs:\n  - path: ${db}\n    replicas:\n      - type: ftp\n        path: /x\n`,
          ),
        ],
        expect: [/unknown replica type/, /ftp/, /type\.yml/],
      },
      {
        name: "invalid interval",
        args: [
          "-config",
          await cfg(
            "interval",
            `dbs:\n  - path: ${db}\n    replicas:\n      - path: ${dir.path}/r\n        sync-interval: abc\n`,
          ),
        ],
        expect: [/sync-interval/, /abc/],
      },
      {
        name: "database path is a directory",
        args: [dirDb, url(`${dir.path}/r`)],
        expect: [/adir\.db/, /directory/],
      },
      {
        name: "database file is not SQLite",
        args: [junk, url(`${dir.path}/r`)],
        expect: [/junk\.db/, /not an SQLite database/],
      },
      {
        name: "replica directory under a file",
        args: [db, url(`${blocker}/replica`)],
        expect: [/blocker\/replica/, /cannot write|not a directory/i],
      },
      {
        name: "one positional argument",
        args: [db],
        expect: [/must specify at least one replica URL/, /app\.db/],
      },
      {
        name: "URL and -config together",
        args: ["-config", `${dir.path}/type.yml`, db, url(`${dir.path}/r`)],
        expect: [/cannot specify a replica URL and the -config flag/],
      },
      {
        name: "LITESTREAM_ADMIT_CHECKPOINTS neither 0 nor 1",
        args: [db, url(`${dir.path}/r`)],
        env: { LITESTREAM_ADMIT_CHECKPOINTS: "off" },
        expect: [/LITESTREAM_ADMIT_CHECKPOINTS/, /"off"/],
      },
    ];
  const results = await Promise.all(
    cases.map((c) =>
      runLitestream(["replicate", ...c.args], { timeoutMs: 15_000, env: c.env ?? {} })
    ),
  );
  for (const [i, c] of cases.entries()) {
    await t.step(c.name, () => {
      const r = results[i];
      assert.notEqual(r.code, 0, describeResult(r));
      assert.notEqual(r.code, 137, `exits by itself, not at the deadline: ${describeResult(r)}`);
      const text = r.out + r.err;
      for (const re of c.expect) assert.match(text, re, describeResult(r));
      assert.doesNotMatch(text, /^\s+at /m, `no stack trace: ${describeResult(r)}`);
    });
  }
  console.log(
    `  case 10: exit times ${results.map((r) => r.ms.toFixed(0)).join(", ")} ms; messages:\n` +
      results.map((r, i) =>
        `    ${cases[i].name}: ${(r.err + r.out).split("\n").find((l) => /error/i.test(l))}`
      ).join("\n"),
  );
  assert.equal(await fileHash(db), dbHash, "database bytes unchanged");
  assert.equal(await fileHash(junk), junkHash, "junk file bytes unchanged");
  assert.ok(!await exists(`${dir.path}/.junk.db-litestream`), "no meta dir for the junk file");
  assert.ok(!await exists(`${dir.path}/.app.db-litestream`), "no meta dir for the database");
  assert.ok(!await exists(`${db}-wal`), "no WAL created for the database");
  assert.ok(!await exists(`${dir.path}/r`), "no replica directory was created");
  assert.deepEqual([...Deno.readDirSync(dirDb)], [], "the directory is untouched");
});

// ---------------------------------------------------------------------------------------------
// 11. An idle monitor waits on file-system events instead of ticking; commits still ship.

Deno.test("replicate: once idle the monitor waits on file-system events; every later commit ships", async () => {
  await using dir = await tempDir("replicate-11-");
  const db = `${dir.path}/app.db`;
  const replica = `${dir.path}/replica`;
  await createWriterTable(db);
  await using rep = await startWithConfig(dir.path, [{ path: db, replicas: [{ path: replica }] }]);
  const idle = /idle: waiting for file-system events/;
  await rep.waitForLog(idle);
  // The first snapshot's checksum record syncs the database itself, outside the monitor: a
  // commit it finds never wakes the monitor, which stays idle and logs nothing new.
  await rep.waitForLog(/checksum record written/);
  // Each commit lands while the monitor waits on events: from a separate process, one row at a
  // time, then an application checkpoint that restarts the WAL (frames over old ones in place).
  const commits = [
    "INSERT INTO t VALUES (1, randomblob(100));",
    "INSERT INTO t VALUES (2, randomblob(5000));",
    "PRAGMA wal_checkpoint(PASSIVE); INSERT INTO t VALUES (3, randomblob(100));",
  ];
  for (const [i, sql] of commits.entries()) {
    const mark = await rep.mark();
    await sqlite(db, sql);
    await waitForRestore(dir.path, [url(replica)], [{ table: "t", lastId: i + 1 }]);
    await rep.waitForLog(idle, { after: mark });
  }
  await stopOk(rep);
  const log = await rep.log();
  assert.equal(problems(log), "", "no warnings (no missed change) and no errors");
  assert.deepEqual(newGenerations(log).map((g) => g.reason), ["no generation exists"], log);
});

Deno.test("a final sync that fails is logged and makes the exit status 1", async () => {
  await using dir = await tempDir();
  const db = `${dir.path}/app.db`;
  const replica = `${dir.path}/replica`;
  await createWriterTable(db);
  const cfg = `${dir.path}/litestream.yml`;
  await Deno.writeTextFile(cfg, configYaml([{ path: db, replicas: [{ path: replica }] }]));
  await using rep = startReplicate(["-config", cfg], { logPath: `${dir.path}/replicate.log` });
  await rep.waitForLog(/snapshot written/);
  // The replica's directory becomes a file: every write fails, root or not.
  await Deno.remove(replica, { recursive: true });
  await Deno.writeTextFile(replica, "not a directory");
  const mark = await rep.mark();
  await sqlite(db, "INSERT INTO t (v) VALUES (randomblob(100));");
  await rep.waitForLog(/replica sync failed/, { after: mark });
  const { status } = await rep.stop();
  assert.equal(status.code, 1, await rep.log());
  const log = await rep.log();
  assert.match(log, /final replica sync failed/);
  assert.match(log, /a final sync failed \(logged above\)/);
});
