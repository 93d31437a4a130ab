/**
 * `replicate -restore-if-db-not-exists` and the database key `restore-if-db-not-exists`, end
 * to end with real processes: a missing database comes back from its file replica and
 * replication continues in the same generation (no new generation, no snapshot), which both
 * our restore and v0.3.13's read; with no backup, replicate starts empty and replicates the
 * database once the application creates it; a database that exists is left alone; a store
 * that cannot be reached stops replicate with an error naming the replica.
 */

import assert from "node:assert/strict";
import { tempDir, waitFor } from "../support/poll.ts";
import { createWriterTable, sqlite } from "../support/sqlite_cli.ts";
import { configYaml, s3ReplicaKeys } from "../support/config_yaml.ts";
import { replicaClient, startS3rver } from "../support/s3_server.ts";
import { listReplicaObjects } from "../support/fixtures.ts";
import { freePort } from "../support/net.ts";
import { restoreWithV0313 } from "../support/litestream_v0313.ts";
import {
  newGenerations,
  runLitestream,
  startReplicate,
  stopOk,
  waitForRestore,
  writeConfig,
} from "../support/replicate_process.ts";

/** Inserts `n` rows of 1 KiB in transactions of 5. */
async function insertRows(db: string, n: number): Promise<void> {
  for (let i = 0; i < n; i += 5) {
    await sqlite(
      db,
      `INSERT INTO t (v) SELECT randomblob(1024) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL ` +
        `SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5) LIMIT ${Math.min(5, n - i)};`,
    );
  }
}

async function removeDatabase(db: string): Promise<void> {
  const dir = db.slice(0, db.lastIndexOf("/"));
  const name = db.slice(db.lastIndexOf("/") + 1);
  for (const p of [db, `${db}-wal`, `${db}-shm`, `${dir}/.${name}-litestream`]) {
    await Deno.remove(p, { recursive: true }).catch(() => {});
  }
}

