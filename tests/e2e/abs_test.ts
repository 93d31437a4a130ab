/**
 * `abs` (Azure Blob Storage) replicas end to end on Azurite: our replicate runs as a subprocess,
 * applications are `sqlite3` processes, and every check restores with a real command (ours or
 * Litestream v0.3.13, which reaches Azurite through `endpoint:`).
 *
 * Cases: our replica restores with ours and with v0.3.13 to identical bytes; a replica v0.3.13
 * wrote restores with ours to v0.3.13's bytes; a handover ours → v0.3.13 → ours keeps every
 * row; connections dropped mid-upload and cut mid-download (through the fault proxy): the
 * replica catches up and restores give exact bytes or a clear error; a wrong account key is an
 * error naming the replica and the key to fix.
 */

import assert from "node:assert/strict";
import { runCommand, runLitestream } from "../support/cli.ts";
import { tempDir, waitFor } from "../support/poll.ts";
import { createWriterTable, integrityCheck, sqlite, Writer } from "../support/sqlite_cli.ts";
import { configYaml, type YamlKeys } from "../support/config_yaml.ts";
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
} from "../support/replicate_process.ts";
import {
  absReplicaKeys,
  AZURITE_ACCOUNT,
  azuriteClient,
  startAzurite,
  type TestAzurite,
} from "../support/azurite.ts";
import { startFaultProxy } from "../support/fault_proxy.ts";
import type { AbsReplicaClient } from "../../replicas/abs/client.ts";

const NO_SANITIZERS = { sanitizeOps: false, sanitizeResources: false, sanitizeExit: false };

