/**
 * Snapshots read from S3 as parallel ranged parts (replicas/s3, replicas/ranged_read.ts), against
 * s3rver through the fault proxy: the bytes are the object's whatever the parallelism, a part
 * that breaks mid-body or stalls is retried on its own, a server that ignores `Range` is read as
 * one stream, and a snapshot replaced between parts is an error, never a splice of two objects.
 */

import assert from "node:assert/strict";
import { newGeneration } from "../../lib/names.ts";
import { S3Error, S3ReplicaClient } from "../../replicas/s3/mod.ts";
import { bytesOf, rejectsWith } from "../../replicas/test_streams.ts";
import { startFaultProxy } from "../support/fault_proxy.ts";
import { credentialsEnv, replicaClient, replicaUrl, startS3rver } from "../support/s3_server.ts";
import { configYaml, s3ReplicaKeys } from "../support/config_yaml.ts";
import { tempDir, waitFor } from "../support/poll.ts";
import { fileHash, sha256Hex } from "../support/hash.ts";
import { sqlite } from "../support/sqlite_cli.ts";
import {
  describeResult,
  runLitestream,
  startReplicate,
  stopOk,
  writeConfig,
} from "../support/replicate_process.ts";

const MiB = 1024 * 1024;
/** The smallest part S3 allows for uploads; reads use the same part size here. */
const PART = 5 * MiB;

/** Whether `a` and `b` hold the same bytes (without a diff of megabytes on failure). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Deterministic, incompressible-looking bytes. */
function payload(size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = 0x2545f491;
  for (let i = 0; i < size; i++) {
    x ^= x << 13, x ^= x >>> 17, x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

Deno.test("S3 snapshots read as parallel ranged parts", async (t) => {
  await using srv = await startS3rver({ allowMismatchedSignatures: true });
  await using proxy = startFaultProxy(srv.endpoint);
  const client = (path: string) =>
    new S3ReplicaClient({
      bucket: srv.bucket,
      path,
      endpoint: proxy.endpoint,
      accessKeyId: srv.accessKeyId,
      secretAccessKey: srv.secretAccessKey,
    }, { partSize: PART, readPartSize: PART, idleTimeoutMs: 1_000, maxAttempts: 3 });

  const gen = newGeneration();
  const data = payload(4 * PART + 123_457); // five parts, the last one short
  const writer = client("ranged");
  await writer.writeSnapshot(gen, 0, ReadableStream.from([data]));

  await t.step("the same bytes with parallelism 1, 8 and 32", async () => {
    for (const parallelism of [1, 8, 32]) {
      const c = client("ranged");
      assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0, { parallelism })), data);
      // One stream, or one ranged GET per part.
      assert.deepEqual(c.counters.requests.GET, parallelism === 1 ? 1 : 5, `p=${parallelism}`);
      assert.deepEqual(c.counters.bytes.GET, data.length);
      await c.close();
    }
  });

  await t.step("a part cut off mid-body resumes from where it stopped", async () => {
    const c = client("ranged");
    const before = proxy.stats.faults;
    proxy.setRules({
      fault: { kind: "cut", afterBodyBytes: 1_000_000 },
      method: "GET",
      pathIncludes: "snapshots",
      times: 2,
    });
    assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0, { parallelism: 8 })), data);
    assert.deepEqual(proxy.stats.faults - before, 2);
    assert.deepEqual(c.counters.requests.GET, 5 + 2, "each cut part resumed once");
    assert.deepEqual(c.counters.bytes.GET, data.length, "no byte read twice");
    proxy.setRules();
    await c.close();
  });

  await t.step("a stalled part is abandoned and sent again", async () => {
    const c = client("ranged");
    const before = proxy.stats.faults;
    proxy.setRules({
      fault: { kind: "stall" },
      method: "GET",
      pathIncludes: "snapshots",
      times: 1,
    });
    assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0, { parallelism: 8 })), data);
    assert.deepEqual(proxy.stats.faults - before, 1);
    proxy.setRules();
    await c.close();
  });

  await t.step("a server that ignores Range is read as one stream, and says so", async () => {
    const c = client("ranged");
    const reasons: string[] = [];
    proxy.setRules({ fault: { kind: "ignoreRange" }, method: "GET" });
    const stream = await c.readSnapshot(gen, 0, {
      parallelism: 8,
      onSingleStream: (r) => reasons.push(r),
    });
    assert.deepEqual(await bytesOf(stream), data);
    assert.deepEqual(c.counters.requests.GET, 1);
    assert.deepEqual(reasons.length, 1);
    assert.match(reasons[0], /snapshots\/00000000\.snapshot\.lz4: the server ignored Range/);
    proxy.setRules();
    await c.close();
  });

  await t.step("a snapshot replaced between parts is an error, not a splice", async () => {
    const c = client("ranged");
    const stream = await c.readSnapshot(gen, 0, { parallelism: 1 + 1 });
    const reader = stream.getReader({ mode: "byob" });
    const { value: head } = await reader.read(new Uint8Array(PART));
    assert.ok(head && sameBytes(head, data.subarray(0, PART)), "the first part");
    // Replaced while parts 2.. are still to be read: they are pinned to the first ETag.
    await writer.writeSnapshot(
      gen,
      0,
      ReadableStream.from([payload(4 * PART + 123_457).reverse()]),
    );
    const err = await rejectsWith(async () => {
      for (;;) if ((await reader.read(new Uint8Array(PART))).done) break;
    }, S3Error);
    assert.match(err.message, /PreconditionFailed|412/);
    await c.close();
  });

  await writer.close();
});

