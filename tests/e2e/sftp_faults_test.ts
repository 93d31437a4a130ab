/**
 * SFTP replicas under faults, end to end against OpenSSH's real sshd: SSH
 * connections cut mid-upload and dropped while `replicate` runs (through a
 * TCP fault proxy), a refused key, and a full disk on the server (a small
 * tmpfs that only sshd's mount namespace sees). Errors name the replica and
 * the object; no final name ever holds a partial object; the replica
 * catches up once the fault is gone.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir, waitFor } from "../support/poll.ts";
import { createWriterTable, sqlite, Writer } from "../support/sqlite_cli.ts";
import { configYaml, type YamlKeys } from "../support/config_yaml.ts";
import { listReplicaObjects } from "../support/fixtures.ts";
import { describeResult, runLitestream } from "../support/cli.ts";
import { startReplicate, waitForRestore } from "../support/replicate_process.ts";
import { sshdAvailable, startSshd } from "../support/sshd.ts";
import { startTcpFaultProxy } from "../support/tcp_fault_proxy.ts";
import { decompressFrame } from "../../lib/lz4/mod.ts";

const NO_SANITIZERS = { sanitizeOps: false, sanitizeResources: false, sanitizeExit: false };
const ignore = sshdAvailable() !== undefined;
if (ignore) console.warn(`sftp tests skipped: ${sshdAvailable()}`);

/**
 * Writes `dir/litestream.yml` for `db` and its one replica, after the top-level lines `head`,
 * with the database settings `extra`.
 */
async function writeConfig(
  dir: string,
  db: string,
  replica: YamlKeys,
  head = "",
  extra?: YamlKeys,
): Promise<string> {
  const path = join(dir, "litestream.yml");
  await Deno.writeTextFile(path, configYaml([{ path: db, replicas: [replica], extra }], head));
  return path;
}

/** The keys of a replica at `replicaDir` on `sshd`, its host key pinned; `more` added. */
function pinnedReplica(
  sshd: Awaited<ReturnType<typeof startSshd>>,
  replicaDir: string,
  more: YamlKeys = {},
): YamlKeys {
  return sshd.replicaKeys(replicaDir, { "host-key": `"${sshd.hostKey}"`, ...more });
}

/** Every object under a final name decodes as a whole LZ4 frame (none is partial). */
async function assertNoPartialObjects(replicaDir: string): Promise<number> {
  const objects = await listReplicaObjects(replicaDir);
  for (const o of objects) decompressFrame(await Deno.readFile(o.path), o.path);
  return objects.length;
}

Deno.test({
  name: "sftp faults: connections cut mid-upload and dropped; errors name the replica; it " +
    "catches up with every row and no partial object",
  ignore,
  ...NO_SANITIZERS,
  fn: async () => {
    await using sshd = await startSshd();
    await using proxy = startTcpFaultProxy(sshd.port);
    await using dir = await tempDir();
    const db = join(dir.path, "app.db");
    const replicaDir = join(sshd.dir, "replica");
    await createWriterTable(db);
    const config = await writeConfig(
      dir.path,
      db,
      pinnedReplica(sshd, replicaDir, { host: `127.0.0.1:${proxy.port}`, name: "remote" }),
    );
    await using rep = startReplicate(["-config", config], { logPath: join(dir.path, "rep.log") });
    const app = await Writer.start(db, { pauseMs: 5, blobSize: 4096 });
    let lastId: number;
    try {
      await rep.waitForLog(/wal segment written|snapshot written/i, { timeoutMs: 30_000 });
      // Cut a connection mid-upload (after 64 KiB sent), then, once the replica has recovered
      // and shipped more, drop every open connection.
      proxy.cut("up", 1, 64 * 1024);
      await waitFor("the proxy to cut an upload", () => proxy.stats.cuts === 1, 30_000);
      // The cut upload is a sync's, or the first snapshot's checksum record's (its WAL first).
      const failed = await rep.waitForLog(/(replica sync failed|checksum record not written).*/, {
        timeoutMs: 30_000,
      });
      const mark = await rep.mark();
      await rep.waitForLog(/wal segment written/, { after: mark, timeoutMs: 30_000 });
      assert.ok(proxy.dropAll() >= 1);
      assert.match(failed[0], /replica=remote/);
      assert.match(failed[0], new RegExp(`sftp://${sshd.user}@127\\.0\\.0\\.1:${proxy.port}/`));
      lastId = await app.stop();
    } finally {
      await app.stop().catch(() => {});
    }
    await waitForRestore(dir.path, ["-config", config, db], [{ table: "t", lastId }], 40_000);
    const { status } = await rep.stop();
    assert.equal(status.code, 0, await rep.log());
    assert.ok(await assertNoPartialObjects(replicaDir) > 0);
  },
});

