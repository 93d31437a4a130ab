/**
 * The GCS replica client against our GCS JSON-API test server (in-process):
 * the `ReplicaClient` contract shared with every backend, then what is GCS's
 * own: v0.3.13's object names, paging, resumable uploads in chunks, uploads
 * and downloads through a proxy that drops connections, a missing bucket,
 * and Google's credential chain (service-account key, metadata server, bad
 * key files).
 */

import assert from "node:assert/strict";
import { LitestreamError } from "../../lib/errors.ts";
import type { ReplicaClient } from "../../lib/replica_client.ts";
import { newGeneration } from "../../lib/names.ts";
import {
  type CredentialEnv,
  gcsOptionsFromConfig,
  gcsPrefix,
  GcsReplicaClient,
  type GcsTuning,
} from "../../replicas/gcs/mod.ts";
import { type ContractBackend, replicaClientContract } from "../../replicas/contract.ts";
import { bytesOf, chunked, rejectsWith, streamOf } from "../../replicas/test_streams.ts";
import { type FaultProxy, startFaultProxy } from "../support/fault_proxy.ts";
import {
  serviceAccountKeyJson,
  serviceAccountKeys,
  startGcsServer,
  type TestGcsServer,
} from "../support/gcs_server.ts";
import { tempDir } from "../support/poll.ts";
import { payload } from "../support/wal_source.ts";

/** Small chunks and fast retries, so the tests exercise chunking and retries quickly. */
const FAST: GcsTuning = { chunkSize: 256 * 1024, backoffMs: 20, requestTimeoutMs: 10_000 };

function anonymous(srv: TestGcsServer, path: string, endpoint = srv.endpoint, tuning = FAST) {
  return new GcsReplicaClient({ bucket: srv.bucket, path }, tuning, { endpoint, anonymous: true });
}

/** The contract's backend: clients under `contract/` through `proxy` (to break reads). */
function gcsBackend(srv: TestGcsServer, proxy: FaultProxy): ContractBackend<GcsReplicaClient> {
  const prefix = (c: GcsReplicaClient) => c.location.slice(`gcs://${srv.bucket}/`.length) + "/";
  const broken = { before: 0, times: 0 };
  return {
    client: (name) => anonymous(srv, `contract/${name}`, proxy.endpoint),
    keys: (c) =>
      Promise.resolve(srv.names(srv.bucket, prefix(c)).map((k) => k.slice(prefix(c).length))),
    putRaw: (c, key, data) => Promise.resolve(srv.put(srv.bucket, prefix(c) + key, data)),
    ranges: {
      breakReads: (times, afterBodyBytes) => {
        Object.assign(broken, { before: proxy.stats.faults, times });
        proxy.setRules({ fault: { kind: "cut", afterBodyBytes }, method: "GET", times });
      },
      check: (c, size) => {
        assert.deepEqual(proxy.stats.faults - broken.before, broken.times);
        assert.deepEqual(c.counters.requests.GET, 1 + broken.times, "a GET, then ranged GETs");
        assert.deepEqual(c.counters.bytes.GET, size);
      },
    },
  };
}

