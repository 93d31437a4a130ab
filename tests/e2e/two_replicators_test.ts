/**
 * Two `replicate` processes on one replica (the replica lease, `lib/core/lease.ts`), end to
 * end with real processes:
 *
 * - a file replica, two processes with different meta directories on one database file: a
 *   restart of the first (SIGKILL, then start again) is no conflict; the second is refused at
 *   its first sync and both log the other (host, pid, generation), and the second closes the
 *   database (the first's checkpoints go on restarting the WAL); the replica holds only the
 *   first one's generations and restores with ours and with v0.3.13 to every row; when the
 *   first stops cleanly, the second takes over and the replica still restores every row;
 * - an S3 replica (s3rver), two copies of a database in two directories: the same conflict,
 *   the same restores; then the second, restarted with `-force`, takes the replica over in a
 *   new generation and the first stops writing to it;
 * - a holder killed without releasing: the other takes over once the lease expired;
 * - Litestream v0.3.13 (which takes no lease) writing a copy's generation into our replica:
 *   our replicator warns at its next renewal, naming that generation.
 *
 * Leases last 6 s here (`LITESTREAM_LEASE_TTL`), renewed every 2 s.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir, waitFor } from "../support/poll.ts";
import {
  createWriterTable,
  integrityCheck,
  sqlite,
  stopping,
  Writer,
} from "../support/sqlite_cli.ts";
import { configYaml, s3ReplicaKeys, type YamlKeys } from "../support/config_yaml.ts";
import {
  type ReplicateProcess,
  restoreOk,
  startReplicate,
  stopOk,
  waitForRestore,
} from "../support/replicate_process.ts";
import { runCommand } from "../support/cli.ts";
import { litestreamV0313, startV0313Replicate } from "../support/litestream_v0313.ts";
import {
  credentialsEnv,
  replicaClient,
  replicaUrl,
  startS3rver,
  type TestS3Server,
} from "../support/s3_server.ts";
import { FileReplicaClient } from "../../replicas/file/mod.ts";
import type { ReplicaClient } from "../../lib/replica_client.ts";
import { generationBounds } from "../../lib/restore/plan.ts";

const ENV = { LITESTREAM_LEASE_TTL: "6s" };
const SYNC = "500ms";

/** Starts our replicate on a config written to `dir/<name>.yml`. */
async function start(
  dir: string,
  name: string,
  db: string,
  replica: YamlKeys,
  extra: YamlKeys = {},
  args: string[] = [],
): Promise<ReplicateProcess> {
  const cfg = join(dir, `${name}.yml`);
  await Deno.writeTextFile(
    cfg,
    configYaml([{ path: db, replicas: [{ ...replica, "sync-interval": SYNC }], extra }]),
  );
  return startReplicate(["-config", cfg, ...args], { logPath: join(dir, `${name}.log`), env: ENV });
}

/** The generation named by the lease line (`acquired`, or taken over) in a replicate's log. */
async function leaseGeneration(rep: ReplicateProcess, after = 0): Promise<string> {
  const m = await rep.waitForLog(
    /replica lease (?:acquired|taken over)[^\n]*generation=([0-9a-f]{16})/,
    {
      after,
      timeoutMs: 30_000,
    },
  );
  return m[1];
}

/** Every generation a replicate's log says it replicates (its lease lines and new generations). */
async function generationsOf(rep: ReplicateProcess): Promise<Set<string>> {
  const log = await rep.log();
  return new Set(
    [...log.matchAll(/(?:new generation|replica lease)[^\n]*?generation=([0-9a-f]{16})/g)].map(
      (m) => m[1],
    ),
  );
}

