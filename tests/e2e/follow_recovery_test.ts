/**
 * Follow mode when the replica's history breaks or comes from elsewhere: a new generation on the
 * primary and WAL removed by retention are recovered in place from a snapshot while readers
 * keep their connections; a replica written by the real v0.3.13 is followed; bad input is
 * refused with one line naming the flag or file; an unreachable replica is retried while the
 * last state stays readable.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tempDir, waitFor } from "../support/poll.ts";
import { configYaml } from "../support/config_yaml.ts";
import {
  runLitestream,
  startReplicate,
  stopOk,
  writeConfig,
} from "../support/replicate_process.ts";
import { startV0313Replicate, stopV0313Replicate } from "../support/litestream_v0313.ts";
import { integrityCheck, sqlite } from "../support/sqlite_cli.ts";
import {
  checkSamples,
  dumpOf,
  type Reader,
  type ReaderKind,
  startFollower,
  startReader,
  startWriter,
  waitForSnapshot,
} from "../support/follow_load.ts";

const MIGRATE_AT = 60;

/** Waits until the copy holds exactly the primary's content (read fresh each time). */
function converged(out: string, db: string, timeoutMs = 30_000): Promise<boolean> {
  return waitFor(
    "the follower to reach the primary's content",
    async () => {
      return await dumpOf(out) === await dumpOf(db);
    },
    timeoutMs,
    200,
  );
}

/** Stops readers and asserts every sample kept the invariants and no reader failed. */
async function checkReaders(readers: Reader[], stop: string): Promise<void> {
  await Deno.writeTextFile(stop, "");
  await Promise.all(readers.map((r) => r.done));
  for (const r of readers) {
    const report = checkSamples(r.lines, MIGRATE_AT);
    assert.deepEqual(report.errors, [], `${r.kind} reader errors`);
    assert.deepEqual(report.violations, [], `${r.kind} invariant violations`);
    assert.ok(report.samples >= 20, `${r.kind}: only ${report.samples} samples`);
  }
}

async function startReaders(out: string, dir: string, stop: string, kinds: ReaderKind[]) {
  const readers: Reader[] = [];
  for (const kind of kinds) readers.push(await startReader(kind, out, stop, dir));
  return readers;
}

Deno.test("restore -f: a new generation and a retention gap are recovered in place", async () => {
  await using dir = await tempDir("litestream-follow-recovery-");
  const db = `${dir.path}/primary.db`;
  const replica = `${dir.path}/replica`;
  const out = `${dir.path}/copy.db`;
  const config = await writeConfig(
    `${dir.path}/litestream.yml`,
    configYaml([{
      path: db,
      replicas: [{
        type: "file",
        path: replica,
        "snapshot-interval": "1s",
        retention: "1s",
        "retention-check-interval": "500ms",
      }],
    }]),
  );
  let writer = await startWriter(db, dir.path, { migrateAt: MIGRATE_AT, pauseMs: 10 });
  let rep = startReplicate(["-config", config], { logPath: `${dir.path}/replicate.log` });
  const args = ["-follow-interval", "100ms", "-o", out, `file://${replica}`];
  const logPath = `${dir.path}/follower.log`;
  const stop = `${dir.path}/readers.stop`;
  let follower: ReturnType<typeof startFollower> | undefined;
  let readers: Reader[] = [];
  try {
    await waitForSnapshot(replica);
    follower = startFollower(args, logPath);
    await follower.waitForLog(/following/, { timeoutMs: 30_000 });
    readers = await startReaders(out, dir.path, stop, ["python", "sqlite3-cli"]);
    await writer.reach(MIGRATE_AT + 50);

    // A new generation: everything stops, the last connection to close deletes the WAL.
    await writer.stop();
    await stopOk(rep);
    await sqlite(db, "SELECT count(*) FROM counter;");
    assert.equal(await Deno.stat(`${db}-wal`).then(() => true, () => false), false);
    let mark = await follower.mark();
    rep = startReplicate(["-config", config], { logPath: `${dir.path}/replicate.log` });
    writer = await startWriter(db, dir.path, { migrateAt: MIGRATE_AT, pauseMs: 10 });
    await follower.waitForLog(/recovering from a snapshot.*reason="?new generation/, {
      after: mark,
      timeoutMs: 30_000,
    });
    await writer.reach(writer.last() + 50);

    // A gap: the follower is away while retention removes the WAL it would need next.
    await follower.stop(20_000);
    const away = writer.last();
    await writer.reach(away + 200, 60_000);
    mark = await follower.mark();
    follower = startFollower(args, logPath);
    await follower.waitForLog(/follow: (recovered|resuming)/, { after: mark, timeoutMs: 30_000 });
    await follower.waitForLog(/recovering from a snapshot.*reason="?(gap|generation)/, {
      after: mark,
      timeoutMs: 30_000,
    });

    await writer.stop();
    await converged(out, db);
    assert.equal(await integrityCheck(out), "ok");
  } finally {
    await writer.stop().catch(() => {});
    await checkReaders(readers, stop);
    if (follower) await follower.stop(20_000);
    await stopOk(rep);
  }
  const log = await follower!.log();
  assert.equal((log.match(/follow: restored/g) ?? []).length, 1, "restored afresh only once");
});