Deno.test("GCS client on the test server", async (t) => {
  await using srv = startGcsServer();
  await using proxy = startFaultProxy(srv.endpoint);
  await replicaClientContract(t, gcsBackend(srv, proxy));

  await t.step("object names follow v0.3.13 (path.Join: a leading slash kept)", async () => {
    const gen = newGeneration();
    for (const [path, prefix] of [["/lead//slash/", "/lead/slash/"], ["", ""], [".", ""]]) {
      const c = anonymous(srv, path);
      await c.writeSnapshot(gen, 10, streamOf("snap"));
      await c.writeWalSegment({ generation: gen, index: 10, offset: 16512 }, streamOf("wal"));
      assert.deepEqual(srv.names(srv.bucket, `${prefix}generations/${gen}/`), [
        `${prefix}generations/${gen}/snapshots/0000000a.snapshot.lz4`,
        `${prefix}generations/${gen}/wal/0000000a_00004080.wal.lz4`,
      ]);
      assert.deepEqual(await c.generations(), [gen]);
      await c.deleteGeneration(gen);
      assert.deepEqual(await c.generations(), []);
    }
  });

  await t.step("listing and deleting more than 1000 objects pages through", async () => {
    const c = anonymous(srv, "many");
    const gen = newGeneration();
    const positions = Array.from({ length: 1100 }, (_, i) => ({
      generation: gen,
      index: i % 3,
      offset: i * 32,
    }));
    for (const pos of positions) {
      srv.put(
        srv.bucket,
        c.describe("wal", pos).slice(`gcs://${srv.bucket}/`.length),
        new Uint8Array([1]),
      );
    }
    const listed = await c.walSegments(gen);
    assert.deepEqual(listed.length, 1100);
    assert.deepEqual(c.counters.requests.LIST, 2, "two list pages");
    await c.deleteGeneration(gen);
    assert.deepEqual(c.counters.requests.DELETE, 1100);
    assert.deepEqual(srv.names(srv.bucket, "many/"), []);
  });

  await t.step("a stream larger than a chunk goes up in a resumable session", async () => {
    const c = anonymous(srv, "resumable");
    const gen = newGeneration();
    const data = payload(1, 4 * 256 * 1024 + 12345);
    const info = await c.writeSnapshot(gen, 0, chunked(data));
    assert.deepEqual(info.size, data.length);
    // The session's start, then five chunks.
    assert.deepEqual(c.counters.requests.PUT, 6);
    assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0)), data);
    assert.deepEqual(srv.openSessions(), 0);
  });

  await t.step("a snapshot is one resumable stream whatever parallelism is asked", async () => {
    const c = anonymous(srv, "parts", proxy.endpoint);
    const gen = newGeneration();
    const data = payload(9, 5 * 256 * 1024 + 77);
    await c.writeSnapshot(gen, 0, chunked(data));
    proxy.setRules({ fault: { kind: "cut", afterBodyBytes: 100_000 }, method: "GET", times: 3 });
    const asked: ReplicaClient = c; // restore asks for parallel parts through the interface
    assert.deepEqual(await bytesOf(await asked.readSnapshot(gen, 0, { parallelism: 8 })), data);
    proxy.setRules();
    assert.deepEqual(c.counters.requests.GET, 1 + 3, "a GET, then three ranged GETs");
  });

  await t.step("uploads survive dropped connections, whole and chunked", async () => {
    const c = anonymous(srv, "dropped", proxy.endpoint);
    const gen = newGeneration();
    const small = payload(2, 1000);
    proxy.setRules({
      fault: { kind: "drop" },
      method: "POST",
      pathIncludes: "multipart",
      times: 1,
    });
    await c.writeWalSegment({ generation: gen, index: 0, offset: 0 }, streamOf(small));
    const big = payload(3, 3 * 256 * 1024 + 7);
    proxy.setRules({
      fault: { kind: "drop" },
      method: "PUT",
      pathIncludes: "upload_id",
      share: 0.5,
      times: 2,
    });
    const before = proxy.stats.faults;
    await c.writeSnapshot(gen, 0, chunked(big));
    proxy.setRules();
    assert.deepEqual(proxy.stats.faults - before, 2, "two chunk requests dropped");
    assert.deepEqual(
      await bytesOf(await c.readWalSegment({ generation: gen, index: 0, offset: 0 })),
      small,
    );
    assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0)), big);
  });

  await t.step("an upload that keeps failing leaves no object and no session", async () => {
    const c = anonymous(srv, "failing", proxy.endpoint);
    const gen = newGeneration();
    proxy.setRules({ fault: { kind: "drop" }, method: "PUT", pathIncludes: "upload_id" });
    const err = await rejectsWith(
      () => c.writeSnapshot(gen, 0, chunked(payload(4, 600_000))),
      LitestreamError,
    );
    proxy.setRules();
    assert.match(
      err.message,
      /^gcs:\/\/litestream-test\/failing\/generations\/\w+\/snapshots\/00000000\.snapshot\.lz4: PUT failed: .*after 5 attempts/,
    );
    assert.deepEqual(srv.names(srv.bucket, "failing/"), []);
    assert.deepEqual(srv.openSessions(), 0);
  });

  await t.step("a missing bucket is a clear error", async () => {
    const c = new GcsReplicaClient({ bucket: "no-such-bucket", path: "x" }, FAST, {
      endpoint: srv.endpoint,
      anonymous: true,
    });
    const err = await rejectsWith(() => c.generations(), LitestreamError);
    assert.match(
      err.message,
      /^gcs:\/\/no-such-bucket\/x\/generations\/: LIST failed: HTTP 404: The specified bucket does not exist\. \(create the bucket or correct its name\)$/,
    );
  });
});

/** Fake environment: only `vars`, files read from disk. */
function envOf(vars: Record<string, string>): CredentialEnv {
  return { get: (n) => vars[n], readTextFile: (p) => Deno.readTextFile(p) };
}