/** Waits until both sides logged the conflict, each naming the other's pid and generation. */
async function conflictReported(
  first: ReplicateProcess,
  second: ReplicateProcess,
  firstGen: string,
) {
  const refused = await second.waitForLog(
    /level=ERROR msg="replica is written by another replicator[^\n]*/,
    { timeoutMs: 30_000 },
  );
  assert.match(refused[0], new RegExp(`pid ${await first.programPid()} generation ${firstGen}`));
  assert.match(refused[0], /-force/);
  const heard = await first.waitForLog(
    /level=ERROR msg="another replicator tried to write this replica[^\n]*/,
    { timeoutMs: 30_000 },
  );
  assert.match(heard[0], new RegExp(`pid ${await second.programPid()} generation [0-9a-f]{16}`));
}

/** v0.3.13's restore of `url` into `out`; asserts it worked and returns the row count and max id. */
async function v0313Rows(out: string, url: string, env: Record<string, string> = {}) {
  const res = await runCommand(await litestreamV0313(), ["restore", "-o", out, url], {
    env,
    timeoutMs: 30_000,
  });
  assert.equal(res.code, 0, `v0.3.13 restore failed: ${res.err}`);
  assert.equal(await integrityCheck(out), "ok");
  return await sqlite(out, "SELECT count(*), max(id) FROM t;");
}

/** Asserts that the replica's generations are all ones `rep` wrote. */
async function onlyWrittenBy(client: ReplicaClient, rep: ReplicateProcess) {
  const ours = await generationsOf(rep);
  const stored = await client.generations();
  assert.ok(stored.length > 0);
  for (const g of stored) assert.ok(ours.has(g), `generation ${g} not written by the holder`);
}

Deno.test("two replicators, one file replica: restart is no conflict; the second is refused, then takes over at a clean stop", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "app.db");
  const replicaDir = join(dir.path, "replica");
  const replica = { path: replicaDir };
  await createWriterTable(db);
  const writer = await Writer.start(db, { pauseMs: 50 });
  await using _w = stopping(writer);

  // The first, killed and started again: same meta directory and host, so no conflict.
  const crashed = await start(dir.path, "first", db, replica);
  await leaseGeneration(crashed);
  await crashed.kill();
  const mark = await crashed.mark();
  await using first = await start(dir.path, "first", db, replica);
  const gen = await leaseGeneration(first, mark);
  await first.waitForLog(/previous run/, { after: mark });
  assert.doesNotMatch((await first.log()).slice(mark), /level=ERROR/);

  // A second process on the same database, with its own meta directory.
  await using second = await start(dir.path, "second", db, replica, {
    "meta-path": join(dir.path, "second-meta"),
  });
  await conflictReported(first, second, gen);
  // The second closes the database, so the first's checkpoints restart the WAL again (two read
  // transactions would block every restart, and the WAL would grow without bound).
  await second.waitForLog(/standing by/, { timeoutMs: 30_000 });
  const client = new FileReplicaClient(replicaDir);
  const index = async () => (await client.walSegments(gen)).at(-1)?.index ?? 0;
  const at = await index();
  await waitFor(
    "the first's WAL index to advance twice",
    async () => await index() >= at + 2,
    30_000,
  );

  const lastId = await writer.stop();
  await waitForRestore(dir.path, [`file://${replicaDir}`], [{ table: "t", lastId }], 30_000);
  await onlyWrittenBy(client, first);
  assert.equal(
    await v0313Rows(join(dir.path, "v0313.db"), `file://${replicaDir}`),
    `${lastId}|${lastId}`,
  );

  // A clean stop releases the lease: the second takes over and ships the same database.
  const before = await second.mark();
  await stopOk(first);
  await leaseGeneration(second, before);
  await sqlite(db, `INSERT INTO t (id, v) VALUES (${lastId + 1}, randomblob(10));`);
  const path = (await waitForRestore(dir.path, [`file://${replicaDir}`], [{
    table: "t",
    lastId: lastId + 1,
  }], 30_000)).path;
  assert.equal(await integrityCheck(path), "ok");
  await stopOk(second);
});

