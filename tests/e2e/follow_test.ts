/**
 * Follow mode end to end: a primary replicated by our `replicate`, a follower `restore -f`, and
 * readers of three SQLite implementations querying the followed copy in a loop while a writer
 * commits invariant-keeping transactions (with a schema change midway). Every sample must keep
 * the invariants, no reader may fail, and once writes stop the copy must equal the primary.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tempDir, waitFor } from "../support/poll.ts";
import { configYaml, s3ReplicaKeys } from "../support/config_yaml.ts";
import { replicaClient, startS3rver } from "../support/s3_server.ts";
import { startFaultProxy } from "../support/fault_proxy.ts";
import { startReplicate, stopOk, writeConfig } from "../support/replicate_process.ts";
import { integrityCheck } from "../support/sqlite_cli.ts";
import { freePort } from "../support/net.ts";
import {
  checkSamples,
  dumpOf,
  type Reader,
  READER_KINDS,
  startFollower,
  startReader,
  startWriter,
  waitForConvergence,
  waitForSnapshot,
} from "../support/follow_load.ts";

const MIGRATE_AT = 150;

Deno.test("restore -f: readers of three SQLite implementations see only committed states", async () => {
  await using dir = await tempDir("litestream-follow-");
  const db = `${dir.path}/primary.db`;
  const replica = `${dir.path}/replica`;
  const out = `${dir.path}/follower/copy.db`;
  const writer = await startWriter(db, dir.path, { migrateAt: MIGRATE_AT, pauseMs: 5 });
  const config = await writeConfig(
    `${dir.path}/litestream.yml`,
    configYaml([{ path: db, replicas: [{ type: "file", path: replica }] }]),
  );
  const rep = startReplicate(["-config", config], { logPath: `${dir.path}/replicate.log` });
  const port = freePort();
  let follower: ReturnType<typeof startFollower> | undefined;
  const readers: Reader[] = [];
  const stop = `${dir.path}/readers.stop`;
  try {
    await waitForSnapshot(replica);
    follower = startFollower([
      "-follow-interval",
      "200ms",
      "-addr",
      `127.0.0.1:${port}`,
      "-config",
      config,
      "-o",
      out,
      db,
    ], `${dir.path}/follower.log`);
    await follower.waitForLog(/following/, { timeoutMs: 30_000 });
    const header = await Deno.readFile(out).then((b) => b.subarray(0, 100));
    assert.deepEqual([header[18], header[19]], [1, 1], "rollback-journal mode for readers");
    for (const kind of READER_KINDS) readers.push(await startReader(kind, out, stop, dir.path));

    // Through the migration and well past it, with readers sampling throughout.
    await writer.reach(MIGRATE_AT + 600, 60_000);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(
      metrics,
      /litestream_follow_wal_index\{db="[^"]+",generation="[0-9a-f]{16}"\} \d+/,
    );
    assert.match(metrics, /litestream_follow_batch_count\{db="[^"]+"\} [1-9]/);
    const last = await writer.stop();

    await waitForConvergence({ out, db, readers, last, migrateAt: MIGRATE_AT, timeoutMs: 30_000 });
  } finally {
    await Deno.writeTextFile(stop, "");
    await Promise.all(readers.map((r) => r.done));
    if (follower) {
      const { status } = await follower.stop(20_000);
      assert.equal(status.code, 0, `follower exit ${status.code}: ${await follower.log()}`);
    }
    await stopOk(rep);
  }
  for (const r of readers) {
    const report = checkSamples(r.lines, MIGRATE_AT);
    assert.deepEqual(report.errors, [], `${r.kind} reader errors`);
    assert.deepEqual(report.violations, [], `${r.kind} invariant violations`);
    assert.ok(report.samples >= 50, `${r.kind}: only ${report.samples} samples`);
    assert.ok(
      checkSamples(r.lines.filter((l) => l.startsWith("S|")), MIGRATE_AT).maxN >= MIGRATE_AT,
      `${r.kind} saw the migration`,
    );
  }
  assert.match(await follower!.log(), /follow stopped/);
});

Deno.test("restore -f: follows an S3 replica, through a failing connection, and converges", async () => {
  await using dir = await tempDir("litestream-follow-s3-");
  await using srv = await startS3rver();
  await using proxy = startFaultProxy(srv.endpoint);
  const db = `${dir.path}/primary.db`;
  const out = `${dir.path}/copy.db`;
  const config = await writeConfig(
    `${dir.path}/litestream.yml`,
    configYaml([{ path: db, replicas: [s3ReplicaKeys({ srv, path: "app" })] }]),
  );
  // The follower reads the same replica through the proxy.
  const followerConfig = await writeConfig(
    `${dir.path}/follower.yml`,
    configYaml([{
      path: db,
      replicas: [s3ReplicaKeys({ srv, path: "app", endpoint: proxy.endpoint })],
    }]),
  );
  const writer = await startWriter(db, dir.path, { migrateAt: 100, pauseMs: 10 });
  const rep = startReplicate(["-config", config], { logPath: `${dir.path}/replicate.log` });
  const stop = `${dir.path}/readers.stop`;
  let follower: ReturnType<typeof startFollower> | undefined;
  const readers: Reader[] = [];
  try {
    await waitFor(
      "the first snapshot on S3",
      async () => {
        const c = replicaClient(srv, "app");
        const gens = await c.generations();
        return gens.length > 0 && (await c.snapshots(gens[0])).length > 0;
      },
      30_000,
      200,
    );
    follower = startFollower(
      ["-follow-interval", "200ms", "-config", followerConfig, "-o", out, db],
      `${dir.path}/follower.log`,
    );
    await follower.waitForLog(/following/, { timeoutMs: 30_000 });
    readers.push(await startReader("python", out, stop, dir.path));
    await writer.reach(150, 60_000);

    // The replica becomes unreachable: the follower retries with backoff, readers keep reading.
    const mark = await follower.mark();
    proxy.setRules({ fault: { kind: "drop" } });
    await follower.waitForLog(/poll failed; serving the last state/, {
      after: mark,
      timeoutMs: 30_000,
    });
    const seen = readers[0].lines.length;
    await waitFor("readers still served", () => readers[0].lines.length > seen + 10);
    proxy.setRules();

    await writer.stop();
    await waitFor(
      "the follower to reach the primary's content",
      async () => {
        return await dumpOf(out) === await dumpOf(db);
      },
      60_000,
      300,
    );
    assert.equal(await integrityCheck(out), "ok");
  } finally {
    await writer.stop().catch(() => {});
    await Deno.writeTextFile(stop, "");
    await Promise.all(readers.map((r) => r.done));
    if (follower) await follower.stop(20_000);
    await stopOk(rep);
  }
  const report = checkSamples(readers[0].lines, 100);
  assert.deepEqual(report.errors, []);
  assert.deepEqual(report.violations, []);
  assert.match(await follower!.log(), /replica reachable again/);
});
