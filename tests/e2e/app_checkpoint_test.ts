/**
 * An application's own checkpoints while our `replicate` runs (issue 14): real processes only.
 * The application is `sqlite3` shells; it runs `PRAGMA wal_checkpoint(MODE)` with a busy
 * timeout while another connection writes. A blocking checkpoint (FULL, RESTART, TRUNCATE)
 * used to wait its whole busy timeout for our read transaction, freezing the application's
 * writers, and then fail busy; now our replicator sees the checkpointer's `-shm` locks and lets
 * it through, and a WAL restart becomes the next index of the same generation. Every case then
 * restores with ours and with the real v0.3.13 and compares the table with the source.
 *
 * Durations are logged, never asserted. Our own checkpoints are switched off (huge thresholds)
 * so every WAL restart on the replica is the application's.
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
import { configYaml } from "../support/config_yaml.ts";
import { listReplicaObjects } from "../support/fixtures.ts";
import { restoreWithV0313 } from "../support/litestream_v0313.ts";
import {
  newGenerations,
  type ReplicateProcess,
  restoreOk,
  SqliteShell,
  startReplicate,
  stopOk,
} from "../support/replicate_process.ts";
import { LockProbe } from "../../lib/os/lock_probe.ts";
import { SHM_CKPT_LOCK } from "../../lib/sqlite/shm.ts";

type Mode = "PASSIVE" | "FULL" | "RESTART" | "TRUNCATE";

/** A database replicated by a running `replicate` with a 1 s monitor interval (the default). */
interface App {
  dir: string;
  db: string;
  replica: string;
  rep: ReplicateProcess;
  /** The one generation the replica had once the first snapshot was written. */
  generation: string;
}

/** Creates the database, starts replicate on it and waits for the first snapshot. */
async function startApp(dir: string): Promise<App> {
  const db = `${dir}/app.db`;
  const replica = `${dir}/replica`;
  await createWriterTable(db);
  const cfg = `${dir}/litestream.yml`;
  await Deno.writeTextFile(
    cfg,
    configYaml([{
      path: db,
      replicas: [{ path: replica }],
      // v0.3.13's default monitor interval; never a checkpoint of ours.
      extra: {
        "monitor-interval": "1s",
        "checkpoint-interval": "1h",
        "min-checkpoint-page-count": 1_000_000,
        "max-checkpoint-page-count": 0,
      },
    }]),
  );
  const rep = startReplicate(["-config", cfg], { logPath: `${dir}/replicate.log` });
  await rep.waitForLog(/snapshot written/);
  const gens = await generationsOf(replica);
  assert.equal(gens.length, 1, `one generation after the first snapshot: ${gens}`);
  return { dir, db, replica, rep, generation: gens[0] };
}

/** Generation directories of a file replica. */
async function generationsOf(replica: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(`${replica}/generations`)) names.push(e.name);
  return names.sort();
}

/** `n` small commits, one row each, from one `sqlite3` process. */
function commits(db: string, n: number, tag: string): Promise<string> {
  let sql = "";
  for (let i = 0; i < n; i++) sql += `INSERT INTO t (v) VALUES ('${tag}-${i}');\n`;
  return sqlite(db, sql);
}

/** What one application checkpoint with a concurrent insert produced. */
interface CheckpointRun {
  /** `busy|log|checkpointed` as `PRAGMA wal_checkpoint` printed it. */
  result: string;
  checkpointMs: number;
  /** Id of the concurrently inserted row (empty when the insert failed). */
  insertedId: string;
  insertMs: number;
  /** Whether the insert started while the checkpointer still held its lock. */
  overlapped: boolean;
}

/**
 * Runs `PRAGMA wal_checkpoint(mode)` on its own connection with busy timeout `busyMs` and, once
 * the checkpointer holds SQLite's checkpoint lock (or has already finished), an insert on a
 * second connection: the application's writer, which waits behind a blocking checkpoint.
 */