Deno.test("two replicators, one S3 replica: two copies of a database; the second is refused; -force takes over", async () => {
  await using srv: TestS3Server = await startS3rver();
  await using dir = await tempDir();
  const hostA = join(dir.path, "host-a");
  const hostB = join(dir.path, "host-b");
  await Deno.mkdir(hostA);
  await Deno.mkdir(hostB);
  const dbA = join(hostA, "app.db");
  const dbB = join(hostB, "app.db");
  await createWriterTable(dbA);
  await sqlite(dbA, "INSERT INTO t (id, v) VALUES (1, randomblob(10));");
  await Deno.copyFile(dbA, dbB); // a copy of the database, on "another host"
  const replica = s3ReplicaKeys({ srv, path: "app" });
  const url = replicaUrl(srv, "app");
  const client = replicaClient(srv, "app");

  const writer = await Writer.start(dbA, { pauseMs: 50 });
  await using _w = stopping(writer);
  await using first = await start(hostA, "first", dbA, replica);
  const gen = await leaseGeneration(first);
  await using second = await start(hostB, "second", dbB, replica);
  await conflictReported(first, second, gen);
  // The copy changes too: none of it may reach the replica.
  await sqlite(dbB, "INSERT INTO t (id, v) VALUES (1000000, randomblob(10));");

  const lastId = await writer.stop();
  const restoreSource = ["-config", join(hostA, "first.yml"), dbA];
  await waitForRestore(dir.path, restoreSource, [{ table: "t", lastId }], 30_000);
  await onlyWrittenBy(client, first);
  assert.equal(
    await v0313Rows(join(dir.path, "v0313.db"), url, credentialsEnv(srv)),
    `${lastId}|${lastId}`,
  );

  // The second, restarted with -force, takes the replica over in a new generation.
  await stopOk(second);
  const mark = await second.mark();
  const mark1 = await first.mark();
  await using forced = await start(hostB, "second", dbB, replica, {}, ["-force"]);
  await forced.waitForLog(/replica lease taken over \(force\)/, { after: mark, timeoutMs: 30_000 });
  const forcedGen = (await forced.waitForLog(
    /new generation[^\n]*generation=([0-9a-f]{16})[^\n]*taken over with -force/,
    { after: mark },
  ))[1];
  const lost = await first.waitForLog(
    /level=ERROR msg="replica taken over by another replicator[^\n]*/,
    { after: mark1, timeoutMs: 30_000 },
  );
  assert.match(lost[0], new RegExp(`pid ${await forced.programPid()}`));
  assert.match(lost[0], /forced=true/);
  // The replica now restores the copy (with its row 1000000) with ours, the copy idle: nothing
  // the first ships after the takeover may make its generation the newest.
  const restoresCopy = (copy: string) =>
    waitFor(
      "the replica to restore the forced copy",
      async () => {
        // Throws (kept as the timeout's cause) with what the replica restores instead.
        const out = await restoreOk(dir.path, ["-config", join(hostB, "second.yml"), dbB]);
        const rows = await sqlite(out, "SELECT count(*), max(id) FROM t;");
        if (rows !== copy) throw new Error(`the replica restores ${rows}, not the copy's ${copy}`);
        return true;
      },
      30_000,
      200,
    );
  await restoresCopy("2|1000000");
  // And with v0.3.13. The first may have shipped in the second of the takeover, before it (its
  // checkpoint's frame); S3 keeps whole seconds, and on a tie v0.3.13 restores the generation
  // listed first. So the copy is written to until its generation is the newest by a second.
  const updated = async (generation: string) =>
    generationBounds({
      generation,
      snapshots: await client.snapshots(generation),
      segments: await client.walSegments(generation),
    })?.updatedAt.getTime() ?? -Infinity;
  await waitFor(
    "the forced copy's generation to be the newest by a second",
    async () => {
      if (await updated(forcedGen) > await updated(gen)) return true;
      await sqlite(dbB, "INSERT INTO t (v) VALUES (randomblob(10));");
      return false;
    },
    30_000,
    500,
  );
  const copy = await sqlite(dbB, "SELECT count(*), max(id) FROM t;");
  await restoresCopy(copy);
  assert.equal(
    await v0313Rows(join(dir.path, "v0313-forced.db"), url, credentialsEnv(srv)),
    copy,
  );
  await stopOk(forced);
  await stopOk(first);
  await client.close();
});