/** Asserts a command succeeded. */
function assertOk(r: CliResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed: ${describeResult(r)}`);
}

/** Asserts `path` passes the integrity check and holds exactly ids 1..lastId in `t`. */
async function assertHoldsRows(path: string, lastId: number, what: string): Promise<void> {
  assert.equal(await integrityCheck(path), "ok", `${what}: integrity check`);
  assert.equal(
    await sqlite(path, `SELECT count(*), coalesce(max(id), 0) FROM t;`),
    `${lastId}|${lastId}`,
    `${what}: rows of t (count|max id)`,
  );
}

/** Distinct WAL indexes (over all generations) in the replica. */
async function indexes(c: AbsReplicaClient): Promise<number> {
  const gens = await c.generations();
  const segs = (await Promise.all(gens.map((g) => c.walSegments(g)))).flat();
  return new Set(segs.map((s) => `${s.generation}/${s.index}`)).size;
}

/** Waits until the replica has WAL segments of `n` more indexes than `from`. */
async function waitForIndexes(c: AbsReplicaClient, n: number, timeoutMs = 30_000) {
  return await waitFor(
    `${n} WAL indexes in ${c.location}`,
    async () => {
      const got = await indexes(c);
      return got >= n ? got : undefined;
    },
    timeoutMs,
    200,
  );
}

/** One database with one abs replica; `replica` keys override the defaults. */
function absConfig(
  db: string,
  endpoint: string,
  container: string,
  path: string,
  replica: YamlKeys = {},
) {
  return configYaml([{
    path: db,
    replicas: [{ ...absReplicaKeys(endpoint, container, path), ...replica }],
  }]);
}

/** Our restore of the config's database into `out`. */
function oursRestore(cfg: string, db: string, out: string, timeoutMs = 60_000) {
  return runLitestream(["restore", "-config", cfg, "-o", out, db], { timeoutMs });
}

/** v0.3.13's restore of the config's database into `out` (flags before the argument). */
async function theirRestore(cfg: string, db: string, out: string) {
  return await runCommand(await litestreamV0313(), ["restore", "-config", cfg, "-o", out, db], {
    timeoutMs: 60_000,
  });
}

Deno.test({
  name: "abs on Azurite: round trips with v0.3.13, handover, faults, wrong key",
  ...NO_SANITIZERS,
  async fn(t) {
    await using srv: TestAzurite = await startAzurite();
    const container = await srv.container("e2e");
    const step = (name: string, fn: () => Promise<void>) => t.step({ name, fn, ...NO_SANITIZERS });

    await step("our replica restores with ours and with v0.3.13 to identical bytes", async () => {
      await using dir = await tempDir();
      const db = `${dir.path}/db.sqlite`;
      await createWriterTable(db);
      // The url form of the config, as a v0.3.13 user writes it.
      const cfg = `${dir.path}/litestream.yml`;
      await Deno.writeTextFile(
        cfg,
        configYaml([{
          path: db,
          replicas: [{
            url: `abs://${AZURITE_ACCOUNT}@${container}/roundtrip/db`,
            "account-key": absReplicaKeys("", "", "")["account-key"],
            endpoint: srv.endpoint,
          }],
        }]),
      );
      await using rep = startReplicate(["-config", cfg], { logPath: `${dir.path}/ours.log` });
      const writer = await Writer.start(db, { pauseMs: 10 });
      const c = azuriteClient(srv, container, "roundtrip/db");
      try {
        await waitForIndexes(c, 3);
        await waitFor("150 rows written", () => writer.lastId >= 150);
      } finally {
        await writer.stop();
      }
      await stopOk(rep);
      const mine = `${dir.path}/ours.db`;
      assertOk(await oursRestore(cfg, db, mine), "our restore");
      await assertHoldsRows(mine, writer.lastId, "our restore");
      const theirs = `${dir.path}/theirs.db`;
      assertOk(await theirRestore(cfg, db, theirs), "v0.3.13 restore");
      assert.equal(await fileHash(theirs), await fileHash(mine), "v0.3.13's restore = ours");
    });

    await step(
      "a replica v0.3.13 wrote (path with a leading /) restores with ours to its bytes",
      async () => {
        await using dir = await tempDir();
        const db = `${dir.path}/db.sqlite`;
        await createWriterTable(db);
        const cfg = `${dir.path}/v0313.yml`;
        await Deno.writeTextFile(cfg, absConfig(db, srv.endpoint, container, "/v0313/db"));
        const rep = await startV0313Replicate(cfg);
        const writer = await Writer.start(db, { pauseMs: 10 });
        // v0.3.13 keeps the leading "/" in blob names (Go's path.Join); so do we.
        const c = azuriteClient(srv, container, "/v0313/db");
        try {
          await waitForIndexes(c, 3);
          await waitFor("150 rows written", () => writer.lastId >= 150);
        } finally {
          await writer.stop();
          await stopV0313Replicate(rep);
        }
        const theirs = `${dir.path}/theirs.db`;
        assertOk(await theirRestore(cfg, db, theirs), "v0.3.13 restore");
        await assertHoldsRows(theirs, writer.lastId, "v0.3.13's restore");
        const mine = `${dir.path}/ours.db`;
        assertOk(await oursRestore(cfg, db, mine), "our restore");
        assert.equal(await fileHash(mine), await fileHash(theirs), "our restore = v0.3.13's");
        assert.match(
          c.describe("wal", { generation: "0".repeat(16), index: 0, offset: 0 }),
          /@e2e\/\/v0313\/db\//,
        );
      },
    );

    await step("handover ours → v0.3.13 → ours keeps every row", async () => {
      await using dir = await tempDir();
      const db = `${dir.path}/db.sqlite`;
      await createWriterTable(db);
      const cfg = `${dir.path}/litestream.yml`;
      await Deno.writeTextFile(cfg, absConfig(db, srv.endpoint, container, "handover/db"));
      const c = azuriteClient(srv, container, "handover/db");
      let target = 0;
      const phase = async (start: () => Promise<{ stop(): Promise<unknown> }>) => {
        const rep = await start();
        const writer = await Writer.start(db, { pauseMs: 10 });
        try {
          target = Math.max(await indexes(c), target) + 2;
          await waitForIndexes(c, target);
          const rows = writer.lastId + 50;
          await waitFor(`${rows} rows written`, () => writer.lastId >= rows);
        } finally {
          await writer.stop();
          await rep.stop();
        }
        return writer.lastId;
      };
      const ours = (log: string) => () => {
        const p = startReplicate(["-config", cfg], { logPath: `${dir.path}/${log}` });
        return Promise.resolve({ stop: () => stopOk(p) });
      };
      await phase(ours("ours1.log"));
      await phase(async () => {
        const p = await startV0313Replicate(cfg);
        return { stop: () => stopV0313Replicate(p) };
      });
      const lastId = await phase(ours("ours2.log"));
      const mine = `${dir.path}/ours.db`;
      assertOk(await oursRestore(cfg, db, mine), "our restore");
      await assertHoldsRows(mine, lastId, "our restore after the handover");
      const theirs = `${dir.path}/theirs.db`;
      assertOk(await theirRestore(cfg, db, theirs), "v0.3.13 restore");
      assert.equal(await fileHash(theirs), await fileHash(mine), "v0.3.13's restore = ours");
    });

    await step(
      "dropped uploads and cut downloads: catch-up, exact bytes or a clear error",
      async () => {
        const t0 = performance.now();
        const mark = (what: string) =>
          console.log(`  ${what} after ${Math.round(performance.now() - t0)} ms`);
        await using dir = await tempDir();
        await using proxy = startFaultProxy(srv.host);
        const endpoint = `${proxy.endpoint}/${AZURITE_ACCOUNT}`;
        const db = `${dir.path}/db.sqlite`;
        await createWriterTable(db);
        const cfg = `${dir.path}/litestream.yml`;
        await Deno.writeTextFile(cfg, absConfig(db, endpoint, container, "faults/db"));
        await using rep = startReplicate(["-config", cfg], { logPath: `${dir.path}/ours.log` });
        const writer = await Writer.start(db, { pauseMs: 10 });
        const c = azuriteClient(srv, container, "faults/db");
        try {
          await waitForIndexes(c, 1);
          // Upload connections drop, more often than the SDK retries one request, for a while.
          proxy.setRules({ fault: { kind: "drop" }, method: "PUT", times: 6 });
          await waitFor("6 dropped uploads", () => proxy.stats.faults >= 6, 60_000);
          // Which request the SDK's own retries could not save decides the level: a segment's
          // failure is a sync error, a checksum record's a warning.
          await rep.waitForLog(/level=(ERROR|WARN).*replica=abs/, { timeoutMs: 30_000 });
          mark("outage logged");
          proxy.setRules();
          await waitFor("100 more rows", () => writer.lastId >= 100 + 100);
        } finally {
          await writer.stop();
        }
        await stopOk(rep);
        const direct = `${dir.path}/direct.db`;
        assertOk(await oursRestore(cfg, db, direct), "restore after the outage");
        await assertHoldsRows(direct, writer.lastId, "restore after the outage (caught up)");

        mark("caught up");
        // Downloads cut mid-body resume with ranged reads: the same bytes.
        // Blob reads only: listings (`comp=list`) carry the prefix escaped.
        const blobs = "/generations/";
        proxy.setRules({
          fault: { kind: "cut", afterBodyBytes: 3000 },
          method: "GET",
          pathIncludes: blobs,
          times: 6,
        });
        const resumed = `${dir.path}/resumed.db`;
        assertOk(await oursRestore(cfg, db, resumed), "restore with cut downloads");
        assert.ok(proxy.stats.faults >= 6 + 6, "the downloads were cut");
        assert.equal(await fileHash(resumed), await fileHash(direct), "resumed restore = direct");

        mark("resumed restore");
        // Every download cut before any byte: a one-line error naming the blob, no output left.
        proxy.setRules({
          fault: { kind: "cut", afterBodyBytes: 0 },
          method: "GET",
          pathIncludes: blobs,
        });
        const failed = `${dir.path}/failed.db`;
        const r = await oursRestore(cfg, db, failed, 120_000);
        proxy.setRules();
        assert.equal(r.code, 1, describeResult(r));
        assert.match(
          r.err.trim(),
          /^.*abs:\/\/devstoreaccount1@e2e\/faults\/db\/generations\/.*GET failed/,
        );
        assert.equal(r.err.trim().split("\n").length, 1, `one line: ${r.err}`);
        const left = [...Deno.readDirSync(dir.path)].map((e) => e.name).filter((n) =>
          n.startsWith("failed")
        );
        assert.deepEqual(left, [], "nothing half-written left");
        mark(`failed restore (${r.err.trim()})`);
      },
    );

    await step("a wrong account key: an error naming the replica and the key to fix", async () => {
      await using dir = await tempDir();
      const db = `${dir.path}/db.sqlite`;
      await createWriterTable(db);
      await sqlite(db, "INSERT INTO t (id, v) VALUES (1, randomblob(100));");
      const cfg = `${dir.path}/litestream.yml`;
      const wrong = { "account-key": btoa("this is not the account key") };
      await Deno.writeTextFile(cfg, absConfig(db, srv.endpoint, container, "wrong/db", wrong));
      await using rep = startReplicate(["-config", cfg], { logPath: `${dir.path}/ours.log` });
      const m = await rep.waitForLog(/ERROR.*/, { timeoutMs: 30_000 });
      assert.match(m[0], /replica=abs/, m[0]);
      assert.match(m[0], /abs:\/\/devstoreaccount1@e2e\/wrong\/db/, m[0]);
      assert.match(m[0], /account-key/, m[0]);
      // It shuts down promptly, and says that the final sync could not ship (exit 1).
      assert.equal((await rep.stop()).status.code, 1, await rep.log());
      assert.match(await rep.log(), /a final sync failed \(logged above\)/);
      const r = await oursRestore(cfg, db, `${dir.path}/out.db`);
      assert.equal(r.code, 1, describeResult(r));
      assert.match(r.err, /abs:\/\/devstoreaccount1@e2e\/wrong\/db.*account-key/);
    });
  },
});
