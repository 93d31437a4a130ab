/**
 * A log reader that stops reading (a log collector that is down) must stop neither replication
 * nor the application: `replicate` logs to a pipe that nobody reads while applications write.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CHILD_ENV, MAIN_TS, waitForRestore } from "../support/replicate_process.ts";
import { createWriterTable, stopping, Writer } from "../support/sqlite_cli.ts";
import { configYaml } from "../support/config_yaml.ts";
import { listReplicaObjects } from "../support/fixtures.ts";
import { tempDir, waitFor } from "../support/poll.ts";

/** A Linux pipe's default capacity. */
const PIPE_CAPACITY = 65_536;
/** Fewer bytes than any "wal segment written" debug line of this test holds (about 200). */
const SEGMENT_LINE_MIN_BYTES = 150;
/** Segments whose lines alone overflow the pipe twice. */
const SEGMENTS = Math.ceil((2 * PIPE_CAPACITY) / SEGMENT_LINE_MIN_BYTES);

Deno.test("replicate: a log pipe nobody reads stops neither replication nor the application's commits", async () => {
  await using dir = await tempDir("log-pipe-");
  const dbs = Array.from({ length: 8 }, (_, i) => ({
    path: `${dir.path}/db${i}.db`,
    replica: `${dir.path}/replica${i}`,
  }));
  for (const db of dbs) await createWriterTable(db.path);
  const cfg = `${dir.path}/litestream.yml`;
  // Debug lines on standard output (the config default), a "wal segment written" per upload.
  await Deno.writeTextFile(
    cfg,
    configYaml(dbs.map((db) => ({ path: db.path, replicas: [{ path: db.replica }] }))),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN_TS, "replicate", "-config", cfg],
    env: CHILD_ENV,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.finally(() => exited = true);
  try {
    const writers = await Promise.all(dbs.map((db) => Writer.start(db.path, { pauseMs: 10 })));
    await using stops = new AsyncDisposableStack();
    for (const w of writers) stops.use(stopping(w));
    // Every upload logs a line: this many segments overflow the pipe, which is not read.
    const segments = await waitFor(
      `${SEGMENTS} WAL segments in the replicas while the log is not read`,
      async () => {
        if (exited) throw new Error(`replicate exited: ${await stderr}`);
        const counts = await Promise.all(
          dbs.map(async (db) =>
            (await listReplicaObjects(db.replica)).filter((o) => o.kind === "wal").length
          ),
        );
        const n = counts.reduce((a, b) => a + b, 0);
        return n >= SEGMENTS ? n : 0;
      },
      90_000,
      250,
    );
    // The application's commits all went through (a failed one stops its writer with an error).
    const last = await Promise.all(writers.map((w) => w.stop()));
    for (const [i, db] of dbs.entries()) {
      await waitForRestore(dir.path, [`file://${db.replica}`], [{ table: "t", lastId: last[i] }]);
    }

    // An exit with the reader still stalled gives up on the unread lines after a while.
    child.kill("SIGTERM");
    await waitFor("replicate to exit with its log unread", () => exited, 60_000);
    const { code } = await status;
    assert.equal(code, 0, await stderr);
    const out = await new Response(child.stdout).text();
    // The pipe holds what was written before it filled; the rest of the lines waited.
    const logged = out.match(/msg="wal segment written"/g)?.length ?? 0;
    assert.ok(logged < segments / 2, `${logged} segment lines read, ${segments} uploaded`);
    const lines = out.split("\n").slice(0, -1); // the last may be cut where the pipe filled
    assert.match(lines[0], /msg=litestream version=/);
    for (const line of lines) assert.match(line, /^time=\S+ level=[A-Z]+ msg=/, "a whole line");
  } finally {
    if (!exited) child.kill("SIGKILL");
    await status;
    await stderr;
  }
});
