/**
 * `replicate -exec CMD`: the application runs as a child; litestream stops
 * with it (after a final sync) and exits with its status, and forwards
 * SIGTERM to it; a second SIGTERM ends a shutdown still waiting.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir, waitFor } from "../support/poll.ts";
import { describeResult, runLitestream } from "../support/cli.ts";
import { startReplicate } from "../support/replicate_process.ts";
import { rowCount, sqlite } from "../support/sqlite_cli.ts";

Deno.test("-exec: the child's writes are replicated and its exit status becomes ours", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "app.db");
  const replica = `file://${join(dir.path, "replica")}`;
  await sqlite(db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);");
  // The "application" writes (with a busy timeout, as any application beside litestream needs: it
  // briefly holds the write lock), waits until the replica directory exists, then exits 3.
  const app =
    `sh -c 'for i in 1 2 3; do sqlite3 -cmd ".timeout 5000" ${db} "INSERT INTO t(v) VALUES (1)"; done; ` +
    `while [ ! -d ${join(dir.path, "replica", "generations")} ]; do sleep 0.05; done; exit 3'`;
  const r = await runLitestream(["replicate", "-exec", app, db, replica], { timeoutMs: 30_000 });
  assert.equal(r.code, 3, describeResult(r));
  assert.match(r.err, /subprocess exited/);
  const out = join(dir.path, "restored.db");
  const restore = await runLitestream(["restore", "-o", out, replica]);
  assert.equal(restore.code, 0, describeResult(restore));
  assert.equal(await rowCount(db), 3, "the child committed its three rows");
  assert.equal(
    await rowCount(out),
    3,
    "every row the child committed is in the replica after the final sync",
  );
});

Deno.test("-exec: SIGTERM is forwarded to the child; litestream exits with the child's status", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "app.db");
  const marker = join(dir.path, "child-got-term");
  await sqlite(db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY);");
  const cfg = join(dir.path, "litestream.yml");
  await Deno.writeTextFile(
    cfg,
    `exec: sh -c 'trap "touch ${marker}; exit 0" TERM; while true; do sleep 0.05; done'\n` +
      `dbs:\n  - path: ${db}\n    replicas:\n      - path: ${join(dir.path, "replica")}\n`,
  );
  const proc = startReplicate(["-config", cfg], { logPath: join(dir.path, "log.txt") });
  await proc.waitForLog(/snapshot written/);
  const { status } = await proc.stop();
  assert.equal(status.code, 0, await proc.log());
  await waitFor(
    "the child's TERM trap to run",
    () => Deno.stat(marker).then(() => true, () => false),
  );
});

Deno.test("a second SIGTERM ends a shutdown that is still waiting (here on a child ignoring the first)", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "app.db");
  const marker = join(dir.path, "child-got-term");
  await sqlite(db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY);");
  // The child notes the forwarded SIGTERM and goes on until its parent is gone.
  const child = `sh -c 'trap "touch ${marker}" TERM; while kill -0 $PPID; do sleep 0.05; done'`;
  await using proc = startReplicate(["-exec", child, db, `file://${join(dir.path, "replica")}`], {
    logPath: join(dir.path, "log.txt"),
  });
  await proc.waitForLog(/snapshot written/);
  const pid = await proc.programPid();
  Deno.kill(pid, "SIGTERM");
  await waitFor(
    "the child to get the first SIGTERM",
    () => Deno.stat(marker).then(() => true, () => false),
  );
  assert.equal(proc.exited, false, "still waiting for the child");
  Deno.kill(pid, "SIGTERM");
  await waitFor("replicate to exit after the second SIGTERM", () => proc.exited, 10_000);
  const status = await proc.status;
  assert.equal(status.code, 1, await proc.log());
  assert.match(await proc.log(), /second signal received, exiting without finishing the shutdown/);
});