Deno.test("two replicators, one file replica: a generation v0.3.13 writes beside ours is reported", async () => {
  await using dir = await tempDir();
  const ours = join(dir.path, "ours", "app.db");
  const theirs = join(dir.path, "theirs", "app.db");
  await Deno.mkdir(join(dir.path, "ours"));
  await Deno.mkdir(join(dir.path, "theirs"));
  const replicaDir = join(dir.path, "replica");
  await createWriterTable(ours);
  await createWriterTable(theirs);
  await using rep = await start(dir.path, "ours", ours, { path: replicaDir });
  await leaseGeneration(rep);
  const cfg = join(dir.path, "v0313.yml");
  await Deno.writeTextFile(cfg, configYaml([{ path: theirs, replicas: [{ path: replicaDir }] }]));
  await using old = await startV0313Replicate(cfg);
  const client = new FileReplicaClient(replicaDir);
  const foreign = await waitFor("v0.3.13's generation in the replica", async () => {
    const mine = await generationsOf(rep);
    return (await client.generations()).find((g) => !mine.has(g));
  }, 30_000);
  const warned = await rep.waitForLog(
    /level=WARN msg="a generation this replicator did not write[^\n]*/,
    {
      timeoutMs: 30_000,
    },
  );
  assert.match(warned[0], new RegExp(`generation=${foreign}`));
  await old.stop();
  await stopOk(rep);
});

Deno.test("two replicators, one file replica: the holder crashes; its lease expires and the other takes over", async () => {
  await using dir = await tempDir();
  const replicaDir = join(dir.path, "replica");
  const dbs = [join(dir.path, "a.db"), join(dir.path, "b.db")];
  for (const db of dbs) await createWriterTable(db);
  await sqlite(dbs[1], "INSERT INTO t (id, v) VALUES (1, randomblob(10));");
  await using first = await start(dir.path, "first", dbs[0], { path: replicaDir });
  await leaseGeneration(first);
  await using second = await start(dir.path, "second", dbs[1], { path: replicaDir });
  await second.waitForLog(/replica is written by another replicator/, { timeoutMs: 30_000 });
  const mark = await second.mark();
  await first.kill(); // no release: the lease stays until it expires (6 s unrenewed here)
  await second.waitForLog(/replica lease taken over \(expired\)/, {
    after: mark,
    timeoutMs: 30_000,
  });
  await waitForRestore(dir.path, [`file://${replicaDir}`], [{ table: "t", lastId: 1 }], 30_000);
  await stopOk(second);
});

Deno.test("two replicators, one database and meta directory: the second waits, stops cleanly while waiting, and takes over at a clean stop", async () => {
  await using dir = await tempDir();
  const db = join(dir.path, "app.db");
  const replicaDir = join(dir.path, "replica");
  const replica = { path: replicaDir };
  await createWriterTable(db);
  await using first = await start(dir.path, "first", db, replica);
  await leaseGeneration(first);
  const waitsFor =
    /another litestream process is replicating this database .*takes over when it stops/;

  // Stopped while it waits: the first ships what is committed, so nothing failed.
  const waiting = await start(dir.path, "waiting", db, replica);
  await waiting.waitForLog(waitsFor);
  await stopOk(waiting);
  assert.doesNotMatch(await waiting.log(), /final sync failed|a final sync failed/);

  // The first stops cleanly: the one waiting opens the database and replicates it.
  await using second = await start(dir.path, "second", db, replica);
  await second.waitForLog(waitsFor);
  const before = await second.mark();
  await stopOk(first);
  await leaseGeneration(second, before);
  await sqlite(db, "INSERT INTO t (id, v) VALUES (1, 'after the handover');");
  await waitForRestore(dir.path, [`file://${replicaDir}`], [{ table: "t", lastId: 1 }], 30_000);
  await stopOk(second);
});
