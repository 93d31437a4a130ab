/**
 * `litestream replicate` and `restore` with a GCS replica, end to end, against our GCS test
 * server (tests/support/gcs_server.ts), with the real Litestream v0.3.13 on the same server
 * (it honours `STORAGE_EMULATOR_HOST`, as Google's Go library does):
 *
 * - our replica restores with ours and with v0.3.13 to identical bytes; a replica v0.3.13
 *   wrote restores with ours to v0.3.13's bytes;
 * - handover ours → v0.3.13 → ours on one replica keeps every row;
 * - connections dropped mid-upload and cut mid-download (tests/support/fault_proxy.ts):
 *   replication catches up, restores are exact;
 * - a bad credentials file: one line naming the replica and the file.
 */

import assert from "node:assert/strict";
import { runCommand, runLitestream } from "../support/cli.ts";
import { tempDir, waitFor } from "../support/poll.ts";
import {
  createWriterTable,
  integrityCheck,
  sqlite,
  stopping,
  Writer,
} from "../support/sqlite_cli.ts";
import { startGcsServer, type TestGcsServer } from "../support/gcs_server.ts";
import { startFaultProxy } from "../support/fault_proxy.ts";
import { configYaml } from "../support/config_yaml.ts";
import { fileHash } from "../support/hash.ts";
import {
  litestreamV0313,
  startV0313Replicate,
  stopV0313Replicate,
} from "../support/litestream_v0313.ts";
import {
  type CliResult,
  describeResult,
  startReplicate,
  stopOk,
  waitForRestore,
} from "../support/replicate_process.ts";
import { GcsReplicaClient } from "../../replicas/gcs/mod.ts";

const NO_SANITIZERS = { sanitizeOps: false, sanitizeResources: false, sanitizeExit: false };

/** One server for the file; every child process is told of it by `STORAGE_EMULATOR_HOST`. */
const srv: TestGcsServer = startGcsServer();
globalThis.addEventListener("unload", () => void srv.close());
/** The environment of every child: our server (test files may share a process: no Deno.env). */
const EMU = { STORAGE_EMULATOR_HOST: srv.host };

/** Our CLI against the server (`env` overrides). */
function ours(args: string[], env: Record<string, string> = {}) {
  return runLitestream(args, { env: { ...EMU, ...env } });
}

let seq = 0;
const freshPath = (what: string) => `${what}-${++seq}/db`;
const urlOf = (path: string) => `gcs://${srv.bucket}/${path}`;

function gcsConfig(db: string, path: string, extra = {}): string {
  return configYaml([{ path: db, replicas: [{ url: urlOf(path) }], extra }]);
}

