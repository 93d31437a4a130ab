/**
 * The Azure Blob Storage client on Azurite: the replica contract (through a
 * fault proxy that breaks downloads mid-body), v0.3.13's blob names, staged
 * blocks of a large upload never visible before the commit, an upload whose
 * connection drops, and errors naming the replica and the key to fix.
 */

import assert from "node:assert/strict";
import { ContainerClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { newGeneration } from "../../lib/names.ts";
import { type ContractBackend, replicaClientContract } from "../../replicas/contract.ts";
import { bytesOf, chunked, rejectsWith, streamOf } from "../../replicas/test_streams.ts";
import { AbsError, type AbsReplicaClient } from "../../replicas/abs/mod.ts";
import {
  AZURITE_ACCOUNT,
  AZURITE_KEY,
  azuriteClient,
  startAzurite,
  type TestAzurite,
} from "../support/azurite.ts";
import { startFaultProxy } from "../support/fault_proxy.ts";
import { payload } from "../support/wal_source.ts";

/** A raw SDK client of `container`, to look behind our client. */
function raw(srv: TestAzurite, container: string): ContainerClient {
  return new ContainerClient(
    `${srv.endpoint}/${container}`,
    new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
  );
}

async function rawNames(c: ContainerClient, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const b of c.listBlobsFlat({ prefix })) names.push(b.name);
  return names.sort();
}

