/**
 * The S3 replica client against real S3 emulators (s3rver always, moto when
 * installed): the `ReplicaClient` contract shared with every backend, then
 * what is S3's own (key prefixes, paging, multipart, request counts, faults
 * injected by a loopback proxy, errors); plus URL parsing.
 */

import assert from "node:assert/strict";
import { ListObjectsCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { LitestreamError } from "../../lib/errors.ts";
import { newGeneration } from "../../lib/names.ts";
import { S3Error, S3ReplicaClient, type S3Tuning } from "../../replicas/s3/mod.ts";
import { cleanS3Path, parseS3Url, s3OptionsFromConfig } from "../../replicas/s3/url.ts";
import { type ContractBackend, replicaClientContract } from "../../replicas/contract.ts";
import {
  bytesOf,
  chunked,
  rejectsWith,
  streamOf,
  textOf,
  throwsWith,
} from "../../replicas/test_streams.ts";
import { type FaultProxy, startFaultProxy } from "../support/fault_proxy.ts";
import { tempDir, waitFor } from "../support/poll.ts";
import { startMoto, startS3rver, type TestS3Server } from "../support/s3_server.ts";
import { payload } from "../support/wal_source.ts";

// ---- helpers ----

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

/** A raw SDK client for checking what actually landed in the bucket. */
function rawClient(srv: TestS3Server): S3Client {
  return new S3Client({
    endpoint: srv.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: srv.accessKeyId, secretAccessKey: srv.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

async function rawKeys(raw: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let page;
  do {
    page = await raw.send(
      new ListObjectsCommand({ Bucket: bucket, Prefix: prefix, Marker: keys.at(-1) }),
    );
    keys.push(...(page.Contents ?? []).map((o) => o.Key!));
  } while (page.IsTruncated);
  return keys.sort();
}

/**
 * Sends a marker request and waits until the server has logged it (its log
 * trails the responses); returns a function that waits for `n` lines after it.
 */
async function markServerLog(srv: TestS3Server, log: () => string[]) {
  const marker = `/${srv.bucket}/log-marker-${crypto.randomUUID()}`;
  await fetch(srv.endpoint + marker).then((res) => res.body?.cancel());
  await waitFor("the server to log the marker", () => log().some((l) => l.endsWith(marker)));
  const after = () => log().slice(log().findIndex((l) => l.endsWith(marker)) + 1);
  return (n: number): Promise<string[]> =>
    waitFor(`${n} logged requests`, () => after().length >= n ? after() : undefined);
}

/** Test context: one server, a raw client, and a factory for clients that are closed at the end. */
class Ctx {
  readonly raw: S3Client;
  readonly #clients: S3ReplicaClient[] = [];

  constructor(readonly srv: TestS3Server) {
    this.raw = rawClient(srv);
  }

  client(
    path: string,
    opts: { endpoint?: string; accessKeyId?: string; bucket?: string; skipVerify?: boolean } = {},
    tuning: S3Tuning = {},
  ): S3ReplicaClient {
    const c = new S3ReplicaClient({
      bucket: opts.bucket ?? this.srv.bucket,
      path,
      endpoint: opts.endpoint ?? this.srv.endpoint,
      accessKeyId: opts.accessKeyId ?? this.srv.accessKeyId,
      secretAccessKey: this.srv.secretAccessKey,
      skipVerify: opts.skipVerify,
    }, tuning);
    this.#clients.push(c);
    return c;
  }

  async close() {
    await Promise.all(this.#clients.map((c) => c.close()));
    this.raw.destroy();
  }
}

// ---- the contract and S3's own steps, per server ----

/** The contract's backend: clients under `contract/` on `srv`, through `proxy` (to break reads). */
function s3Backend(ctx: Ctx, proxy: FaultProxy): ContractBackend<S3ReplicaClient> {
  const { bucket } = ctx.srv;
  const prefix = (c: S3ReplicaClient) => c.location.slice(`s3://${bucket}/`.length) + "/";
  const broken = { before: 0, times: 0 };
  return {
    client: (name) => ctx.client(`contract/${name}`, { endpoint: proxy.endpoint }),
    keys: async (c) =>
      (await rawKeys(ctx.raw, bucket, prefix(c))).map((k) => k.slice(prefix(c).length)),
    putRaw: async (c, key, Body) => {
      await ctx.raw.send(new PutObjectCommand({ Bucket: bucket, Key: prefix(c) + key, Body }));
    },
    leaseRaces: ctx.srv.name === "s3rver", // s3rver ignores If-Match / If-None-Match on PUT
    ranges: {
      breakReads: (times, afterBodyBytes) => {
        Object.assign(broken, { before: proxy.stats.faults, times });
        proxy.setRules({ fault: { kind: "cut", afterBodyBytes }, method: "GET", times });
      },
      check: (c, size) => {
        assert.deepEqual(proxy.stats.faults - broken.before, broken.times);
        assert.deepEqual(c.counters.requests.GET, 1 + broken.times, "a GET, then range GETs");
        assert.deepEqual(c.counters.bytes.GET, size);
      },
    },
  };
}

async function onServer(t: Deno.TestContext, srv: TestS3Server) {
  const ctx = new Ctx(srv);
  await using proxy = startFaultProxy(srv.endpoint);
  try {
    await replicaClientContract(t, s3Backend(ctx, proxy));

    await t.step(
      "keys follow the v0.3.13 layout (leading slash stripped, empty path)",
      async () => {
        const gen = newGeneration();
        for (const [path, prefix] of [["/lead/slash/", "lead/slash/"], ["", ""]]) {
          const c = ctx.client(path);
          assert.deepEqual(
            c.location,
            prefix ? `s3://${srv.bucket}/lead/slash` : `s3://${srv.bucket}`,
          );
          await c.writeSnapshot(gen, 10, streamOf("snap"));
          await c.writeWalSegment({ generation: gen, index: 10, offset: 16512 }, streamOf("wal"));
          assert.deepEqual(await rawKeys(ctx.raw, srv.bucket, `${prefix}generations/${gen}/`), [
            `${prefix}generations/${gen}/snapshots/0000000a.snapshot.lz4`,
            `${prefix}generations/${gen}/wal/0000000a_00004080.wal.lz4`,
          ]);
          assert.deepEqual(await c.generations(), [gen]);
          assert.deepEqual(
            c.describe("wal", { generation: gen, index: 10, offset: 16512 }),
            `s3://${srv.bucket}/${prefix}generations/${gen}/wal/0000000a_00004080.wal.lz4`,
          );
          await c.deleteGeneration(gen);
          assert.deepEqual(await c.generations(), []);
        }
      },
    );

    await t.step("listing and deleting more than 1000 objects pages through", async () => {
      const c = ctx.client("many");
      const gen = newGeneration();
      const positions = Array.from({ length: 1100 }, (_, i) => ({
        generation: gen,
        index: i % 3,
        offset: i * 32,
      }));
      await pool(positions, 64, (pos) => c.writeWalSegment(pos, streamOf("w")));
      const listed = await c.walSegments(gen);
      assert.deepEqual(listed.length, 1100);
      const sorted = [...positions].sort((a, b) => a.index - b.index || a.offset - b.offset);
      assert.deepEqual(
        listed.map((s) => [s.index, s.offset]),
        sorted.map((p) => [p.index, p.offset]),
      );
      const requests = { ...c.counters.requests };
      await c.deleteGeneration(gen);
      assert.deepEqual(c.counters.requests.LIST - requests.LIST, 2, "two list pages");
      // ≥: s3rver races when one DeleteObjects empties a directory (a 500, then a retry).
      assert.ok(c.counters.requests.DELETE - requests.DELETE >= 2, "two delete batches");
      assert.deepEqual(await rawKeys(ctx.raw, srv.bucket, "many/"), []);
    });

    await t.step("a stream larger than a part is uploaded in parts", async () => {
      const c = ctx.client("multipart", {}, { partSize: 5 * 1024 * 1024, queueSize: 2 });
      const gen = newGeneration();
      const data = payload(1, 11 * 1024 * 1024 + 12345);
      const info = await c.writeSnapshot(gen, 0, chunked(data));
      assert.deepEqual(info.size, data.length);
      // CreateMultipartUpload + 3 parts + CompleteMultipartUpload.
      assert.deepEqual(c.counters.requests.PUT, 5);
      assert.deepEqual((await c.snapshots(gen))[0].size, data.length);
      assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0)), data);
      assert.deepEqual(c.counters.bytes, { GET: data.length, PUT: data.length });
      await c.deleteGeneration(gen);
    });

    await t.step("requests are counted by operation", async () => {
      const c = ctx.client("counted");
      const gen = newGeneration();
      const loggedSince = srv.requestLog ? await markServerLog(srv, srv.requestLog) : undefined;
      await c.writeSnapshot(gen, 0, streamOf("abc"));
      await c.snapshots(gen);
      await textOf(await c.readSnapshot(gen, 0));
      await c.deleteSnapshot(gen, 0);
      assert.deepEqual(c.counters.requests, { GET: 1, PUT: 1, LIST: 1, DELETE: 1 });
      assert.deepEqual(c.counters.bytes, { GET: 3, PUT: 3 });
      if (loggedSince) {
        const methods = (await loggedSince(4)).map((l) => l.split(" ")[0]).sort();
        assert.deepEqual(methods, ["GET", "GET", "POST", "PUT"]);
      }
    });

    await t.step(
      "operations succeed through 5xx answers, dropped and stalled connections",
      async () => {
        await using proxy = startFaultProxy(srv.endpoint);
        const c = ctx.client("flaky", { endpoint: proxy.endpoint }, { idleTimeoutMs: 500 });
        proxy.setRules(
          { fault: { kind: "status", status: 503 }, share: 0.15 },
          { fault: { kind: "status", status: 500 }, share: 0.15 },
          { fault: { kind: "drop" }, share: 0.15 },
          { fault: { kind: "stall" }, times: 1 },
        );
        const gen = newGeneration();
        const positions = Array.from(
          { length: 12 },
          (_, i) => ({ generation: gen, index: 0, offset: i }),
        );
        await pool(positions, 4, (pos) => c.writeWalSegment(pos, streamOf(`w${pos.offset}`)));
        await c.writeSnapshot(gen, 0, streamOf("snap"));
        assert.deepEqual((await c.walSegments(gen)).length, 12);
        for (const pos of positions) {
          assert.deepEqual(await textOf(await c.readWalSegment(pos)), `w${pos.offset}`);
        }
        await c.deleteGeneration(gen);
        assert.deepEqual(await c.generations(), []);
        assert.ok(proxy.stats.faults >= 8, `only ${proxy.stats.faults} faults injected`);
        const sent = Object.values(c.counters.requests).reduce((a, b) => a + b, 0);
        assert.deepEqual(sent, proxy.stats.requests, "retries are counted");
      },
    );

    await t.step("a missing bucket fails quickly with a clear error", async () => {
      const c = ctx.client("x", { bucket: "no-such-bucket" });
      const err = await rejectsWith(() => c.generations(), S3Error);
      assert.deepEqual(err.code, "NoSuchBucket");
      assert.ok(
        err.message.startsWith("s3://no-such-bucket/x/generations/: LIST failed: NoSuchBucket"),
      );
      assert.ok(err.message.includes("create the bucket or correct its name"), err.message);
      assert.deepEqual(c.counters.requests.LIST, 1, "not retried");
      await rejectsWith(
        () => c.writeSnapshot(newGeneration(), 0, streamOf("x")),
        S3Error,
        "PUT failed: NoSuchBucket",
      );
    });
  } finally {
    await ctx.close();
  }
}

Deno.test("S3 client contract on s3rver", async (t) => {
  await using srv = await startS3rver();
  await onServer(t, srv);

  await t.step("wrong credentials fail quickly with a clear error", async () => {
    const ctx = new Ctx(srv);
    try {
      const c = ctx.client("x", { accessKeyId: "WRONG" });
      const err = await rejectsWith(
        () => c.generations(),
        S3Error,
        "LIST failed: InvalidAccessKeyId",
      );
      assert.ok(err.message.includes("check access-key-id and secret-access-key"), err.message);
      assert.deepEqual(c.counters.requests.LIST, 1, "not retried");
    } finally {
      await ctx.close();
    }
  });
});

Deno.test("skipVerify accepts a self-signed certificate; without it, a clear TLS error", async () => {
  await using dir = await tempDir();
  const openssl = await new Deno.Command("openssl", {
    args: ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
      .concat(["-keyout", `${dir.path}/key.pem`, "-out", `${dir.path}/cert.pem`]),
    stdout: "null",
    stderr: "null",
  }).output().catch(() => undefined);
  if (!openssl?.success) {
    console.warn("openssl not available: skipped");
    return;
  }
  await using srv = await startS3rver({
    tls: {
      cert: await Deno.readTextFile(`${dir.path}/cert.pem`),
      key: await Deno.readTextFile(`${dir.path}/key.pem`),
    },
  });
  const ctx = new Ctx(srv);
  try {
    const err = await rejectsWith(() => ctx.client("tls").generations(), S3Error, "LIST failed");
    // Listings go through fetch (as reads), whose wording is rustls's.
    assert.match(err.message, /peer certificate.*skip-verify: true accepts it/);
    const c = ctx.client("tls", { skipVerify: true });
    const gen = newGeneration();
    await c.writeSnapshot(gen, 0, streamOf("over tls"));
    assert.deepEqual(await textOf(await c.readSnapshot(gen, 0)), "over tls");
  } finally {
    await ctx.close();
  }
});

Deno.test("S3 client contract on moto", async (t) => {
  const srv = await startMoto();
  if (!srv) {
    console.warn("moto_server not installed: skipped");
    return;
  }
  await using _ = srv;
  await onServer(t, srv);
});

Deno.test("no credentials at all: a fast error saying what to set", async () => {
  const vars = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "LITESTREAM_ACCESS_KEY_ID",
    "LITESTREAM_SECRET_ACCESS_KEY",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
  ];
  const saved = new Map(vars.map((v) => [v, Deno.env.get(v)]));
  for (const v of vars) Deno.env.delete(v);
  Deno.env.set("AWS_CONFIG_FILE", "/nonexistent/litestream-test/config");
  Deno.env.set("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/litestream-test/credentials");
  const c = new S3ReplicaClient({ bucket: "bkt", path: "p", endpoint: "http://127.0.0.1:9" });
  try {
    await rejectsWith(
      () => c.generations(),
      LitestreamError,
      "s3://bkt/p: no S3 credentials found: set access-key-id and secret-access-key",
    );
    assert.deepEqual(c.counters.requests.LIST, 0, "no request without credentials");
  } finally {
    await c.close();
    for (const [v, value] of saved) {
      value === undefined ? Deno.env.delete(v) : Deno.env.set(v, value);
    }
  }
});

Deno.test("invalid options are rejected before any request", () => {
  throwsWith(
    () => new S3ReplicaClient({ bucket: "", path: "" }),
    LitestreamError,
    "bucket required for s3 replica",
  );
  throwsWith(
    () => new S3ReplicaClient({ bucket: "b", path: "", accessKeyId: "id" }),
    LitestreamError,
    "must be set together",
  );
  throwsWith(
    () => new S3ReplicaClient({ bucket: "b", path: "", endpoint: "minio:9000" }),
    LitestreamError,
    "invalid endpoint",
  );
});

// ---- URL parsing and config combination ----

Deno.test("parseS3Url: v0.3.13 host presets", () => {
  const cases: [string, [string, string, string, string, boolean]][] = [
    ["s3://mybkt.localhost:9571/urlpath/sub", [
      "mybkt",
      "urlpath/sub",
      "us-east-1",
      "http://localhost:9571",
      true,
    ]],
    ["s3://bkt.s3.us-west-002.backblazeb2.com/db", [
      "bkt",
      "db",
      "us-west-002",
      "https://s3.us-west-002.backblazeb2.com",
      true,
    ]],
    ["s3://bkt.s3.filebase.com/db", ["bkt", "db", "", "https://s3.filebase.com", true]],
    ["s3://my.bkt.nyc3.digitaloceanspaces.com/db", [
      "my.bkt",
      "db",
      "nyc3",
      "https://nyc3.digitaloceanspaces.com",
      true,
    ]],
    ["s3://bkt.s3.fr-par.scw.cloud/db", [
      "bkt",
      "db",
      "fr-par",
      "https://s3.fr-par.scw.cloud",
      true,
    ]],
    ["s3://bkt.us-east-1.linodeobjects.com/db", [
      "bkt",
      "db",
      "us-east-1",
      "https://us-east-1.linodeobjects.com",
      true,
    ]],
    ["s3://mybkt/some/path", ["mybkt", "some/path", "", "", false]],
    ["s3://mybkt:1234", ["mybkt", "", "", "", false]],
  ];
  for (const [url, [bucket, path, region, endpoint, forcePathStyle]] of cases) {
    assert.deepEqual(parseS3Url(url), { bucket, path, region, endpoint, forcePathStyle }, url);
  }
});

Deno.test("parseS3Url: R2, Tigris, Wasabi and Hetzner presets", () => {
  const acct = "0123456789abcdef0123456789abcdef";
  const cases: [string, [string, string, string]][] = [
    [`s3://bkt.${acct}.r2.cloudflarestorage.com/db`, [
      "bkt",
      "auto",
      `https://${acct}.r2.cloudflarestorage.com`,
    ]],
    [`s3://my.bkt.${acct}.eu.r2.cloudflarestorage.com/db`, [
      "my.bkt",
      "auto",
      `https://${acct}.eu.r2.cloudflarestorage.com`,
    ]],
    ["s3://bkt.fly.storage.tigris.dev/db", ["bkt", "auto", "https://fly.storage.tigris.dev"]],
    ["s3://bkt.t3.storage.dev/db", ["bkt", "auto", "https://t3.storage.dev"]],
    ["s3://bkt.s3.eu-central-2.wasabisys.com/db", [
      "bkt",
      "eu-central-2",
      "https://s3.eu-central-2.wasabisys.com",
    ]],
    ["s3://bkt.s3.wasabisys.com/db", ["bkt", "", "https://s3.wasabisys.com"]],
    ["s3://bkt.fsn1.your-objectstorage.com/db", [
      "bkt",
      "fsn1",
      "https://fsn1.your-objectstorage.com",
    ]],
  ];
  for (const [url, [bucket, region, endpoint]] of cases) {
    assert.deepEqual(parseS3Url(url), {
      bucket,
      path: "db",
      region,
      endpoint,
      forcePathStyle: true,
    }, url);
  }
});

Deno.test("parseS3Url: errors and path cleaning", () => {
  throwsWith(
    () => parseS3Url("s3://localhost:9000/x"),
    LitestreamError,
    "bucket required for s3 replica",
  );
  throwsWith(
    () => parseS3Url("s3://s3.filebase.com/x"),
    LitestreamError,
    "bucket required for s3 replica",
  );
  throwsWith(() => parseS3Url("file:///data"), LitestreamError, "not an s3 replica URL");
  throwsWith(() => parseS3Url("s3://b/%zz"), LitestreamError, "invalid replica URL");
  throwsWith(() => parseS3Url("s3:/"), LitestreamError, "bucket required for s3 replica");
  assert.deepEqual(parseS3Url("s3://b/a//b/./c/../d/").path, "a/b/d");
  assert.deepEqual(parseS3Url("s3://b/../../x").path, "x");
  assert.deepEqual(parseS3Url("s3://b/").path, "");
  assert.deepEqual(parseS3Url("s3://b/with%20space").path, "with space");
  assert.deepEqual(
    [cleanS3Path("/lead/slash/"), cleanS3Path("."), cleanS3Path(""), cleanS3Path("../a/./b//")],
    ["lead/slash", "", "", "../a/b"],
  );
});

Deno.test("s3OptionsFromConfig: v0.3.13 combination rules", () => {
  throwsWith(
    () => s3OptionsFromConfig({ url: "s3://b/p", path: "q" }),
    LitestreamError,
    "cannot specify url & path for s3 replica",
  );
  throwsWith(
    () => s3OptionsFromConfig({ url: "s3://b/p", bucket: "c" }),
    LitestreamError,
    "cannot specify url & bucket for s3 replica",
  );
  throwsWith(
    () => s3OptionsFromConfig({ path: "p" }),
    LitestreamError,
    "bucket required for s3 replica",
  );
  const fromUrl = s3OptionsFromConfig({
    url: "s3://bkt.localhost:9000/db",
    region: "eu-west-1",
    forcePathStyle: false,
  });
  assert.deepEqual(
    [fromUrl.bucket, fromUrl.path, fromUrl.region, fromUrl.endpoint, fromUrl.forcePathStyle],
    ["bkt", "db", "eu-west-1", "http://localhost:9000", true],
  );
  const fields = s3OptionsFromConfig({ bucket: "b", path: "/lead/slash/", endpoint: "http://h:1" });
  assert.deepEqual([fields.path, fields.forcePathStyle], ["lead/slash", true]);
  assert.deepEqual(s3OptionsFromConfig({ bucket: "b", path: "" }).forcePathStyle, false);
});