Deno.test("restore -f: follows a replica written by the real v0.3.13", async () => {
  await using dir = await tempDir("litestream-follow-v0313-");
  const db = `${dir.path}/primary.db`;
  const replica = `${dir.path}/replica`;
  const out = `${dir.path}/copy.db`;
  const config = await writeConfig(
    `${dir.path}/litestream.yml`,
    configYaml([{ path: db, replicas: [{ type: "file", path: replica }] }]),
  );
  const writer = await startWriter(db, dir.path, { migrateAt: MIGRATE_AT, pauseMs: 10 });
  const rep = await startV0313Replicate(config, { logPath: `${dir.path}/v0313.log` });
  const stop = `${dir.path}/readers.stop`;
  let follower: ReturnType<typeof startFollower> | undefined;
  let readers: Reader[] = [];
  try {
    await waitForSnapshot(replica);
    follower = startFollower(
      ["-follow-interval", "200ms", "-o", out, `file://${replica}`],
      `${dir.path}/follower.log`,
    );
    await follower.waitForLog(/following/, { timeoutMs: 30_000 });
    readers = await startReaders(out, dir.path, stop, ["node-sqlite"]);
    await writer.reach(MIGRATE_AT + 300, 60_000);
    await writer.stop();
    await converged(out, db);
    assert.equal(await integrityCheck(out), "ok");
  } finally {
    await writer.stop().catch(() => {});
    await checkReaders(readers, stop);
    if (follower) {
      const { status } = await follower.stop(20_000);
      assert.equal(status.code, 0);
    }
    await stopV0313Replicate(rep);
  }
});

Deno.test("restore -f: bad input is refused; an unreachable replica is retried", async () => {
  await using dir = await tempDir("litestream-follow-input-");
  const db = `${dir.path}/primary.db`;
  const replica = `${dir.path}/replica`;
  const url = `file://${replica}`;
  const out = `${dir.path}/copy.db`;
  for (
    const [flags, named] of [
      [["-timestamp", "2024-01-01T00:00:00Z"], "-timestamp"],
      [["-index", "1"], "-index"],
      [["-o", "-"], "-o -"],
      [["-follow-interval", "soon"], "-follow-interval"],
    ] as const
  ) {
    const r = await runLitestream([
      "restore",
      "-f",
      ...flags,
      ...(flags[0] === "-o" ? [] : ["-o", out]),
      url,
    ]);
    assert.equal(r.code, 1, `${flags.join(" ")}: ${r.err}`);
    // One line naming the flag (then the usage text where Go's flag package would refuse it).
    const first = r.err.split("\n")[0];
    assert.ok(first.includes(named), `${flags.join(" ")} names ${named}: ${first}`);
  }
  const noFfi = await runLitestream(["restore", "-f", "-o", out, url], {
    permissions: ["--allow-read", "--allow-write", "--allow-env"],
  });
  assert.equal(noFfi.code, 1);
  assert.match(noFfi.err, /--allow-ffi/);
  const stray = await runLitestream(["restore", "-follow-interval", "1s", "-o", out, url]);
  assert.equal(stray.code, 1);
  assert.match(stray.err, /-follow-interval needs -f/);

  const config = await writeConfig(
    `${dir.path}/litestream.yml`,
    configYaml([{ path: db, replicas: [{ type: "file", path: replica }] }]),
  );
  const writer = await startWriter(db, dir.path, { migrateAt: MIGRATE_AT, pauseMs: 10 });
  const rep = startReplicate(["-config", config], { logPath: `${dir.path}/replicate.log` });
  const stop = `${dir.path}/readers.stop`;
  let follower: ReturnType<typeof startFollower> | undefined;
  let readers: Reader[] = [];
  try {
    await waitForSnapshot(replica);
    // An output that exists without its position file is refused, naming what to delete.
    await Deno.writeTextFile(out, "not ours");
    const exists = await runLitestream(["restore", "-f", "-o", out, url]);
    assert.equal(exists.code, 1);
    assert.match(
      exists.err,
      /exists without its follow position file .*copy\.db-follow\.json.*delete/,
    );
    assert.equal(await Deno.readTextFile(out), "not ours", "left untouched");
    await Deno.remove(out);

    follower = startFollower(
      ["-follow-interval", "100ms", "-o", out, url],
      `${dir.path}/follower.log`,
    );
    await follower.waitForLog(/following/, { timeoutMs: 30_000 });
    readers = await startReaders(out, dir.path, stop, ["python"]);
    await writer.reach(MIGRATE_AT + 20);

    // The replica goes away: the follower logs, backs off and keeps the last state readable.
    await stopOk(rep);
    const mark = await follower.mark();
    await Deno.rename(replica, `${replica}.away`);
    await follower.waitForLog(/poll failed; serving the last state/, { after: mark });
    await follower.waitForLog(/poll failed; serving the last state[^\n]*\n[^]*poll failed/, {
      after: mark,
      timeoutMs: 20_000,
    });
    const during = readers[0].lines.length;
    await waitFor("readers still served", () => readers[0].lines.length > during + 10);
    await Deno.rename(`${replica}.away`, replica);
    const rep2 = startReplicate(["-config", config], { logPath: `${dir.path}/replicate.log` });
    try {
      await writer.stop();
      await converged(out, db, 60_000);
    } finally {
      await stopOk(rep2);
    }
  } finally {
    await writer.stop().catch(() => {});
    await checkReaders(readers, stop);
    if (follower) await follower.stop(20_000);
    await stopOk(rep).catch(() => {});
  }
});