Deno.test({
  name: "sftp faults: a server that stops answering during shutdown is given up at " +
    "shutdown-sync-timeout, said so, and replicate exits 1",
  ignore,
  ...NO_SANITIZERS,
  fn: async () => {
    await using sshd = await startSshd();
    await using proxy = startTcpFaultProxy(sshd.port);
    await using dir = await tempDir();
    const db = join(dir.path, "app.db");
    await createWriterTable(db);
    const config = await writeConfig(
      dir.path,
      db,
      pinnedReplica(sshd, join(sshd.dir, "replica"), { host: `127.0.0.1:${proxy.port}` }),
      "shutdown-sync-timeout: 2s\n",
    );
    await using rep = startReplicate(["-config", config], { logPath: join(dir.path, "rep.log") });
    await rep.waitForLog(/snapshot written/, { timeoutMs: 30_000 });
    // The server stops answering (every byte held for ten minutes), with a commit unshipped.
    proxy.delayMs = 600_000;
    await sqlite(db, "INSERT INTO t (v) VALUES (randomblob(100));");
    // Without the timeout: the stalled upload, a reconnect and the final sync's own connect
    // attempt, each waiting out the keepalive or the 20 s connect timeout (over a minute).
    const { status } = await rep.stop(15_000);
    assert.equal(status.code, 1, await rep.log());
    const log = await rep.log();
    assert.match(
      log,
      /final replica sync unfinished at shutdown-sync-timeout; given up.*timeout=2s/,
    );
    assert.match(log, /a final sync failed/);
  },
});

Deno.test({
  name: "sftp faults: a server that goes down as the shutdown begins is tried again every " +
    "shutdown-sync-interval; back in time, the final sync succeeds and replicate exits 0",
  ignore,
  ...NO_SANITIZERS,
  fn: async () => {
    await using sshd = await startSshd();
    await using dir = await tempDir();
    const db = join(dir.path, "app.db");
    await createWriterTable(db);
    // The replica worked (its snapshot is written) and has nothing new when the server goes
    // down and the shutdown begins: its final sync is the first to meet the outage.
    // No checkpoint of ours either: one would ship a new WAL index to the server that is down.
    const config = await writeConfig(
      dir.path,
      db,
      pinnedReplica(sshd, join(sshd.dir, "replica")),
      "shutdown-sync-timeout: 60s\nshutdown-sync-interval: 200ms\n",
      { "checkpoint-interval": 0 },
    );
    await using rep = startReplicate(["-config", config], { logPath: join(dir.path, "rep.log") });
    // The snapshot's checksum record is its last write: after it, the replica is idle.
    await rep.waitForLog(/checksum record written/, { timeoutMs: 30_000 });
    await sshd.stop();
    const lastId = Number(await sqlite(db, "SELECT max(id) FROM t;"));
    const mark = await rep.mark();
    const stopped = rep.stop(60_000);
    await rep.waitForLog(/final replica sync failed; retrying/, { after: mark, timeoutMs: 30_000 });
    await sshd.start();
    const { status } = await stopped;
    assert.equal(status.code, 0, await rep.log());
    await waitForRestore(dir.path, ["-config", config, db], [{ table: "t", lastId }], 30_000);
  },
});

