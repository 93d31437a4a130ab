/**
 * Fidelity of our GCS test server (tests/support/gcs_server.ts), proved with Google's own
 * clients: `@google-cloud/storage` (Node.js, run under Deno) drives uploads in its multipart and
 * resumable forms, whole and ranged downloads (checking the server's MD5 and CRC32C), listings
 * with prefix, delimiter and page tokens, and deletes; Litestream v0.3.13 (Google's Go library,
 * through `STORAGE_EMULATOR_HOST`) replicates a database past its 16 MiB multipart limit, so a
 * resumable session, lists, reads through the XML API and restores it.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Storage } from "@google-cloud/storage";
import { startGcsServer } from "../support/gcs_server.ts";
import { runCommand, runLitestream } from "../support/cli.ts";
import { litestreamV0313, startV0313Replicate } from "../support/litestream_v0313.ts";
import { tempDir, waitFor } from "../support/poll.ts";
import { integrityCheck, sqlite } from "../support/sqlite_cli.ts";
import { configYaml } from "../support/config_yaml.ts";
import { fileHash } from "../support/hash.ts";
import { describeResult } from "../support/replicate_process.ts";
import { payload } from "../support/wal_source.ts";

const NO_SANITIZERS = { sanitizeOps: false, sanitizeResources: false, sanitizeExit: false };

Deno.test({
  name: "gcs server: @google-cloud/storage uploads, downloads, lists and deletes through it",
  ...NO_SANITIZERS,
  fn: async () => {
    await using srv = startGcsServer();
    const storage = new Storage({ apiEndpoint: srv.endpoint, projectId: "test" });
    const bucket = storage.bucket(srv.bucket);
    const small = payload(1, 100_000);
    const big = payload(2, 1024 * 1024 + 5);
    const odd = "dir/odd name +%é€.bin";

    await bucket.file(odd).save(Buffer.from(small), { resumable: false });
    await bucket.file("dir/big").save(Buffer.from(big), { resumable: true, chunkSize: 256 * 1024 });
    assert.ok(srv.requests.some((r) => r.includes("uploadType=multipart")), "a multipart upload");
    assert.ok(
      srv.requests.filter((r) => r.startsWith("PUT ") && r.includes("upload_id")).length >= 5,
      "a resumable upload in 256 KiB chunks",
    );
    assert.deepEqual(srv.object(srv.bucket, odd), small);
    assert.deepEqual(srv.object(srv.bucket, "dir/big"), big);

    // Whole downloads are checked against the server's hashes by the library itself.
    const [whole] = await bucket.file("dir/big").download({ validation: "crc32c" });
    assert.deepEqual(new Uint8Array(whole), big);
    const [md5Checked] = await bucket.file(odd).download({ validation: "md5" });
    assert.deepEqual(new Uint8Array(md5Checked), small);
    const [ranged] = await bucket.file("dir/big").download({ start: 1000, end: 299_999 });
    assert.deepEqual(new Uint8Array(ranged), big.subarray(1000, 300_000));
    const [meta] = await bucket.file("dir/big").getMetadata();
    assert.equal(Number(meta.size), big.length);

    // Listing: a delimiter rolls up "directories"; maxResults pages with tokens.
    for (const n of ["a/1", "a/2", "a/3", "b/x/1", "top"]) {
      srv.put(srv.bucket, `list/${n}`, new Uint8Array([1]));
    }
    const [, , top] = await bucket.getFiles({
      prefix: "list/",
      delimiter: "/",
      autoPaginate: false,
    });
    const res = top as { items?: { name: string }[]; prefixes?: string[] };
    assert.deepEqual(res.prefixes, ["list/a/", "list/b/"]);
    assert.deepEqual(res.items?.map((i) => i.name), ["list/top"]);
    const names: string[] = [];
    let query: Record<string, unknown> | null = {
      prefix: "list/",
      maxResults: 2,
      autoPaginate: false,
    };
    let pages = 0;
    while (query) {
      const [files, next]: [{ name: string }[], Record<string, unknown> | null] = await bucket
        .getFiles(query) as never;
      names.push(...files.map((f) => f.name));
      query = next;
      pages++;
    }
    assert.deepEqual(names, ["list/a/1", "list/a/2", "list/a/3", "list/b/x/1", "list/top"]);
    assert.equal(pages, 3);

    await bucket.file(odd).delete();
    assert.equal(srv.object(srv.bucket, odd), undefined);
    await assert.rejects(bucket.file(odd).delete(), (e: { code?: number }) => e.code === 404);
    await assert.rejects(bucket.file(odd).download(), (e: { code?: number }) => e.code === 404);
  },
});

Deno.test({
  name: "gcs server: v0.3.13 (Google's Go library) uploads past 16 MiB in a resumable session, " +
    "reads through the XML API and restores",
  ...NO_SANITIZERS,
  fn: async () => {
    await using srv = startGcsServer();
    await using dir = await tempDir("gcs-server-");
    const env = { STORAGE_EMULATOR_HOST: srv.host };
    const db = `${dir.path}/db.sqlite`;
    await sqlite(
      db,
      "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);" +
        "INSERT INTO t(v) SELECT randomblob(4096) FROM generate_series(1, 5000);",
    );
    const url = `gcs://${srv.bucket}/big/db`;
    const cfg = `${dir.path}/v0313.yml`;
    await Deno.writeTextFile(cfg, configYaml([{ path: db, replicas: [{ url }] }]));
    await using rep = await startV0313Replicate(cfg, { env });
    await waitFor(
      "v0.3.13's snapshot and first WAL segment",
      () => {
        const names = srv.names(srv.bucket, "big/db/");
        return names.some((n) => n.endsWith(".snapshot.lz4")) &&
          names.some((n) => n.endsWith(".wal.lz4"));
      },
      60_000,
      200,
    );
    const { status } = await rep.stop();
    assert.ok(
      status.code === 0 || status.code === 1,
      `v0.3.13 exit ${status.code}; log:\n${await rep.log()}`,
    );
    assert.ok(srv.requests.some((r) => r.includes("uploadType=resumable")), "a resumable upload");
    assert.ok(srv.requests.some((r) => r.includes("uploadType=multipart")), "a multipart upload");

    const theirs = `${dir.path}/v0313.db`;
    const r = await runCommand(await litestreamV0313(), ["restore", "-o", theirs, url], { env });
    assert.equal(r.code, 0, describeResult(r));
    assert.ok(
      srv.requests.some((q) => q.startsWith(`GET /${srv.bucket}/big%2Fdb%2F`)),
      "XML reads",
    );
    assert.equal(await integrityCheck(theirs), "ok");
    assert.equal(await sqlite(theirs, "SELECT count(*) FROM t;"), "5000");
    const mine = `${dir.path}/ours.db`;
    const o = await runLitestream(["restore", "-o", mine, url], { env });
    assert.equal(o.code, 0, describeResult(o));
    assert.equal(await fileHash(mine), await fileHash(theirs));
  },
});
