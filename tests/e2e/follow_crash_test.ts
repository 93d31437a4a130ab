/**
 * Follow mode under crashes: the follower is SIGKILLed at random moments while a writer commits
 * and readers query the copy, and restarted each time. It must resume from its position file
 * (never restore afresh), roll back a batch it did not finish, and converge; readers must never
 * see a state the primary did not commit.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tempDir } from "../support/poll.ts";
import { configYaml } from "../support/config_yaml.ts";
import { startReplicate, stopOk, writeConfig } from "../support/replicate_process.ts";
import {
  checkSamples,
  type Reader,
  READER_KINDS,
  startFollower,
  startReader,
  startWriter,
  waitForConvergence,
  waitForSnapshot,
} from "../support/follow_load.ts";

const MIGRATE_AT = 300;
const KILLS = 10;

Deno.test("restore -f: SIGKILLed at random moments under load, it resumes and converges", async () => {
  await using dir = await tempDir("litestream-follow-crash-");
  const db = `${dir.path}/primary.db`;
  const replica = `${dir.path}/replica`;
  const out = `${dir.path}/copy.db`;
  const writer = await startWriter(db, dir.path, { migrateAt: MIGRATE_AT, pauseMs: 5 });
  const config = await writeConfig(
    `${dir.path}/litestream.yml`,
    configYaml([{ path: db, replicas: [{ type: "file", path: replica }] }]),
  );
  const rep = startReplicate(["-config", config], { logPath: `${dir.path}/replicate.log` });
  const logPath = `${dir.path}/follower.log`;
  const args = ["-follow-interval", "100ms", "-o", out, `file://${replica}`];
  const readers: Reader[] = [];
  const stop = `${dir.path}/readers.stop`;
  let follower = undefined as ReturnType<typeof startFollower> | undefined;
  try {
    await waitForSnapshot(replica);
    follower = startFollower(args, logPath);
    await follower.waitForLog(/following/, { timeoutMs: 30_000 });
    for (const kind of READER_KINDS) readers.push(await startReader(kind, out, stop, dir.path));
    for (let k = 0; k < KILLS; k++) {
      // A random moment while it follows: somewhere in its polls and batches.
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 700));
      await follower.kill();
      const mark = await follower.mark();
      follower = startFollower(args, logPath);
      await follower.waitForLog(/following/, { after: mark, timeoutMs: 30_000 });
    }
    await writer.reach(MIGRATE_AT + 100, 60_000);
    const last = await writer.stop();
    await waitForConvergence({ out, db, readers, last, migrateAt: MIGRATE_AT, timeoutMs: 40_000 });
  } finally {
    await Deno.writeTextFile(stop, "");
    await Promise.all(readers.map((r) => r.done));
    if (follower) await follower.stop(20_000);
    await stopOk(rep);
  }
  const log = await follower!.log();
  assert.equal((log.match(/follow: restored/g) ?? []).length, 1, "restored afresh only once");
  assert.equal((log.match(/follow: resuming/g) ?? []).length, KILLS);
  for (const r of readers) {
    const report = checkSamples(r.lines, MIGRATE_AT);
    // A reader that opens the copy read-only while a killed follower's journal is hot is
    // refused by SQLite (it cannot roll back): an error, never a wrong state.
    const unexpected = report.errors.filter((e) =>
      !/readonly|read-only|READONLY_ROLLBACK/i.test(e)
    );
    assert.deepEqual(unexpected, [], `${r.kind} reader errors`);
    assert.deepEqual(report.violations, [], `${r.kind} invariant violations`);
    assert.ok(report.samples >= 50, `${r.kind}: only ${report.samples} samples`);
  }
});
