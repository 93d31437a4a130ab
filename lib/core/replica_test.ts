/**
 * The replica loop against the in-memory client with injected faults: a
 * real SQLite database (written by the sqlite3 CLI) monitored by `DB`, and
 * a `Replica` running its loops. Each test asserts the eventual outcome (the
 * replica reaches the database's position and restores to the same bytes),
 * never how long the retries took. Each injects one failure: a failed sync
 * waits for the store's next probe (`StoreHealth`, about 5 s), which is most
 * of each test's time.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { DB } from "./db.ts";
import { Replica } from "./replica.ts";
import { type Clock, StoreHealth } from "./store_health.ts";
import { Logger } from "../log.ts";
import { formatPos } from "../names.ts";
import { findRestorePlan, restoreDatabase } from "../restore/restore.ts";
import { sha256Of } from "../validate/position.ts";
import { MemoryReplicaClient } from "../../replicas/memory/mod.ts";
import { AgeReplicaClient } from "../../replicas/age/mod.ts";
import type { ReplicaClient } from "../replica_client.ts";
import { generateIdentity, identityToRecipient } from "age-encryption";
import { tempDir, waitFor } from "../../tests/support/poll.ts";

/**
 * Time a hundred times faster for the retry pacing only: a failed sync is retried after
 * 45–50 ms instead of 4.5–5 s, and what these tests assert is the outcome, not the timing.
 */
const FAST_CLOCK: Clock = {
  now: () => performance.now() * 100,
  after: (ms, fn) => {
    const timer = setTimeout(fn, ms / 100);
    return () => clearTimeout(timer);
  },
};
import { sqlite } from "../../tests/support/sqlite_cli.ts";
import { Lease } from "./lease.ts";
import { newGeneration } from "../names.ts";
import { readDirOrEmpty } from "../os/fs.ts";

/**
 * A database in a scratch directory, its monitor, and replica loops on one memory client (seen
 * through `wrap`, when given, by the replica); a checkpoint at `minCheckpointPageCount` pages.
 */
async function start(
  wrap?: (client: MemoryReplicaClient) => ReplicaClient,
  minCheckpointPageCount = 1000,
) {
  const dir = await tempDir();
  const path = join(dir.path, "db.sqlite");
  await sqlite(path, "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);");
  const lines: string[] = [];
  const log = new Logger({ level: "error", write: (line) => lines.push(line) });
  const db = new DB({
    path,
    checkpointInterval: 60_000,
    minCheckpointPageCount,
    maxCheckpointPageCount: 10_000,
    truncatePageCount: 500_000,
  }, log);
  const client = new MemoryReplicaClient("replica-test");
  let abort = new AbortController();
  let running: Promise<void> = Promise.resolve();
  const h = {
    db,
    client,
    replica: undefined as unknown as Replica,
    /** Error lines logged so far. */
    lines,
    log,
    /** Stops the running replica, if any, and starts a new one on the same client (a restart). */
    async replicate(
      lease?: Lease,
      retention: { retention: number; retentionCheckInterval: number } = {
        retention: 0,
        retentionCheckInterval: 0,
      },
    ) {
      abort.abort();
      await running;
      abort = new AbortController();
      db.replicas.splice(0);
      h.replica = new Replica(
        db,
        wrap ? wrap(client) : client,
        {
          name: "memory",
          syncInterval: 10,
          snapshotInterval: 0,
          ...retention,
        },
        log,
        new StoreHealth(FAST_CLOCK),
        lease,
      );
      db.replicas.push(h.replica);
      running = h.replica.run(abort.signal);
    },
    /** Commits `rows` rows of 2 KB in one transaction and lets the monitor copy them. */
    async write(rows: number) {
      const values = `SELECT randomblob(2000) FROM generate_series(1, ${rows})`;
      await sqlite(path, `INSERT INTO t (v) ${values};`);
      await db.sync();
    },
    /**
     * Waits until the replica holds everything the shadow WAL holds, syncing the database as the
     * monitor's ticks would (a checkpoint's new index is announced by the sync after it).
     */
    async caughtUp() {
      await waitFor("the replica to reach the database's position", async () => {
        await db.sync();
        const pos = db.pos();
        return pos !== undefined && formatPos(h.replica.pos()) === formatPos(pos);
      });
    },
    /** Checks that a restore of the latest state has the database's bytes at its position. */
    async restoresExactly(reader: ReplicaClient = client) {
      const { checksum, pos } = await db.checksum();
      assert.equal(formatPos(h.replica.pos()), formatPos(pos));
      const { plan } = await findRestorePlan([reader], {});
      const restored = await sha256Of((write) => restoreDatabase(reader, plan, { output: write }));
      assert.equal(restored, checksum);
    },
    async [Symbol.asyncDispose]() {
      abort.abort();
      await running;
      await db.close();
      await dir[Symbol.asyncDispose]();
    },
  };
  return h;
}