Deno.test("replicate -restore-if-db-not-exists", async (t) => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const db = `${dir}/app.db`;
  const replica = `${dir}/replica`;
  const config = await writeConfig(
    `${dir}/litestream.yml`,
    configYaml([{ path: db, replicas: [{ path: replica }] }]),
  );
  const source = ["-config", config, db];

  await t.step("with a replica: restored, then the same generation continues", async () => {
    await createWriterTable(db);
    const first = startReplicate(["-config", config], { logPath: `${dir}/first.log` });
    await first.waitForLog(/initialized db/);
    // Rows in two batches, the second after the first snapshot: the rows after it go to WAL
    // segments, and the FAST_DB checkpoints (every ~20 pages, or 1 s) spread them over indexes.
    // In one batch they may all land before the first sync, in the snapshot.
    await insertRows(db, 60);
    const walIndexes = async () =>
      new Set(
        (await listReplicaObjects(replica)).filter((o) => o.kind === "wal").map((o) => o.index),
      );
    await waitFor(
      "the first snapshot",
      async () => (await listReplicaObjects(replica)).some((o) => o.kind === "snapshot"),
    );
    const firstIndexes = (await walIndexes()).size;
    await insertRows(db, 60);
    await waitFor(
      "WAL segments of a later index",
      async () => (await walIndexes()).size > firstIndexes,
    );
    await waitForRestore(`${dir}/r`, source, [{ table: "t", lastId: 120 }]);
    await stopOk(first);
    const before = await listReplicaObjects(replica);
    const generations = new Set(before.map((o) => o.generation));
    assert.equal(generations.size, 1);
    const snapshots = before.filter((o) => o.kind === "snapshot").length;
    const indexes = new Set(before.filter((o) => o.kind === "wal").map((o) => o.index));
    assert.ok(indexes.size > 1, "the database comes back from a snapshot and several WAL indexes");

    // A fresh machine: no database, no WAL, no meta directory.
    await removeDatabase(db);
    const rep = startReplicate(["-config", config, "-restore-if-db-not-exists"], {
      logPath: `${dir}/second.log`,
    });
    await rep.waitForLog(/replication continues this generation/);
    // Read only once replicate holds the database: sqlite3 closing it as the last connection
    // would delete the WAL (see startup_restore.ts).
    await rep.waitForLog(/initialized db/);
    assert.equal(await sqlite(db, "SELECT count(*) FROM t;"), "120");
    await insertRows(db, 20);
    await waitForRestore(`${dir}/r`, source, [{ table: "t", lastId: 140 }]);
    await stopOk(rep);

    const log = await rep.log();
    assert.deepEqual(newGenerations(log), [], "no new generation after the restore");
    const after = await listReplicaObjects(replica);
    assert.deepEqual(new Set(after.map((o) => o.generation)), generations);
    assert.equal(after.filter((o) => o.kind === "snapshot").length, snapshots, "no new snapshot");
    assert.ok(after.length > before.length, "the new rows went to new WAL segments");
    // The continued generation restores with the real v0.3.13 too.
    const v = await restoreWithV0313(`${dir}/v0313`, [], `file://${replica}`);
    assert.equal(await sqlite(v, "SELECT count(*), max(id) FROM t;"), "140|140");
  });

  await t.step("with the database present: left alone", async () => {
    await sqlite(db, "DELETE FROM t WHERE id > 130;");
    const rep = startReplicate(["-config", config, "-restore-if-db-not-exists"], {
      logPath: `${dir}/third.log`,
    });
    await rep.waitForLog(/database exists, skipping restore/);
    await rep.waitForLog(/initialized db/);
    assert.equal(await sqlite(db, "SELECT count(*) FROM t;"), "130");
    await stopOk(rep);
  });

  await t.step("with no backup (config key): starts empty and replicates", async () => {
    const db2 = `${dir}/fresh.db`;
    const replica2 = `${dir}/replica2`;
    const config2 = await writeConfig(
      `${dir}/fresh.yml`,
      configYaml([{
        path: db2,
        replicas: [{ path: replica2 }],
        extra: { "restore-if-db-not-exists": "true" },
      }]),
    );
    const rep = startReplicate(["-config", config2], { logPath: `${dir}/fresh.log` });
    await rep.waitForLog(/no backup found, starting with an empty database/);
    assert.equal(await Deno.stat(db2).then(() => true, () => false), false);
    await createWriterTable(db2);
    await insertRows(db2, 10);
    await waitForRestore(`${dir}/r`, ["-config", config2, db2], [{ table: "t", lastId: 10 }]);
    await stopOk(rep);
  });

  await t.step(
    "old primary still running: the restored one stands by, then takes over",
    async () => {
      // A keeps replicating to the replica; B is restored from it on "another machine". The
      // replica lease (lease.ts) keeps B from writing A's generation while A runs.
      const env = { LITESTREAM_LEASE_TTL: "6s" };
      const a = `${dir}/old.db`;
      const b = `${dir}/new.db`;
      const shared = `${dir}/shared`;
      const configA = await writeConfig(
        `${dir}/old.yml`,
        configYaml([{ path: a, replicas: [{ path: shared }] }]),
      );
      const configB = await writeConfig(
        `${dir}/new.yml`,
        configYaml([{ path: b, replicas: [{ path: shared }] }]),
      );
      await createWriterTable(a);
      const repA = startReplicate(["-config", configA], { logPath: `${dir}/old.log`, env });
      let repB;
      try {
        await repA.waitForLog(/initialized db/);
        await insertRows(a, 10);
        await waitForRestore(`${dir}/r`, ["-config", configA, a], [{ table: "t", lastId: 10 }]);
        const [generation] = new Set((await listReplicaObjects(shared)).map((o) => o.generation));
        repB = startReplicate(["-config", configB, "-restore-if-db-not-exists"], {
          logPath: `${dir}/new.log`,
          env,
        });
        await repB.waitForLog(/replication continues this generation/);
        await repB.waitForLog(/replica is written by another replicator/, { timeoutMs: 30_000 });
        await repB.waitForLog(/standing by/, { timeoutMs: 30_000 });
        // A writes on, alone in its generation.
        await insertRows(a, 10);
        await waitForRestore(`${dir}/r`, ["-config", configA, a, "-generation", generation], [
          { table: "t", lastId: 20 },
        ]);
        assert.equal(await sqlite(b, "SELECT count(*) FROM t;"), "10");
        // A stops cleanly (releasing the lease): B takes the replica over. A's generation moved on
        // since B's restore, so B cannot continue it: a new generation, A's left intact.
        await stopOk(repA);
        await insertRows(b, 5);
        await waitForRestore(
          `${dir}/r`,
          ["-config", configB, b],
          [{ table: "t", lastId: 15 }],
          30_000,
        );
        // (Reading B's database while it stood by, the sqlite3 CLI closed it last and deleted
        // its WAL: a second reason for a new generation, equally safe.)
        const gens = newGenerations(await repB.log());
        assert.ok(gens.length >= 1, "B starts its own generation");
        assert.ok(gens.every((g) => g.generation !== generation), JSON.stringify(gens));
        await waitForRestore(`${dir}/r`, ["-config", configA, a, "-generation", generation], [
          { table: "t", lastId: 20 },
        ]);
        await stopOk(repB);
      } finally {
        if (repB && !repB.exited) await repB.kill();
        if (!repA.exited) await repA.kill();
      }
    },
  );

  await t.step("from S3: restored, the same generation continues", async () => {
    await using srv = await startS3rver();
    const db4 = `${dir}/s3.db`;
    const config4 = await writeConfig(
      `${dir}/s3.yml`,
      configYaml([{ path: db4, replicas: [s3ReplicaKeys({ srv, path: "app" })] }]),
    );
    const source4 = ["-config", config4, db4];
    await createWriterTable(db4);
    const first = startReplicate(["-config", config4], { logPath: `${dir}/s3-first.log` });
    await first.waitForLog(/initialized db/);
    await insertRows(db4, 60);
    await waitForRestore(`${dir}/r`, source4, [{ table: "t", lastId: 60 }]);
    await stopOk(first);
    const client = replicaClient(srv, "app");
    const generations = await client.generations();
    const snapshots = (await client.snapshots(generations[0])).length;

    await removeDatabase(db4);
    const rep = startReplicate(["-config", config4, "-restore-if-db-not-exists"], {
      logPath: `${dir}/s3-second.log`,
    });
    await rep.waitForLog(/replication continues this generation/);
    await rep.waitForLog(/initialized db/);
    await insertRows(db4, 10);
    await waitForRestore(`${dir}/r`, source4, [{ table: "t", lastId: 70 }]);
    await stopOk(rep);
    assert.deepEqual(newGenerations(await rep.log()), []);
    assert.deepEqual(await client.generations(), generations);
    assert.equal((await client.snapshots(generations[0])).length, snapshots);
  });

  await t.step("with an unreachable store: exits 1 naming the replica", async () => {
    const db3 = `${dir}/gone.db`;
    const config3 = await writeConfig(
      `${dir}/gone.yml`,
      configYaml([{
        path: db3,
        replicas: [{
          type: "s3",
          name: "offsite",
          bucket: "b",
          path: "gone",
          endpoint: `http://127.0.0.1:${freePort()}`,
          region: "us-east-1",
          "access-key-id": "x",
          "secret-access-key": "y",
        }],
      }]),
    );
    const r = await runLitestream(["replicate", "-config", config3, "-restore-if-db-not-exists"]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /cannot restore .*gone\.db: replica offsite:/);
    assert.equal(await Deno.stat(db3).then(() => true, () => false), false, "not started empty");
  });
});