function assertOk(r: CliResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed: ${describeResult(r)}`);
}

async function assertHoldsRows(path: string, lastId: number, what: string): Promise<void> {
  assert.equal(await integrityCheck(path), "ok", `${what}: integrity check`);
  assert.equal(
    await sqlite(path, "SELECT count(*), coalesce(max(id), 0) FROM t;"),
    `${lastId}|${lastId}`,
    `${what}: rows of t (count|max id)`,
  );
}

/** Waits until the replica holds WAL segments of at least `indexes` distinct (generation, index). */
async function waitForIndexes(path: string, indexes: number, timeoutMs = 60_000): Promise<void> {
  const c = new GcsReplicaClient({ bucket: srv.bucket, path }, {}, {
    endpoint: srv.endpoint,
    anonymous: true,
  });
  const count = async () => {
    let n = 0;
    for (const g of await c.generations()) {
      n += new Set((await c.walSegments(g)).map((s) => s.index)).size;
    }
    return n;
  };
  const seen = await count();
  await waitFor(
    `${indexes} more WAL indexes in ${urlOf(path)}`,
    async () => await count() >= seen + indexes,
    timeoutMs,
    200,
  );
}

async function v0313(args: string[], env: Record<string, string> = {}) {
  return await runCommand(await litestreamV0313(), args, {
    env: { ...EMU, ...env },
    timeoutMs: 60_000,
  });
}

async function startOurs(
  dir: string,
  yaml: string,
  name: string,
  env: Record<string, string> = {},
) {
  const cfg = `${dir}/${name}.yml`;
  await Deno.writeTextFile(cfg, yaml);
  return startReplicate(["-config", cfg], {
    logPath: `${dir}/${name}.log`,
    env: { ...EMU, ...env },
  });
}

Deno.test({
  name: "gcs: our replica restores with ours and with v0.3.13 to identical bytes",
  ...NO_SANITIZERS,
  fn: async () => {
    await using dir = await tempDir("gcs-e2e-");
    const db = `${dir.path}/db.sqlite`;
    const path = freshPath("roundtrip");
    await createWriterTable(db);
    await using rep = await startOurs(dir.path, gcsConfig(db, path), "ours");
    const writer = await Writer.start(db, { pauseMs: 10 });
    await using _w = stopping(writer);
    await waitForIndexes(path, 3);
    const lastId = await writer.stop();
    await stopOk(rep);

    const mine = `${dir.path}/ours.db`;
    assertOk(await ours(["restore", "-o", mine, urlOf(path)]), "our restore");
    await assertHoldsRows(mine, lastId, "our restore");
    const theirs = `${dir.path}/v0313.db`;
    assertOk(await v0313(["restore", "-o", theirs, urlOf(path)]), "v0.3.13 restore");
    assert.equal(await fileHash(theirs), await fileHash(mine), "v0.3.13's restore = ours");
    const gens = await ours(["generations", urlOf(path)]);
    assertOk(gens, "generations");
    assert.match(gens.out, /^gcs\s+[0-9a-f]{16}\s/m);
  },
});

Deno.test({
  name: "gcs: a replica v0.3.13 wrote restores with ours to v0.3.13's bytes",
  ...NO_SANITIZERS,
  fn: async () => {
    await using dir = await tempDir("gcs-e2e-");
    const db = `${dir.path}/db.sqlite`;
    const path = freshPath("v0313");
    await createWriterTable(db);
    const cfg = `${dir.path}/v0313.yml`;
    await Deno.writeTextFile(cfg, gcsConfig(db, path));
    await using rep = await startV0313Replicate(cfg, { env: EMU });
    const writer = await Writer.start(db, { pauseMs: 10 });
    await using _w = stopping(writer);
    await waitForIndexes(path, 3);
    const lastId = await writer.stop();
    // Shipped before the stop: v0.3.13's shutdown sync may hang (see stopV0313Replicate).
    await waitForRestore(dir.path, [urlOf(path)], [{ table: "t", lastId }], 30_000, EMU);
    await stopV0313Replicate(rep);

    const theirs = `${dir.path}/v0313.db`;
    assertOk(await v0313(["restore", "-o", theirs, urlOf(path)]), "v0.3.13 restore");
    await assertHoldsRows(theirs, lastId, "v0.3.13's restore");
    const mine = `${dir.path}/ours.db`;
    assertOk(await ours(["restore", "-o", mine, urlOf(path)]), "our restore");
    assert.equal(await fileHash(mine), await fileHash(theirs), "our restore = v0.3.13's");
    const byConfig = `${dir.path}/ours-config.db`;
    assertOk(
      await ours(["restore", "-config", cfg, "-o", byConfig, db]),
      "config restore",
    );
    assert.equal(await fileHash(byConfig), await fileHash(theirs), "config restore = v0.3.13's");
  },
});

Deno.test({
  name: "gcs: handover ours → v0.3.13 → ours on one replica keeps every row",
  ...NO_SANITIZERS,
  fn: async () => {
    await using dir = await tempDir("gcs-e2e-");
    const db = `${dir.path}/db.sqlite`;
    const path = freshPath("handover");
    await createWriterTable(db);
    const cfg = `${dir.path}/litestream.yml`;
    await Deno.writeTextFile(cfg, gcsConfig(db, path));
    const writer = await Writer.start(db, { pauseMs: 10 });
    await using _w = stopping(writer);

    const first = startReplicate(["-config", cfg], { logPath: `${dir.path}/ours-1.log`, env: EMU });
    await waitForIndexes(path, 2);
    await stopOk(first);
    const middle = await startV0313Replicate(cfg, { logPath: `${dir.path}/v0313.log`, env: EMU });
    await waitForIndexes(path, 2);
    await stopV0313Replicate(middle);
    const last = startReplicate(["-config", cfg], { logPath: `${dir.path}/ours-2.log`, env: EMU });
    await waitForIndexes(path, 2);
    const lastId = await writer.stop();
    await stopOk(last);

    const mine = `${dir.path}/ours.db`;
    assertOk(await ours(["restore", "-o", mine, urlOf(path)]), "our restore");
    await assertHoldsRows(mine, lastId, "restore after the handovers");
    const theirs = `${dir.path}/v0313.db`;
    assertOk(await v0313(["restore", "-o", theirs, urlOf(path)]), "v0.3.13 restore");
    assert.equal(await fileHash(theirs), await fileHash(mine), "v0.3.13's restore = ours");
  },
});

Deno.test({
  name: "gcs: connections dropped mid-upload and cut mid-download: replication catches up, " +
    "restores are exact",
  ...NO_SANITIZERS,
  fn: async () => {
    await using dir = await tempDir("gcs-e2e-");
    await using proxy = startFaultProxy(srv.endpoint);
    const viaProxy = { STORAGE_EMULATOR_HOST: new URL(proxy.endpoint).host };
    const db = `${dir.path}/db.sqlite`;
    const path = freshPath("faults");
    await createWriterTable(db);
    // Snapshots past one 8 MiB chunk go up in a resumable session: blobs make the database big.
    await sqlite(db, "INSERT INTO t(v) SELECT randomblob(4096) FROM generate_series(1, 2600);");
    // Uploads: two chunk requests of the first snapshot's resumable session and every third
    // other upload request (multipart, session start) dropped unanswered.
    const chunkDrops = {
      fault: { kind: "drop" as const },
      pathIncludes: "upload_id",
      share: 0.5,
      times: 2,
    };
    proxy.setRules(
      chunkDrops,
      { fault: { kind: "drop" }, method: "POST", share: 1 / 3 },
    );
    await using rep = await startOurs(dir.path, gcsConfig(db, path), "faults", viaProxy);
    const writer = await Writer.start(db, { pauseMs: 10 });
    await using _w = stopping(writer);
    await waitFor("10 dropped uploads", () => proxy.stats.faults >= 10, 60_000, 100);
    await waitForIndexes(path, 2, 60_000);
    assert.ok(srv.requests.filter((r) => r.includes("upload_id")).length >= 2, "chunked upload");
    proxy.setRules();
    const lastId = await writer.stop();
    const restored = await waitFor(
      `a restore holding ${lastId} rows`,
      async () => {
        const out = `${dir.path}/catchup-${crypto.randomUUID()}.db`;
        const r = await ours(["restore", "-o", out, urlOf(path)]);
        if (r.code !== 0) return undefined;
        const got = await sqlite(out, "SELECT max(id) FROM t;");
        return got === String(lastId) ? out : undefined;
      },
      60_000,
      500,
    );
    assert.equal(await integrityCheck(restored), "ok");
    await stopOk(rep);

    // Downloads: the first bodies cut short; the restore resumes with ranged reads.
    const clean = `${dir.path}/clean.db`;
    assertOk(await ours(["restore", "-o", clean, urlOf(path)]), "clean restore");
    await assertHoldsRows(clean, lastId, "clean restore");
    const cutAt = proxy.stats.faults;
    proxy.setRules({
      fault: { kind: "cut", afterBodyBytes: 1_000_000 },
      method: "GET",
      pathIncludes: "alt=media",
      times: 3,
    });
    const resumed = `${dir.path}/resumed.db`;
    assertOk(
      await ours(["restore", "-o", resumed, urlOf(path)], viaProxy),
      "restore with cut bodies",
    );
    assert.equal(proxy.stats.faults - cutAt, 3, "three bodies cut");
    assert.equal(await fileHash(resumed), await fileHash(clean), "resumed restore = clean restore");
  },
});

Deno.test({
  name: "gcs: a bad credentials file is one line naming the replica and the file",
  ...NO_SANITIZERS,
  fn: async () => {
    await using dir = await tempDir("gcs-e2e-");
    const bad = `${dir.path}/key.json`;
    await Deno.writeTextFile(bad, "{ not json");
    const env = { STORAGE_EMULATOR_HOST: "", GOOGLE_APPLICATION_CREDENTIALS: bad };
    const r = await ours(["restore", "-o", `${dir.path}/out.db`, urlOf("creds/db")], env);
    assert.equal(r.code, 1, describeResult(r));
    const lines = r.err.trim().split("\n");
    assert.equal(lines.length, 1, r.err);
    assert.match(
      lines[0],
      new RegExp(
        `gcs://${srv.bucket}/creds/db: credentials file ${bad} \\(GOOGLE_APPLICATION_CREDENTIALS\\): not valid JSON`,
      ),
    );
    await assert.rejects(Deno.stat(`${dir.path}/out.db`));

    const db = `${dir.path}/db.sqlite`;
    await createWriterTable(db);
    await using rep = await startOurs(dir.path, gcsConfig(db, "creds/db"), "creds", env);
    await waitFor(
      "the credentials error in the log",
      async () => (await rep.log()).includes(`credentials file ${bad}`),
      30_000,
      200,
    );
    const line = (await rep.log()).split("\n").find((l) => l.includes(`credentials file ${bad}`))!;
    assert.match(line, /gcs:\/\/litestream-test\/creds\/db/);
    // Nothing could be shipped: the final sync fails too, and the exit status says so.
    assert.equal((await rep.stop()).status.code, 1, await rep.log());
  },
});

Deno.test({
  name: "gcs: without --allow-net, one line naming the flag, at once (no retries)",
  ...NO_SANITIZERS,
  fn: async () => {
    await using dir = await tempDir("gcs-e2e-");
    const before = srv.requests.length;
    const r = await runLitestream(["restore", "-o", `${dir.path}/out.db`, urlOf("perm/db")], {
      env: EMU,
      permissions: ["--allow-read", "--allow-write", "--allow-env"],
    });
    assert.equal(r.code, 1, describeResult(r));
    assert.equal(
      r.err,
      `error: gcs://${srv.bucket}/perm/db/generations/: missing Deno permission: net access to ` +
        `"${srv.host}"; run again with --allow-net\n`,
    );
    assert.equal(srv.requests.length, before, "no request reached the server");
  },
});