Deno.test("replica loop: an idle replica's retention passes make no request; an upload brings them back", async () => {
  await using h = await start();
  await h.write(10);
  await h.replicate(undefined, { retention: 3_600_000, retentionCheckInterval: 5 });
  await h.caughtUp();
  const { stats } = h.replica;
  await waitFor("a retention pass after the upload", () => stats.retention.passes > 0);
  await waitFor("idle passes skipped", () => stats.retention.skipped >= 5);
  const calls = { ...h.client.faults.calls };
  const passes = stats.retention.passes;
  await waitFor("more idle passes skipped", () => stats.retention.skipped >= 10);
  assert.equal(stats.retention.passes, passes, "no pass while idle");
  assert.deepEqual(h.client.faults.calls, calls, "no request while idle");
  await h.write(5);
  await h.caughtUp();
  await waitFor("a pass after the new upload", () => stats.retention.passes > passes);
  assert.ok(h.client.faults.calls.generations > calls.generations, "it lists the replica again");
});

Deno.test("replica loop: a checkpoint for the WAL's size costs no segment of its own: each index goes up whole", async () => {
  await using h = await start(undefined, 4);
  await h.write(10);
  await h.replicate();
  await h.caughtUp();
  const generation = h.db.generation!;
  const from = h.db.pos()!.index + 1;
  for (let i = 0; i < 5; i++) {
    await h.write(10); // enough for a checkpoint at each sync
    await waitFor(
      "the replica to ship what the sync announced",
      () => formatPos(h.replica.pos()) === formatPos(h.db.shippable()),
    );
  }
  const to = h.db.pos()!.index;
  assert.equal(to, from + 4, "a checkpoint at each sync");
  // Neither the frames committed between a sync's copy and its checkpoint, nor our
  // `_litestream_seq` frame that starts each new index, went up on their own.
  const shipped = (await h.client.walSegments(generation)).filter((s) => s.index >= from);
  assert.deepEqual(
    shipped.map((s) => formatPos(s)),
    [0, 1, 2, 3].map((i) => formatPos({ generation, index: from + i, offset: 0 })),
  );
  await h.caughtUp();
  await h.restoresExactly();
});

Deno.test("replica loop: a failed WAL segment upload is retried and every frame arrives", async () => {
  await using h = await start();
  await h.write(10);
  await h.replicate();
  await h.caughtUp();
  const uploads = h.client.faults.calls.writeWalSegment;
  h.client.faults.fail("writeWalSegment");
  await h.write(20);
  await h.write(5);
  await h.caughtUp();
  assert.equal(h.replica.stats.syncErrors, 1);
  assert.ok(h.client.faults.calls.writeWalSegment >= uploads + 2);
  assert.ok(
    h.lines.some((l) => l.includes("injected writeWalSegment failure")),
    h.lines.join("\n"),
  );
  await h.restoresExactly();
});