Deno.test({
  name: "sftp faults: a refused key fails replicate and restore with the replica named",
  ignore,
  ...NO_SANITIZERS,
  fn: async () => {
    await using sshd = await startSshd();
    await using dir = await tempDir();
    const db = join(dir.path, "app.db");
    await createWriterTable(db);
    await sqlite(db, "INSERT INTO t (v) VALUES (randomblob(100));");
    const wrongKey = join(dir.path, "wrong_key");
    await new Deno.Command("ssh-keygen", {
      args: ["-q", "-t", "ed25519", "-N", "", "-f", wrongKey],
    })
      .output();
    const replicaDir = join(sshd.dir, "replica");
    const config = await writeConfig(
      dir.path,
      db,
      pinnedReplica(sshd, replicaDir, { "key-path": wrongKey }),
    );
    const location = `sftp://${sshd.user}@127.0.0.1:${sshd.port}${replicaDir}`;
    await using rep = startReplicate(["-config", config], { logPath: join(dir.path, "rep.log") });
    const failed = await rep.waitForLog(/replica sync failed.*/, { timeoutMs: 30_000 });
    assert.ok(failed[0].includes("replica=sftp"), failed[0]);
    assert.ok(failed[0].includes(`${location}: login failed`), failed[0]);
    assert.ok(failed[0].includes(`key-path ${wrongKey}`), failed[0]);
    await rep.stop();

    const r = await runLitestream(["restore", "-config", config, "-o", join(dir.path, "o.db"), db]);
    assert.equal(r.code, 1, describeResult(r));
    assert.ok(r.err.includes(`${location}: login failed`), r.err);
    assert.ok(!r.err.trim().includes("\n    at "), `no stack trace: ${r.err}`);
  },
});

Deno.test({
  name: "sftp faults: a full disk on the server is reported naming the object; nothing partial " +
    "is left; the replica catches up when space is freed",
  ignore,
  ...NO_SANITIZERS,
  fn: async () => {
    await using dir = await tempDir();
    const disk = join(dir.path, "disk");
    let sshd;
    try {
      sshd = await startSshd({ tmpfs: { dir: disk, size: "4m" } });
    } catch (err) {
      console.warn(`full-disk case skipped: cannot mount a tmpfs for sshd: ${err}`);
      return;
    }
    await using _sshd = sshd;
    const db = join(dir.path, "app.db");
    await createWriterTable(db);
    await sqlite(
      db,
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) " +
        "INSERT INTO t (v) SELECT randomblob(1024) FROM n;",
    );
    const replicaDir = join(disk, "replica");
    // Fill the disk but for a few KiB: the database's first snapshot does not fit.
    await sshd.exec(`dd if=/dev/zero of=${disk}/filler bs=4k 2>/dev/null; df -k ${disk} >&2`);
    const config = await writeConfig(
      dir.path,
      db,
      pinnedReplica(sshd, replicaDir),
    );
    // The first write is the replica lease's: its failure is the sync's, reported and retried.
    await using rep = startReplicate(["-config", config], { logPath: join(dir.path, "rep.log") });
    const failed = await rep.waitForLog(/(replica sync|replica lease renewal) failed.*/, {
      timeoutMs: 30_000,
    });
    assert.match(failed[0], /no space left on the server's disk: \d+ bytes free/);
    assert.match(failed[0], new RegExp(`replica=sftp error="sftp://[^ ]*${replicaDir}/`));
    // Nothing under a final name, and the temporary file was removed.
    assert.equal((await sshd.exec(`find ${disk}/replica -type f 2>/dev/null; true`)).trim(), "");

    const app = await Writer.start(db, { pauseMs: 20 });
    let lastId: number;
    try {
      await sshd.exec(`rm ${disk}/filler`);
      await rep.waitForLog(/snapshot written/i, { timeoutMs: 30_000 });
      lastId = await app.stop();
    } finally {
      await app.stop().catch(() => {});
    }
    await waitForRestore(dir.path, ["-config", config, db], [{ table: "t", lastId }], 30_000);
    const { status } = await rep.stop();
    assert.equal(status.code, 0, await rep.log());
  },
});
