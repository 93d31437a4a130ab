/**
 * `replicate -once` end to end: on a fresh replica it takes a snapshot and exits 0 (the
 * replica restores); on an up-to-date replica it writes no object; new rows go as WAL
 * segments; `-force-snapshot` adds a snapshot; an unreachable store exits 1 naming the
 * replica while the other replica is still written; flag combinations v0.5 rejects.
 */

import assert from "node:assert/strict";
import { tempDir } from "../support/poll.ts";
import { createWriterTable, sqlite } from "../support/sqlite_cli.ts";
import { configYaml } from "../support/config_yaml.ts";
import { listReplicaObjects } from "../support/fixtures.ts";
import { freePort } from "../support/net.ts";
import {
  describeResult,
  restoreOk,
  runLitestream,
  SqliteShell,
  writeConfig,
} from "../support/replicate_process.ts";

/** Object names and sizes of a file replica, for "nothing new" comparisons. */
async function objects(replica: string): Promise<string[]> {
  return (await listReplicaObjects(replica)).map((o) => `${o.path}:${o.size}`);
}

Deno.test("replicate -once", async (t) => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const db = `${dir}/app.db`;
  const replica = `${dir}/replica`;
  const config = await writeConfig(
    `${dir}/litestream.yml`,
    configYaml([{ path: db, replicas: [{ path: replica }] }]),
  );
  await createWriterTable(db);
  await sqlite(db, "INSERT INTO t (v) VALUES (randomblob(1000)), (randomblob(1000));");
  const once = async (...extra: string[]) => {
    const r = await runLitestream(["replicate", "-config", config, "-once", ...extra]);
    assert.equal(r.code, 0, describeResult(r));
    return r;
  };

  await t.step("fresh replica: snapshot, exit 0, restores", async () => {
    await once();
    const objs = await listReplicaObjects(replica);
    assert.equal(objs.filter((o) => o.kind === "snapshot").length, 1);
    const out = await restoreOk(dir, ["-config", config, db]);
    assert.equal(await sqlite(out, "SELECT count(*) FROM t;"), "2");
  });

  await t.step("up-to-date replica: no new objects", async () => {
    const before = await objects(replica);
    await once();
    assert.deepEqual(await objects(replica), before);
  });

  await t.step("new rows while the application holds the database: WAL, no snapshot", async () => {
    // Between runs nobody holds a read transaction: a WAL that the last connection to close
    // checkpointed restarts on the next write, and that run must start a new generation. An
    // application keeping its connection open appends to the same WAL instead.
    const app = new SqliteShell(db);
    try {
      await app.run("INSERT INTO t (v) VALUES (randomblob(1000));");
      await once();
      const before = await listReplicaObjects(replica);
      await app.run("INSERT INTO t (v) VALUES (randomblob(1000));");
      await once();
      const after = await listReplicaObjects(replica);
      assert.equal(
        after.filter((o) => o.kind === "snapshot").length,
        before.filter((o) => o.kind === "snapshot").length,
      );
      assert.equal(after.length, before.length + 1, "one new WAL segment");
      const out = await restoreOk(dir, ["-config", config, db]);
      assert.equal(await sqlite(out, "SELECT count(*) FROM t;"), "4");
    } finally {
      await app.close();
    }
  });

  await t.step("-force-snapshot: one more snapshot", async () => {
    const count = async () =>
      (await listReplicaObjects(replica)).filter((o) => o.kind === "snapshot").length;
    const before = await count();
    await once("-force-snapshot");
    assert.equal(await count(), before + 1);
  });

  await t.step("unreachable store: exit 1 naming the replica, the other one written", async () => {
    const db2 = `${dir}/two.db`;
    const good = `${dir}/good`;
    const config2 = await writeConfig(
      `${dir}/two.yml`,
      configYaml([{
        path: db2,
        replicas: [{ path: good }, {
          type: "s3",
          name: "offsite",
          bucket: "b",
          path: "two",
          endpoint: `http://127.0.0.1:${freePort()}`,
          region: "us-east-1",
          "access-key-id": "x",
          "secret-access-key": "y",
        }],
      }]),
    );
    await createWriterTable(db2);
    const r = await runLitestream(["replicate", "-config", config2, "-once"]);
    assert.equal(r.code, 1, describeResult(r));
    // Named once, in the error line (a failure is logged separately only among several).
    assert.match(r.err, /^error: replicate -once: .*two\.db: replica offsite \(s3:\/\/b\/two\):/m);
    assert.equal(r.err.match(/replica offsite/g)?.length, 1, r.err);
    assert.doesNotMatch(r.err, /replica file/);
    assert.equal((await listReplicaObjects(good)).filter((o) => o.kind === "snapshot").length, 1);
  });

  await t.step("flag combinations", async () => {
    const r1 = await runLitestream(["replicate", "-config", config, "-once", "-exec", "true"]);
    assert.equal(r1.code, 1);
    assert.match(r1.err, /cannot specify -once flag with -exec/);
    const r2 = await runLitestream(["replicate", "-config", config, "-force-snapshot"]);
    assert.equal(r2.code, 1);
    assert.match(r2.err, /cannot specify -force-snapshot flag without -once/);
  });
});