Deno.test("GCS credentials: Google's default chain", async (t) => {
  const keys = await serviceAccountKeys();
  const other = await serviceAccountKeys();
  await using srv = startGcsServer({ token: "secret-token", serviceAccountKey: keys.publicPem });
  await using dir = await tempDir("gcs-creds-");
  const saFile = async (name: string, privatePem: string, extra: Record<string, string> = {}) => {
    const path = `${dir.path}/${name}`;
    await Deno.writeTextFile(path, serviceAccountKeyJson(privatePem, srv, extra));
    return path;
  };
  const client = (vars: Record<string, string>) =>
    new GcsReplicaClient({ bucket: srv.bucket, path: "auth" }, FAST, {
      endpoint: srv.endpoint,
      env: envOf({ HOME: dir.path, ...vars }),
    });

  await t.step("a service-account key file: a signed JWT grant, the token reused", async () => {
    const c = client({ GOOGLE_APPLICATION_CREDENTIALS: await saFile("sa.json", keys.privatePem) });
    const gen = newGeneration();
    await c.writeSnapshot(gen, 0, streamOf("x"));
    assert.deepEqual(await c.generations(), [gen]);
    assert.deepEqual(srv.requests.filter((r) => r.startsWith("POST /token")).length, 1);
  });

  await t.step("the metadata server (GCE_METADATA_HOST)", async () => {
    const c = client({ GCE_METADATA_HOST: srv.host });
    assert.ok((await c.generations()).length >= 1);
  });

  await t.step("a key the token endpoint refuses: one line naming the file", async () => {
    const file = await saFile("wrong.json", other.privatePem);
    const err = await rejectsWith(
      () => client({ GOOGLE_APPLICATION_CREDENTIALS: file }).generations(),
      LitestreamError,
    );
    assert.deepEqual(
      err.message,
      `gcs://${srv.bucket}/auth: credentials file ${file} (GOOGLE_APPLICATION_CREDENTIALS): ` +
        "token request refused (HTTP 400): invalid_grant: Invalid JWT Signature.",
    );
  });

  await t.step("a malformed, incomplete or missing file: one line naming it", async () => {
    const bad = `${dir.path}/bad.json`;
    await Deno.writeTextFile(bad, "{not json");
    const cases: [string, RegExp][] = [
      [bad, /credentials file .*bad\.json \(GOOGLE_APPLICATION_CREDENTIALS\): not valid JSON/],
      [await saFile("nokey.json", "", {}), /nokey\.json .*: missing private_key$/],
      [
        await saFile("badkey.json", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"),
        /badkey\.json .*: private_key is not a PEM PKCS#8 RSA key/,
      ],
      [`${dir.path}/absent.json`, /absent\.json \(GOOGLE_APPLICATION_CREDENTIALS\): no such file$/],
    ];
    for (const [file, re] of cases) {
      const err = await rejectsWith(
        () => client({ GOOGLE_APPLICATION_CREDENTIALS: file }).generations(),
        LitestreamError,
      );
      assert.match(err.message, re);
      assert.ok(!err.message.includes("\n"));
    }
  });

  await t.step("no credentials anywhere: says what to set", async () => {
    const err = await rejectsWith(
      () => client({ GCE_METADATA_HOST: "127.0.0.1:1" }).generations(),
      LitestreamError,
    );
    assert.match(err.message, /no Google credentials found: set GOOGLE_APPLICATION_CREDENTIALS/);
  });

  await t.step("a server refusing anonymous requests: HTTP 401 with a hint", async () => {
    const err = await rejectsWith(() => anonymous(srv, "auth").generations(), LitestreamError);
    assert.match(err.message, /LIST failed: HTTP 401: .*\(check the Google credentials/);
  });
});

Deno.test("gcsOptionsFromConfig and gcsPrefix: v0.3.13's rules", () => {
  assert.deepEqual(gcsOptionsFromConfig({ url: "gcs://b/some//db/" }), {
    bucket: "b",
    path: "some/db",
  });
  assert.deepEqual(gcsOptionsFromConfig({ url: "gcs://b" }), { bucket: "b", path: "" });
  assert.deepEqual(gcsOptionsFromConfig({ bucket: "b", path: "/x" }), { bucket: "b", path: "/x" });
  assert.throws(
    () => gcsOptionsFromConfig({ url: "gcs://b/p", path: "x" }),
    /cannot specify url & path for gcs replica/,
  );
  assert.throws(
    () => gcsOptionsFromConfig({ url: "gcs://b/p", bucket: "x" }),
    /cannot specify url & bucket for gcs replica/,
  );
  assert.throws(() => gcsOptionsFromConfig({ path: "x" }), /bucket required for gcs replica/);
  assert.deepEqual(
    ["", ".", "/", "a/b/", "/a/../b", "a//b"].map(gcsPrefix),
    ["", "", "/", "a/b", "/b", "a/b"],
  );
});