async function checkpointWithInsert(
  db: string,
  mode: Mode,
  busyMs: number,
): Promise<CheckpointRun> {
  const ckpt = new SqliteShell(db, busyMs);
  // The insert must not be what times out: it may wait for the whole checkpoint.
  const writer = new SqliteShell(db, busyMs + 5000);
  const probe = LockProbe.open(`${db}-shm`);
  if (typeof probe === "string") throw new Error(`cannot probe ${db}-shm: ${probe}`);
  try {
    const started = performance.now();
    let checkpointMs = -1;
    const pending = ckpt.run(`PRAGMA wal_checkpoint(${mode});`).then((lines) => {
      checkpointMs = performance.now() - started;
      return lines;
    });
    const overlapped = await waitFor(
      `the ${mode} checkpoint to take its lock or finish`,
      () => probe.holder(SHM_CKPT_LOCK)?.exclusive ? "yes" : checkpointMs >= 0 ? "no" : undefined,
      busyMs + 5000,
      2,
    ) === "yes";
    const insertStarted = performance.now();
    const inserted = await writer.run("INSERT INTO t (v) VALUES ('concurrent') RETURNING id;");
    const insertMs = performance.now() - insertStarted;
    const lines = await pending;
    const [ckptErr, writerErr] = [await ckpt.close(), await writer.close()];
    assert.equal(ckptErr, "", `${mode} checkpoint's stderr`);
    assert.equal(writerErr, "", `concurrent insert's stderr`);
    return {
      result: lines.join(";"),
      checkpointMs,
      insertedId: inserted.join(";"),
      insertMs,
      overlapped,
    };
  } finally {
    probe.close();
  }
}

/** Rows, id sum, max id and a SHA3 hash of table `t`: its content, for comparison. */
function tableDigest(db: string): Promise<string> {
  return sqlite(
    db,
    "SELECT count(*), sum(id), max(id), (SELECT hex(sha3_query('SELECT id, v FROM t ORDER BY id'))) " +
      "FROM t;",
  );
}

/**
 * Stops replicate (exit 0) and checks the replica: still the one generation it started with,
 * indexes past 0 when the application restarted the WAL, and restores by ours and by v0.3.13
 * that pass the integrity check and hold exactly the source's table.
 */
async function finish(app: App, what: string, restarted: boolean): Promise<void> {
  await stopOk(app.rep);
  const log = await app.rep.log();
  assert.deepEqual(await generationsOf(app.replica), [app.generation], `${what}: generations`);
  assert.deepEqual(
    newGenerations(log).map((g) => g.reason),
    ["no generation exists"],
    `${what}: only the first generation was begun`,
  );
  const wal = (await listReplicaObjects(app.replica)).filter((o) => o.kind === "wal");
  const indexes = [...new Set(wal.map((o) => o.index))].sort((a, b) => a - b);
  if (restarted) {
    assert.ok(indexes.some((i) => i >= 1), `${what}: WAL indexes after the restart: ${indexes}`);
  }
  const admitted = log.split("\n").filter((l) => l.includes("let another process's checkpoint"));
  console.log(`  ${what}: WAL indexes ${indexes.join(",")}; admissions: ${admitted.length}`);

  const url = `file://${app.replica}`;
  const expected = await tableDigest(app.db);
  const ours = await restoreOk(app.dir, [url]);
  assert.equal(await integrityCheck(ours), "ok", `${what}: our restore's integrity`);
  assert.equal(await tableDigest(ours), expected, `${what}: our restore's table t`);
  const theirs = await restoreWithV0313(`${app.dir}/v0313`, [], url);
  assert.equal(await tableDigest(theirs), expected, `${what}: v0.3.13's restore's table t`);
}

