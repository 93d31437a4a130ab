/**
 * When the monitor announces a change to replicas (`DB.changed`): a real SQLite database written
 * by the sqlite3 CLI, synced by hand, each announcement recorded with the position replicas may
 * then ship to (`DB.shippable`).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DB, type DbSettings } from "./db.ts";
import { Logger } from "../log.ts";
import { formatPos, type Pos } from "../names.ts";
import { tempDir, waitFor } from "../../tests/support/poll.ts";
import { holdWriteLock, sqlite } from "../../tests/support/sqlite_cli.ts";

/** A monitored database in a scratch directory, and the positions announced so far. */
async function monitored(settings: Omit<DbSettings, "path" | "truncatePageCount">) {
  const dir = await tempDir();
  const path = join(dir.path, "db.sqlite");
  await sqlite(path, "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);");
  /** The monitor's log lines and its announcements ("announced"), in order. */
  const events: string[] = [];
  const db = new DB(
    { path, truncatePageCount: 500_000, ...settings },
    new Logger({ level: "debug", write: (line) => events.push(line) }),
  );
  const announced: (Pos | undefined)[] = [];
  /** The checkpoints run when each announcement was made. */
  const checkpointsAt: number[] = [];
  db.changed.listen(() => {
    announced.push(db.shippable());
    checkpointsAt.push(db.stats.checkpoints.PASSIVE);
    events.push("announced");
  });
  return {
    db,
    announced,
    checkpointsAt,
    events,
    /** Commits `rows` rows of 2 KB in one transaction. */
    write: (rows: number) =>
      sqlite(path, `INSERT INTO t (v) SELECT randomblob(2000) FROM generate_series(1, ${rows});`),
    /** Runs one sync and returns the positions it announced. */
    async sync(): Promise<(Pos | undefined)[]> {
      const before = announced.length;
      await db.sync();
      return announced.slice(before);
    },
    async [Symbol.asyncDispose]() {
      await db.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

Deno.test("DB: a sync that copies frames and checkpoints for the WAL's size announces once, after the checkpoint; the new index goes with the next sync", async () => {
  await using m = await monitored({
    checkpointInterval: 0,
    minCheckpointPageCount: 4,
    maxCheckpointPageCount: 10_000,
  });
  assert.equal((await m.sync()).length, 1); // opened: the first generation
  await m.sync(); // the CLI's first frames may make a checkpoint due at once
  const checkpoints = m.db.stats.checkpoints.PASSIVE;
  await m.write(10);
  const copied = await m.sync();
  // Announced after the checkpoint (which copies what was committed since the sync's copy), so
  // replicas ship the index it ends whole, in one segment; the new index (our
  // `_litestream_seq` frame alone) is held back.
  assert.equal(copied.length, 1);
  assert.equal(m.checkpointsAt.at(-1), checkpoints + 1);
  const pos = m.db.pos()!;
  assert.equal(m.db.stats.checkpoints.PASSIVE, checkpoints + 1);
  assert.ok(pos.offset > 0, "the new index holds our frame");
  assert.deepEqual(formatPos(copied[0]!), formatPos({ ...pos, offset: 0 }));
  // The next sync announces the new index even though nothing was written since.
  assert.deepEqual((await m.sync()).map(formatPos), [formatPos(pos)]);
  assert.deepEqual(await m.sync(), []);
  // Frames written after the checkpoint go with the new index: these make the next checkpoint
  // due too, and replicas ship the whole index, our frame and the rows together.
  await m.write(10);
  const next = await m.sync();
  assert.equal(next.length, 1);
  assert.deepEqual(formatPos(next[0]!), formatPos({ ...pos, index: pos.index + 1, offset: 0 }));
});

Deno.test("DB: while another process holds the write lock, a sync announces what it copied before its checkpoint waits", async () => {
  await using m = await monitored({
    checkpointInterval: 0,
    minCheckpointPageCount: 4,
    maxCheckpointPageCount: 10_000,
  });
  await m.sync();
  await m.sync();
  await m.write(10);
  // A CLI session in another process, mid-transaction: it holds SQLite's write lock.
  const lock = await holdWriteLock(m.db.path);
  try {
    const checkpoints = m.db.stats.checkpoints.PASSIVE;
    const from = m.events.length;
    const copied = await m.sync();
    assert.equal(copied.length, 1);
    assert.deepEqual(formatPos(copied[0]!), formatPos(m.db.pos()!));
    // Announced first; the checkpoint then waited its busy timeout for the lock, and gave up.
    const order = m.events.slice(from).filter((e) => e === "announced" || /checkpoint/.test(e));
    assert.equal(order.length, 2, order.join("\n"));
    assert.equal(order[0], "announced");
    assert.match(order[1], /checkpoint skipped: database busy/);
    assert.equal(m.db.stats.checkpoints.PASSIVE, checkpoints);
  } finally {
    await lock.release();
  }
});

Deno.test("DB: a checkpoint in a sync that copied nothing is announced at once", async () => {
  await using m = await monitored({
    checkpointInterval: 1, // always due: the time-based checkpoint runs a sync after a copy
    minCheckpointPageCount: 1000,
    maxCheckpointPageCount: 10_000,
    monitorInterval: 1, // the process is quiet 1 ms after a copy (see the next test)
  });
  // Opening begins a generation whose frames make a checkpoint due; it runs once all is quiet.
  await waitFor("the first checkpoint", async () => {
    await m.sync();
    return m.db.stats.checkpoints.PASSIVE > 0;
  });
  const checkpoints = m.db.stats.checkpoints.PASSIVE;
  await m.write(2);
  const copied = await m.sync(); // the time-based checkpoint waits a sync after new frames
  assert.equal(copied.length, 1);
  assert.equal(m.db.stats.checkpoints.PASSIVE, checkpoints);
  let checkpointed: (Pos | undefined)[] = [];
  await waitFor("the time-based checkpoint", async () => {
    checkpointed = await m.sync();
    return m.db.stats.checkpoints.PASSIVE > checkpoints;
  });
  assert.equal(m.db.stats.checkpoints.PASSIVE, checkpoints + 1);
  assert.deepEqual(checkpointed.map(formatPos), [formatPos(m.db.pos())]);
  assert.equal(checkpointed[0]!.index, copied[0]!.index + 1);
});

Deno.test("DB: a checkpoint due only to time waits until no database of the process has copied frames for a monitor interval", async () => {
  const settings = {
    checkpointInterval: 1, // due whenever the WAL holds more than one frame
    minCheckpointPageCount: 1000,
    maxCheckpointPageCount: 10_000,
    monitorInterval: 400,
  };
  await using a = await monitored(settings);
  await using b = await monitored(settings);
  // Both open and begin a generation; their first checkpoints run once the process is quiet.
  await waitFor("the first checkpoints", async () => {
    await a.sync();
    await b.sync();
    return a.db.stats.checkpoints.PASSIVE > 0 && b.db.stats.checkpoints.PASSIVE > 0;
  });
  const before = a.db.stats.checkpoints.PASSIVE;
  await a.write(2);
  assert.equal((await a.sync()).length, 1, "a's commit is copied and announced");
  await b.write(2);
  const burstEnds = performance.now() + settings.monitorInterval;
  await b.sync(); // another database's commit: the burst goes on
  await a.sync();
  assert.equal(a.db.stats.checkpoints.PASSIVE, before, "held while the process copies frames");
  const ranAt = await waitFor("a's time-based checkpoint", async () => {
    await a.sync();
    return a.db.stats.checkpoints.PASSIVE > before ? performance.now() : undefined;
  });
  assert.ok(ranAt >= burstEnds, "not before the process was quiet for a monitor interval");
});

Deno.test("DB: an idle wait moves the read transaction where no checkpoint waits on it unannounced, and then needs no probe", async () => {
  await using m = await monitored({
    checkpointInterval: 0,
    minCheckpointPageCount: 1_000_000, // no checkpoint of ours
    maxCheckpointPageCount: 0,
  });
  await m.sync();
  await m.write(10);
  await m.sync();
  const signal = new AbortController().signal;
  /** Starts an idle wait and returns it once it decided whether to probe. */
  const idle = async () => {
    const waiting = m.db.waitForWalChange({
      recheckMs: 60_000,
      probeMs: 1000,
      graceMs: 1000,
      signal,
    });
    await waitFor("the wait's decision", () => m.db.idleProbing !== undefined);
    return { probing: m.db.idleProbing, waiting };
  };

  // Frames left to backfill: the read transaction moves to the WAL's last frame. A checkpoint
  // must backfill before it could wait on that mark, which writes the database file.
  let wait = await idle();
  assert.equal(wait.probing, false);
  assert.equal((await sqlite(m.db.path, "PRAGMA wal_checkpoint(PASSIVE);")).split("|")[0], "0");
  assert.equal(await wait.waiting, "event", "the backfill woke the wait");

  // All backfilled: the read transaction moves to mark 0, which a TRUNCATE with nothing to
  // backfill does not wait on. Nothing here would let it through, yet it is not busy.
  wait = await idle();
  assert.equal(wait.probing, false);
  const truncated = await sqlite(m.db.path, ".timeout 2000\nPRAGMA wal_checkpoint(TRUNCATE);");
  assert.equal(truncated.split("|")[0], "0", `TRUNCATE busy: ${truncated}`);
  assert.equal((await Deno.stat(`${m.db.path}-wal`)).size, 0);
  assert.equal(await wait.waiting, "event", "the truncated WAL woke the wait");
});

Deno.test('DB: interruptIdle ends the idle wait with "interrupted"; outside one it does nothing', async () => {
  await using m = await monitored({
    checkpointInterval: 0,
    minCheckpointPageCount: 1_000_000,
    maxCheckpointPageCount: 0,
  });
  await m.sync();
  m.db.interruptIdle(); // no wait under way: nothing to end, nothing kept for the next one
  const waiting = m.db.waitForWalChange({
    recheckMs: 60_000,
    probeMs: 1000,
    graceMs: 1000,
    signal: new AbortController().signal,
  });
  await waitFor("the wait to begin", () => m.db.idleProbing !== undefined);
  m.db.interruptIdle();
  assert.equal(await waiting, "interrupted");
});