Deno.test("replica loop: after a failed sync the position is re-read, and the last one acknowledged stays known for status", async () => {
  await using h = await start();
  await h.write(10);
  await h.replicate();
  await h.caughtUp();
  const held = h.replica.pos();
  h.client.faults.fail("writeWalSegment");
  const reread = h.client.faults.stall("snapshots"); // the retry's first look at the replica
  await h.write(20);
  await reread.reached;
  assert.equal(h.replica.pos(), undefined, "forgotten after the failure, being re-read");
  assert.deepEqual(h.replica.lastKnownPos(), held);
  reread.release();
  await h.caughtUp();
  assert.deepEqual(h.replica.lastKnownPos(), h.replica.pos());
});

Deno.test("replica loop: a failed snapshot upload is retried", async () => {
  await using h = await start();
  await h.write(10);
  h.client.faults.fail("writeSnapshot");
  await h.replicate();
  await h.caughtUp();
  const gen = h.db.generation!;
  await waitFor("a snapshot", async () => (await h.client.snapshots(gen)).length === 1);
  assert.deepEqual(h.client.faults.calls.writeSnapshot, 2);
  assert.ok(h.lines.some((l) => l.includes("injected writeSnapshot failure")), h.lines.join("\n"));
  await h.write(3);
  await h.caughtUp();
  await h.restoresExactly();
});

Deno.test("replica loop: a truncated read of the replica's end on restart is retried", async () => {
  await using h = await start();
  await h.write(10);
  await h.replicate();
  await h.write(10);
  await h.caughtUp();
  // A restarted replica reads its last segment to learn where it ends: cut that read short.
  const reads = h.client.faults.calls.readWalSegment;
  h.client.faults.truncate("readWalSegment", 10);
  await h.write(20);
  await h.replicate();
  await h.caughtUp();
  assert.ok(h.client.faults.calls.readWalSegment >= reads + 2, "the cut read was read again");
  assert.equal(h.replica.stats.syncErrors, 1);
  await h.write(5);
  await h.caughtUp();
  await h.restoresExactly();
});

Deno.test("replica loop: a last segment damaged for good is read three times, then a new generation begins", async () => {
  await using h = await start();
  await h.write(10);
  await h.replicate();
  await h.write(10);
  await h.caughtUp();
  const generation = h.db.generation;
  // Another tool left the replica's last segment damaged (v0.3.13's shutdown race can).
  const last = h.client.keys().filter((k) => k.endsWith(".wal.lz4")).at(-1)!;
  h.client.putRaw(last, new TextEncoder().encode("not an LZ4 frame"));
  const reads = h.client.faults.calls.readWalSegment;
  await h.replicate(); // a restart: the replica reads its last segment to learn where it ends
  await h.write(20);
  await waitFor("a new generation", () => h.db.generation !== generation);
  assert.equal(h.client.faults.calls.readWalSegment - reads, 3, "read three times first");
  assert.equal(h.replica.stats.syncErrors, 2);
  await h.caughtUp();
  await h.restoresExactly();
});

/**
 * A replica encrypting to `recipients` with `identities` that cannot read what it writes (none,
 * or another key's) keeps its generation through a failed upload, and after a restart begins a
 * new one rather than fail at every sync.
 */
async function ageUnreadableToItself(wrongIdentities: boolean) {
  const identity = await generateIdentity();
  const recipients = [await identityToRecipient(identity)];
  const identities = wrongIdentities ? [await generateIdentity()] : [];
  await using h = await start((c) => new AgeReplicaClient(c, { identities, recipients }));
  await h.write(10);
  await h.replicate();
  await h.caughtUp();
  const generation = h.db.generation;
  // The failed upload makes the replica look up its end again; it cannot decrypt its last
  // segment, but that segment is the one it wrote last, so it knows where it ends.
  h.client.faults.fail("writeWalSegment");
  await h.write(20);
  await h.write(5);
  await h.caughtUp();
  assert.equal(h.replica.stats.syncErrors, 1);
  assert.equal(h.db.generation, generation, "the same generation continues");
  await h.restoresExactly(new AgeReplicaClient(h.client, { identities: [identity], recipients }));

  // After a restart nothing is known: the replica starts a new generation rather than guess.
  await h.write(5);
  await h.replicate();
  await waitFor("a new generation", () => h.db.generation !== generation);
  await h.caughtUp();
  await h.restoresExactly(new AgeReplicaClient(h.client, { identities: [identity], recipients }));
}