Deno.test({
  name: "restore -parallelism 1, 8 and 32 (and -o -) of a 20 MB snapshot from S3: the same bytes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using srv = await startS3rver();
    await using dir = await tempDir();
    const db = `${dir.path}/db.sqlite`;
    // Random blobs do not compress: the snapshot object is as large as the database.
    await sqlite(
      db,
      "PRAGMA journal_mode=WAL; CREATE TABLE t(b BLOB); WITH RECURSIVE n(i) AS " +
        "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20) " +
        "INSERT INTO t SELECT randomblob(1000000) FROM n;",
    );
    const path = "parallel";
    const cfg = await writeConfig(
      `${dir.path}/litestream.yml`,
      configYaml([{ path: db, replicas: [s3ReplicaKeys({ srv, path })] }]),
    );
    const rep = startReplicate(["-config", cfg], { logPath: `${cfg}.log` });
    const c = replicaClient(srv, path);
    try {
      await waitFor("the snapshot", async () => {
        const [gen] = await c.generations();
        return gen && (await c.snapshots(gen)).length > 0;
      }, 30_000);
    } finally {
      await c.close();
      await stopOk(rep);
    }
    const outputs: string[] = [];
    for (const parallelism of ["1", "8", "32"]) {
      const out = `${dir.path}/p${parallelism}.db`;
      const r = await runLitestream(
        ["restore", "-parallelism", parallelism, "-o", out, replicaUrl(srv, path)],
        { env: credentialsEnv(srv) },
      );
      assert.equal(r.code, 0, describeResult(r));
      outputs.push(await fileHash(out));
    }
    // To stdout without write permission: the snapshot's decoded blocks merged with the WAL's
    // pages in memory, the same bytes.
    const piped = await runLitestream(
      ["restore", "-parallelism", "8", "-o", "-", replicaUrl(srv, path)],
      { env: credentialsEnv(srv), permissions: ["--allow-read", "--allow-net", "--allow-env"] },
    );
    assert.equal(piped.code, 0, describeResult(piped));
    outputs.push(await sha256Hex(piped.stdout.slice()));
    assert.deepEqual(new Set(outputs).size, 1, "every parallelism restores the same bytes");
    assert.equal(
      await sqlite(`${dir.path}/p8.db`, "SELECT count(*), sum(length(b)) FROM t"),
      await sqlite(db, "SELECT count(*), sum(length(b)) FROM t"),
    );
    assert.equal(
      await sqlite(`${dir.path}/p8.db`, "SELECT hex(b) FROM t ORDER BY rowid DESC LIMIT 1"),
      await sqlite(db, "SELECT hex(b) FROM t ORDER BY rowid DESC LIMIT 1"),
    );
  },
});