Deno.test("abs client on Azurite", async (t) => {
  await using srv = await startAzurite();
  await using proxy = startFaultProxy(srv.host);
  const container = await srv.container("contract");
  const rc = raw(srv, container);
  const proxied = { endpoint: `${proxy.endpoint}/${AZURITE_ACCOUNT}` };
  const prefix = (c: AbsReplicaClient) =>
    c.location.slice(`abs://${AZURITE_ACCOUNT}@${container}/`.length) + "/";

  const broken = { before: 0, times: 0, requests: 0 };
  const backend: ContractBackend<AbsReplicaClient> = {
    client: (name) => azuriteClient(proxied, container, `contract/${name}`),
    keys: async (c) => (await rawNames(rc, prefix(c))).map((k) => k.slice(prefix(c).length)),
    putRaw: async (c, key, data) => {
      await rc.getBlockBlobClient(prefix(c) + key).upload(data, data.length);
    },
    ranges: {
      breakReads: (times, afterBodyBytes) => {
        Object.assign(broken, {
          before: proxy.stats.faults,
          times,
          requests: proxy.stats.requests,
        });
        proxy.setRules({ fault: { kind: "cut", afterBodyBytes }, method: "GET", times });
      },
      check: (c, size) => {
        assert.deepEqual(proxy.stats.faults - broken.before, broken.times);
        // One GET, then one ranged GET per break, each resuming where the body stopped.
        assert.deepEqual(proxy.stats.requests - broken.requests, 1 + broken.times);
        assert.deepEqual(c.counters.bytes.GET, size);
      },
    },
  };
  await replicaClientContract(t, backend);
  proxy.setRules();

  await t.step("blob names follow v0.3.13 (path.Join), empty path at the root", async () => {
    const gen = newGeneration();
    for (const [path, want] of [["a//b/./c/", "a/b/c/"], ["", ""], [".", ""]]) {
      const c = azuriteClient(srv, container, path);
      assert.deepEqual(
        c.location,
        `abs://${AZURITE_ACCOUNT}@${container}${want ? "/" + want.slice(0, -1) : ""}`,
      );
      await c.writeSnapshot(gen, 10, streamOf("snap"));
      await c.writeWalSegment({ generation: gen, index: 10, offset: 16512 }, streamOf("wal"));
      assert.deepEqual(await rawNames(rc, `${want}generations/${gen}/`), [
        `${want}generations/${gen}/snapshots/0000000a.snapshot.lz4`,
        `${want}generations/${gen}/wal/0000000a_00004080.wal.lz4`,
      ]);
      const props = await rc.getBlobClient(
        `${want}generations/${gen}/wal/0000000a_00004080.wal.lz4`,
      )
        .getProperties();
      assert.deepEqual(props.contentType, "application/octet-stream");
      await c.deleteGeneration(gen);
      assert.deepEqual(await c.generations(), []);
    }
  });

  await t.step("a large upload is staged in blocks, invisible until committed", async () => {
    const c = azuriteClient(proxied, container, "blocks", { blockSize: 1024 * 1024 });
    const gen = newGeneration();
    const data = payload(3, 3 * 1024 * 1024 + 17);
    const name = `blocks/generations/${gen}/snapshots/00000000.snapshot.lz4`;
    let seenBeforeCommit: string[] | undefined;
    // Pause the source after the first blocks went out, and look at the container then.
    let sent = 0;
    const source = chunked(data).pipeThrough(
      new TransformStream({
        async transform(chunk, ctrl) {
          sent += chunk.length;
          if (sent > 2.5 * 1024 * 1024 && !seenBeforeCommit) {
            seenBeforeCommit = await rawNames(rc, `blocks/generations/${gen}/`);
          }
          ctrl.enqueue(chunk);
        },
      }),
    );
    const before = c.counters.requests.PUT;
    await c.writeSnapshot(gen, 0, source);
    assert.deepEqual(seenBeforeCommit, []);
    assert.deepEqual(c.counters.requests.PUT - before, 4 + 1, "four blocks and one commit");
    assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0)), data);
    assert.deepEqual(await rawNames(rc, `blocks/generations/${gen}/`), [name]);
  });

  await t.step("a snapshot read in parallel ranged parts, some cut mid-body", async () => {
    const c = azuriteClient(proxied, container, "parts", { readPartSize: 256 * 1024 });
    const gen = newGeneration();
    const data = payload(8, 1024 * 1024 + 4321);
    await c.writeSnapshot(gen, 0, chunked(data));
    await c.writeSnapshot(gen, 1, streamOf(new Uint8Array(0)));
    const before = proxy.stats.requests;
    proxy.setRules({ fault: { kind: "cut", afterBodyBytes: 1000 }, method: "GET", times: 3 });
    assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0, { parallelism: 3 })), data);
    // Five parts, three of them resumed once.
    assert.deepEqual(proxy.stats.requests - before, 5 + 3);
    proxy.setRules();
    assert.deepEqual(
      await bytesOf(await c.readSnapshot(gen, 1, { parallelism: 3 })),
      new Uint8Array(0),
    );
  });

  await t.step("an upload whose connection drops is retried by the SDK", async () => {
    const c = azuriteClient(proxied, container, "drops", { retryDelayMs: 10 });
    const gen = newGeneration();
    proxy.setRules({ fault: { kind: "drop" }, method: "PUT", times: 2 });
    const data = payload(4, 100_000);
    await c.writeSnapshot(gen, 1, streamOf(data));
    proxy.setRules();
    assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 1)), data);
  });

  await t.step("an upload failing for good leaves nothing under the name", async () => {
    const c = azuriteClient(proxied, container, "fails", {
      blockSize: 1024 * 1024,
      maxTries: 2,
      retryDelayMs: 10,
    });
    const gen = newGeneration();
    // The commit (a PUT with comp=blocklist) fails every time: the staged blocks stay invisible.
    proxy.setRules({ fault: { kind: "drop" }, method: "PUT", pathIncludes: "comp=blocklist" });
    const err = await rejectsWith(
      () => c.writeSnapshot(gen, 0, chunked(payload(5, 2 * 1024 * 1024 + 1))),
      AbsError,
      c.describe("snapshot", { generation: gen, index: 0, offset: 0 }),
    );
    assert.match(err.message, /PUT failed/);
    proxy.setRules();
    assert.deepEqual(await rawNames(rc, `fails/`), []);
    assert.deepEqual(await c.snapshots(gen), []);
  });

  await t.step("a download broken more often than allowed fails naming the blob", async () => {
    const c = azuriteClient(proxied, container, "gives-up", { maxResumes: 2, retryDelayMs: 10 });
    const gen = newGeneration();
    await c.writeSnapshot(gen, 0, streamOf(payload(6, 200_000)));
    proxy.setRules({ fault: { kind: "cut", afterBodyBytes: 0 }, method: "GET" });
    const err = await bytesOf(await c.readSnapshot(gen, 0)).then(() => undefined, (e) => e);
    proxy.setRules();
    assert.ok(err instanceof AbsError, `expected AbsError, got ${err}`);
    assert.ok(
      err.message.startsWith(c.describe("snapshot", { generation: gen, index: 0, offset: 0 })),
    );
  });

  await t.step("a wrong account key names the replica and the keys to fix", async () => {
    const c = azuriteClient(srv, container, "x", { maxTries: 1 });
    const wrong = new (c.constructor as typeof AbsReplicaClient)({
      accountName: AZURITE_ACCOUNT,
      accountKey: btoa("not the key"),
      container,
      path: "wrong-key",
      endpoint: srv.endpoint,
    }, { maxTries: 1 });
    const err = await rejectsWith(() => wrong.generations(), AbsError, wrong.location);
    assert.match(err.message, /AuthorizationFailure|AuthenticationFailed/);
    assert.match(err.message, /account-key/);
  });

  await t.step("a missing container names it and says to create it", async () => {
    const c = azuriteClient(srv, "no-such-container", "x", { maxTries: 1 });
    const err = await rejectsWith(() => c.generations(), AbsError, "no-such-container");
    assert.match(err.message, /ContainerNotFound.*create the container/);
  });

  await t.step(
    "an endpoint where nothing listens: the reason, and to check the endpoint",
    async () => {
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (l.addr as Deno.NetAddr).port;
      l.close();
      const c = azuriteClient(
        { endpoint: `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}` },
        container,
        "x",
        { maxTries: 1 },
      );
      const err = await rejectsWith(() => c.generations(), AbsError, c.location);
      // fetch says only "fetch failed"; the reason is its cause's.
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}.*Connection refused`));
      assert.match(err.message, /\(check endpoint, and that the storage service is reachable\)$/);
    },
  );
});