Deno.test("replica loop: age recipients without identities survive a failed upload and a restart", () =>
  ageUnreadableToItself(false));

Deno.test("replica loop: age identities that are not the recipients' survive a failed upload and a restart", () =>
  ageUnreadableToItself(true));

Deno.test("replica loop: while another replicator holds the lease it writes nothing and keeps no shadow WAL; after a release it catches up", async () => {
  await using h = await start(undefined, 5); // a checkpoint at every write: WAL indexes advance
  const settings = { ttl: 3000 };
  const other = new Lease(
    h.client,
    () => Promise.resolve({ id: "0123456789abcdef", host: "elsewhere", pid: 1, meta: "/m1" }),
    settings,
    h.log,
  );
  assert.equal(await other.beforeWrite(newGeneration()), "acquired");
  const me = { id: "fedcba9876543210", host: "here", pid: 2, meta: h.db.metaPath };
  await h.write(10);
  await h.replicate(new Lease(h.client, () => Promise.resolve(me), settings, h.log));
  await waitFor("the replica to be refused", () => h.replica.refused());
  for (let i = 0; i < 6; i++) await h.write(10);
  assert.ok(h.db.pos()!.index >= 4, `index ${h.db.pos()!.index}`);
  assert.deepEqual(h.client.keys(), ["lease.json"], "nothing but the lease");
  assert.equal(h.replica.pos(), undefined);
  const shadows = await readDirOrEmpty(
    `${h.db.metaPath}/generations/${h.db.generation}/wal`,
  );
  assert.ok(shadows.length <= 2, `shadow WAL files kept: ${shadows.map((e) => e.name)}`);
  await other.release();
  await h.caughtUp(); // at the replica's next try (a third of the TTL), with a snapshot
  assert.equal(h.replica.refused(), false);
  await h.write(3);
  await h.caughtUp();
  await h.restoresExactly();
});

Deno.test("replica loop: a replica emptied under its replicator, lease and all, gets a snapshot again at the next upload", async () => {
  await using h = await start();
  const me = { id: "fedcba9876543210", host: "here", pid: 2, meta: h.db.metaPath };
  await h.write(10);
  await h.replicate(new Lease(h.client, () => Promise.resolve(me), { ttl: 60_000 }, h.log));
  await h.caughtUp();
  h.client.clear();
  await h.write(3);
  await h.caughtUp();
  assert.ok(h.client.keys().some((k) => k.includes("/snapshots/")), `${h.client.keys()}`);
  await h.restoresExactly();
});

Deno.test("replica sync: before its database exists the store is not asked, and no sync is shown", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "later.db");
  const log = new Logger({ level: "error", write: () => {} });
  const db = new DB({
    path,
    checkpointInterval: 60_000,
    minCheckpointPageCount: 1000,
    maxCheckpointPageCount: 10_000,
    truncatePageCount: 500_000,
  }, log);
  try {
    const client = new MemoryReplicaClient("replica-test");
    const replica = new Replica(
      db,
      client,
      {
        name: "memory",
        syncInterval: 10,
        snapshotInterval: 0,
        retention: 0,
        retentionCheckInterval: 0,
      },
      log,
      new StoreHealth(FAST_CLOCK),
    );
    await db.sync();
    await replica.sync();
    const asked = Object.values(client.faults.calls).reduce((a, b) => a + b, 0);
    assert.equal(asked, 0, "no request before the database exists");
    assert.equal(replica.activity.lastSyncAt, undefined, "status shows no sync time");
    await sqlite(path, "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY);");
    await db.sync();
    await replica.sync();
    assert.ok(replica.activity.lastSyncAt !== undefined, "the first real sync is shown");
    assert.equal(formatPos(replica.pos()), formatPos(db.pos()));
  } finally {
    await db.close();
  }
});