const CASES: { mode: Mode; busyMs: number }[] = [
  { mode: "PASSIVE", busyMs: 5000 },
  { mode: "FULL", busyMs: 5000 },
  { mode: "RESTART", busyMs: 5000 },
  { mode: "TRUNCATE", busyMs: 5000 },
  { mode: "TRUNCATE", busyMs: 30_000 },
];

for (const { mode, busyMs } of CASES) {
  Deno.test(`app checkpoint: ${mode} with busy timeout ${busyMs / 1000} s is not busy and keeps one generation`, async () => {
    await using dir = await tempDir(`app-ckpt-${mode.toLowerCase()}-`);
    const app = await startApp(dir.path);
    await using _rep = app.rep;
    await commits(app.db, 300, "before");
    const run = await checkpointWithInsert(app.db, mode, busyMs);
    console.log(
      `  ${mode} (busy timeout ${busyMs} ms): result ${run.result} in ${
        run.checkpointMs.toFixed(0)
      } ms; ` +
        `concurrent insert (overlapped: ${run.overlapped}) in ${run.insertMs.toFixed(0)} ms`,
    );
    assert.equal(run.result.split("|")[0], "0", `${mode} checkpoint busy: ${run.result}`);
    assert.match(run.insertedId, /^\d+$/, `concurrent insert's returned id`);
    await commits(app.db, 100, "after");
    await finish(app, `${mode}/${busyMs}`, mode === "RESTART" || mode === "TRUNCATE");
  });
}

Deno.test("app checkpoint: TRUNCATE while replicate idles on file-system events is not busy", async () => {
  await using dir = await tempDir("app-ckpt-idle-");
  const app = await startApp(dir.path);
  await using _rep = app.rep;
  await commits(app.db, 300, "before");
  const mark = await app.rep.mark();
  // Logged after a quiet monitor tick, when it stops polling.
  await app.rep.waitForLog(/idle: waiting for file-system events/, { after: mark });
  const run = await checkpointWithInsert(app.db, "TRUNCATE", 5000);
  console.log(
    `  idle TRUNCATE: result ${run.result} in ${run.checkpointMs.toFixed(0)} ms; ` +
      `concurrent insert (overlapped: ${run.overlapped}) in ${run.insertMs.toFixed(0)} ms`,
  );
  assert.equal(run.result.split("|")[0], "0", `idle TRUNCATE checkpoint busy: ${run.result}`);
  assert.match(run.insertedId, /^\d+$/, `concurrent insert's returned id`);
  await commits(app.db, 100, "after");
  await finish(app, "idle TRUNCATE", true);
});

Deno.test("app checkpoint: three TRUNCATEs under a continuous writer are not busy", async () => {
  await using dir = await tempDir("app-ckpt-load-");
  const app = await startApp(dir.path);
  await using _rep = app.rep;
  const writer = await Writer.start(app.db, { blobSize: 256 });
  await using _w = stopping(writer);
  const shell = new SqliteShell(app.db, 5000);
  let shellErr = "";
  try {
    for (let i = 1; i <= 3; i++) {
      // A couple of seconds of writing between checkpoints, paced by what the writer committed.
      const from = writer.lastId;
      await waitFor(
        `the writer to commit 100 more rows (checkpoint ${i})`,
        () => writer.lastId >= from + 100,
      );
      const started = performance.now();
      const [result] = await shell.run("PRAGMA wal_checkpoint(TRUNCATE);");
      const ms = performance.now() - started;
      console.log(
        `  load TRUNCATE ${i}: result ${result} in ${
          ms.toFixed(0)
        } ms (writer at id ${writer.lastId})`,
      );
      assert.equal(result?.split("|")[0], "0", `TRUNCATE ${i} under load busy: ${result}`);
    }
  } finally {
    shellErr = await shell.close();
  }
  assert.equal(shellErr, "", "checkpoint shell's stderr");
  const lastId = await writer.stop();
  assert.ok(lastId > 300, `writer committed ${lastId} rows`);
  await finish(app, "load", true);
});
