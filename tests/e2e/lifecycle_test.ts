/**
 * A replica's life over time, on a file replica and an S3 replica (s3rver), concurrently:
 * periodic snapshots (`snapshot-interval`), the snapshot schedule across a restart (aligned to
 * the newest snapshot, spec §5.3), retention (`retention`, `retention-check-interval`, §5.5)
 * deleting old snapshots, WAL segments and whole generations while a replica always keeps a
 * restorable snapshot, restores racing retention, and an idle restart with a replica that
 * has no snapshot yet.
 *
 * Our replicate runs as a subprocess, applications are `sqlite3` processes, restores are our
 * CLI, and the test lists the replica through the project's replica clients. Waiting is
 * polling with a deadline; time assertions compare object timestamps with generous
 * tolerances (never the speed of anything).
 */

import { runLitestream } from "../support/cli.ts";
import assert from "node:assert/strict";
import { tempDir, waitFor } from "../support/poll.ts";
import {
  createWriterTable,
  integrityCheck,
  sqlite,
  stopping,
  Writer,
} from "../support/sqlite_cli.ts";
import {
  credentialsEnv,
  replicaClient,
  replicaUrl,
  startS3rver,
  type TestS3Server,
} from "../support/s3_server.ts";
import { configYaml, s3ReplicaKeys, type YamlKeys } from "../support/config_yaml.ts";
import { startFaultProxy } from "../support/fault_proxy.ts";
import {
  type CliResult,
  describeResult,
  newGenerations,
  type ReplicateProcess,
  startReplicate,
  stopOk,
} from "../support/replicate_process.ts";
import { FileReplicaClient } from "../../replicas/file/client.ts";
import type { SnapshotInfo } from "../../lib/replica_client.ts";

// ---------------------------------------------------------------------------------------------
// Backends: the same cases on a file replica and on an S3 replica.

/** Where a case's replica lives, and how to reach it from the test and from the CLI. */
interface Backend {
  name: "file" | "s3";
  /** Keys of this replica's config entry, with `extra` added. */
  replicaKeys(extra: YamlKeys): YamlKeys;
  /** Replica URL for `restore`. */
  url: string;
  /** Environment for URL-form commands (S3 credentials). */
  env: Record<string, string>;
  /** Listing client. */
  client: {
    generations(): Promise<string[]>;
    snapshots(g: string): Promise<SnapshotInfo[]>;
    walSegments(g: string): Promise<{ generation: string; index: number; offset: number }[]>;
  };
  /** A way to make uploads fail and work again; `extra` goes into the replica config. */
  blocker(): Blocker;
  close(): Promise<void>;
}

/** Makes a replica's uploads fail (`block`) and succeed again (`unblock`). */
interface Blocker extends AsyncDisposable {
  extra: Record<string, string>;
  block(): Promise<void>;
  unblock(): Promise<void>;
}

function fileBackend(dir: string): Backend {
  const root = `${dir}/replica`;
  const client = new FileReplicaClient(root);
  return {
    name: "file",
    replicaKeys: (extra) => ({ type: "file", path: root, ...extra }),
    url: `file://${root}`,
    env: {},
    client,
    blocker() {
      // A regular file where the generation's wal/ directory was: segment writes fail.
      let moved: string | undefined;
      const unblock = async () => {
        if (!moved) return;
        const walDir = moved.replace(/\.moved$/, "");
        await Deno.remove(walDir);
        await Deno.rename(moved, walDir);
        moved = undefined;
      };
      return {
        extra: {},
        async block() {
          const [gen] = await client.generations();
          const walDir = `${root}/generations/${gen}/wal`;
          moved = `${walDir}.moved`;
          await Deno.rename(walDir, moved);
          await Deno.writeTextFile(walDir, "not a directory");
        },
        unblock,
        [Symbol.asyncDispose]: unblock,
      };
    },
    close: () => Promise.resolve(),
  };
}

let seq = 0;
function s3Backend(srv: TestS3Server): Backend {
  const path = `lifecycle-${++seq}-${crypto.randomUUID().slice(0, 8)}/db`;
  const client = replicaClient(srv, path);
  return {
    name: "s3",
    replicaKeys: (extra) => s3ReplicaKeys({ srv, path, extra }),
    url: replicaUrl(srv, path),
    env: credentialsEnv(srv),
    client,
    blocker() {
      // Uploads through a proxy that answers every PUT with 500.
      const proxy = startFaultProxy(srv.endpoint);
      return {
        extra: { endpoint: proxy.endpoint },
        block: () =>
          Promise.resolve(
            proxy.setRules({ fault: { kind: "status", status: 500 }, method: "PUT" }),
          ),
        unblock: () => Promise.resolve(proxy.setRules()),
        [Symbol.asyncDispose]: () => proxy.close(),
      };
    },
    close: () => client.close(),
  };
}

const NO_SANITIZERS = { sanitizeOps: false, sanitizeResources: false, sanitizeExit: false };

/** Runs `fn` on a file replica and on an S3 replica (s3rver), as concurrent steps. */
async function onEachBackend(
  t: Deno.TestContext,
  fn: (b: Backend, dir: string) => Promise<void>,
): Promise<void> {
  await using srv = await startS3rver();
  const results = await Promise.all(
    (["file", "s3"] as const).map((name) =>
      t.step({
        name,
        ...NO_SANITIZERS,
        fn: async () => {
          await using dir = await tempDir();
          const b = name === "file" ? fileBackend(dir.path) : s3Backend(srv);
          try {
            await fn(b, dir.path);
          } finally {
            await b.close();
          }
        },
      })
    ),
  );
  assert.ok(results.every((ok) => ok), "a backend's case failed (see its step)");
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Writes a config for `db` with the backend's replica and starts our replicate. */
async function start(
  dir: string,
  db: string,
  b: Backend,
  replica: Record<string, string | number>,
  dbExtra: Record<string, string | number> = {},
): Promise<ReplicateProcess> {
  const cfg = `${dir}/litestream.yml`;
  await Deno.writeTextFile(
    cfg,
    configYaml([{ path: db, replicas: [b.replicaKeys(replica)], extra: dbExtra }]),
  );
  return startReplicate(["-config", cfg], { logPath: `${dir}/replicate.log` });
}

/** Every snapshot of every generation. */
async function allSnapshots(b: Backend): Promise<SnapshotInfo[]> {
  const gens = await b.client.generations();
  return (await Promise.all(gens.map((g) => b.client.snapshots(g)))).flat();
}

/**
 * Runs our CLI with `env` (URL-form commands take S3 credentials from the environment);
 * SIGKILLed after `timeoutMs` (code 137).
 */
function ours(args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<CliResult> {
  return runLitestream(args, { env, timeoutMs });
}

let restores = 0;
/** Restores the backend's latest state into a new file under `dir`. */
async function restore(b: Backend, dir: string): Promise<{ path?: string; result: CliResult }> {
  const path = `${dir}/restored-${++restores}.db`;
  const result = await ours(["restore", "-o", path, b.url], b.env);
  return result.code === 0 ? { path, result } : { result };
}

/** `count|max(id)` of table t. */
const counts = (db: string) => sqlite(db, "SELECT count(*), coalesce(max(id), 0) FROM t;");

/** Polls restores until one holds exactly ids 1..lastId, integrity ok. */
async function waitForRows(b: Backend, dir: string, lastId: number): Promise<string> {
  let last = "";
  return await waitFor(
    `a restore holding ${lastId} rows`,
    async () => {
      const r = await restore(b, dir);
      if (!r.path) {
        last = describeResult(r.result);
        return undefined;
      }
      last = await counts(r.path);
      if (last !== `${lastId}|${lastId}`) return undefined;
      assert.equal(await integrityCheck(r.path), "ok");
      return r.path;
    },
    20_000,
    200,
  ).catch((err) => {
    throw new Error(`${err.message}\nlast: ${last}`);
  });
}

const iso = (ms: number) => new Date(ms).toISOString();

// ---------------------------------------------------------------------------------------------
// Cases

Deno.test({
  name: "lifecycle: snapshot-interval takes periodic snapshots; after a restart the next one " +
    "comes at newest snapshot + interval, not a full interval after the restart",
  ...NO_SANITIZERS,
  fn: (t) =>
    onEachBackend(t, async (b, dir) => {
      const db = `${dir}/db.sqlite`;
      await createWriterTable(db);

      // Periodic: with a writer moving the WAL index, the number of snapshots grows. The writer
      // keeps writing across the restart below (an idle restart is the next test's subject).
      const writer = await Writer.start(db, { pauseMs: 30 });
      await using _w = stopping(writer);
      let rep = await start(dir, db, b, { "snapshot-interval": "1s" });
      try {
        const first = await waitFor(
          "a first snapshot",
          async () => {
            const s = await allSnapshots(b);
            return s.length > 0 ? s : undefined;
          },
          15_000,
          100,
        );
        const t0 = Date.now();
        const grown = await waitFor(
          "2 more snapshots",
          async () => {
            const s = await allSnapshots(b);
            return s.length >= first.length + 2 ? s : undefined;
          },
          8_000,
          100,
        );
        console.log(
          `[${b.name}] snapshots ${first.length} -> ${grown.length} in ${Date.now() - t0} ms: ` +
            grown.map((s) => `${s.index}@${s.createdAt.toISOString().slice(17)}`).join(" "),
        );
        const times = grown.map((s) => s.createdAt.getTime());
        assert.deepEqual(times, [...times].sort((x, y) => x - y), "index order = time order");
        await stopOk(rep);
      } finally {
        await rep[Symbol.asyncDispose]();
      }

      // Alignment: restart 2 s after the newest snapshot with a 4 s interval. Aligned, the next
      // snapshot comes ~2 s after the restart; unaligned, 4 s or more (S3 LastModified has
      // whole seconds, so listed times may be up to 1 s early: the bounds allow for it).
      const interval = 4000;
      const newest = (await allSnapshots(b)).reduce((a, s) => s.createdAt > a.createdAt ? s : a);
      const S = newest.createdAt.getTime();
      await waitFor("2 s after the newest snapshot", () => Date.now() >= S + 2000, 5_000, 50);
      const logBefore = (await Deno.readTextFile(`${dir}/replicate.log`)).length;
      const restartAt = Date.now();
      rep = await start(dir, db, b, { "snapshot-interval": `${interval}ms` });
      try {
        const next = await waitFor(
          "a snapshot after the restart",
          async () => {
            const s = (await allSnapshots(b)).filter((x) => x.createdAt.getTime() > S);
            return s.length > 0 ? s[0] : undefined;
          },
          interval + 8_000,
          50,
        );
        const N = next.createdAt.getTime();
        // Stop the application first: with replicate still holding its connection, the
        // writer's close does not checkpoint.
        await writer.stop();
        const log = (await rep.log()).slice(logBefore);
        console.log(
          `[${b.name}] newest snapshot ${iso(S)}, restart ${iso(restartAt)}, next snapshot ` +
            `${iso(N)} (newest + ${N - S} ms, restart + ${N - restartAt} ms)`,
        );
        assert.equal(newGenerations(log).length, 0, `the generation continues:\n${log}`);
        // Not taken at startup (none is due), and not a full interval after the restart.
        assert.ok(N >= S + interval - 1000, `next snapshot too early: newest + ${N - S} ms`);
        assert.ok(
          N <= restartAt + interval - 1300,
          `next snapshot not aligned to the newest one: restart + ${N - restartAt} ms\n${log}`,
        );
        await stopOk(rep);
      } finally {
        await rep[Symbol.asyncDispose]();
      }
    }),
});

Deno.test({
  name: "lifecycle: snapshot-interval keeps taking snapshots of an idle database after a restart",
  ...NO_SANITIZERS,
  fn: (t) =>
    onEachBackend(t, async (b, dir) => {
      const db = `${dir}/db.sqlite`;
      await createWriterTable(db);
      await sqlite(db, "INSERT INTO t (id, v) VALUES (1, randomblob(100));");
      // No time-based checkpoint: its `_litestream_seq` write would be a change.
      const dbExtra = { "checkpoint-interval": "1h" };
      const rep1 = await start(dir, db, b, { "snapshot-interval": "1s" }, dbExtra);
      try {
        await waitFor("a snapshot", async () => (await allSnapshots(b)).length > 0, 15_000, 100);
        await stopOk(rep1);
      } finally {
        await rep1[Symbol.asyncDispose]();
      }
      const last = Math.max(...(await allSnapshots(b)).map((s) => s.createdAt.getTime()));
      const logBefore = (await Deno.readTextFile(`${dir}/replicate.log`)).length;
      const rep2 = await start(dir, db, b, { "snapshot-interval": "1s" }, dbExtra);
      try {
        // Snapshots of an idle database overwrite the same index: look for a newer time.
        await waitFor(
          "a snapshot after the restart",
          async () => (await allSnapshots(b)).some((s) => s.createdAt.getTime() > last + 1000),
          6_000,
          100,
        )
          .catch(async (err) => {
            throw new Error(
              `${err.message}\n--- log of the restarted replicate ---\n${
                (await rep2.log()).slice(logBefore)
              }`,
            );
          });
        await stopOk(rep2);
      } finally {
        await rep2[Symbol.asyncDispose]();
      }
    }),
});

Deno.test({
  name: "lifecycle: a restart on an idle database syncs a replica without a snapshot (no write " +
    "needed)",
  ...NO_SANITIZERS,
  fn: (t) =>
    onEachBackend(t, async (b, dir) => {
      const db = `${dir}/db.sqlite`;
      await createWriterTable(db);
      await sqlite(db, "INSERT INTO t (id, v) VALUES (1, randomblob(100)), (2, randomblob(100));");
      // A first run with a throwaway file replica gives the database a generation.
      const other: Backend = fileBackend(`${dir}/other`);
      const rep1 = await start(dir, db, other, {});
      try {
        await waitFor(
          "the first run's snapshot",
          async () => (await allSnapshots(other)).length > 0,
          15_000,
          100,
        );
        await stopOk(rep1);
      } finally {
        await rep1[Symbol.asyncDispose]();
      }
      // Now replicate the same (idle) database to the empty replica under test. No time-based
      // checkpoint (whose `_litestream_seq` write would be a change) within the deadline: the
      // replica must sync because it is behind, not because the database moved.
      const rep2 = await start(dir, db, b, {}, { "checkpoint-interval": "1h" });
      try {
        await rep2.waitForLog(/initialized db/);
        await waitFor(
          "a snapshot in the new replica while the database is idle",
          async () => (await allSnapshots(b)).length > 0,
          10_000,
          100,
        ).catch(async (err) => {
          throw new Error(`${err.message}\n--- log ---\n${await rep2.log()}`);
        });
        await stopOk(rep2);
        const r = await restore(b, dir);
        assert.ok(r.path, describeResult(r.result));
        assert.equal(await counts(r.path), "2|2");
      } finally {
        await rep2[Symbol.asyncDispose]();
      }
    }),
});

Deno.test({
  name: "lifecycle: frames a crashed replicate did not ship are shipped after a restart on an " +
    "idle database (no write needed)",
  ...NO_SANITIZERS,
  fn: (t) =>
    onEachBackend(t, async (b, dir) => {
      const db = `${dir}/db.sqlite`;
      await createWriterTable(db);
      await sqlite(db, "INSERT INTO t (id, v) VALUES (1, randomblob(100));");
      await using blocker = b.blocker();
      // No time-based checkpoint in either run: it would be a change that hides the problem.
      const dbExtra = { "checkpoint-interval": "1h" };
      const rep1 = await start(dir, db, b, blocker.extra, dbExtra);
      try {
        await waitFor(
          "the first snapshot",
          async () => (await allSnapshots(b)).length > 0,
          15_000,
          100,
        );
        await blocker.block();
        // Committed and copied to the shadow WAL, but the upload fails; then replicate dies.
        const meta = `${dir}/.db.sqlite-litestream`;
        const shadowBytes = async () => {
          let n = 0;
          for await (const g of Deno.readDir(`${meta}/generations`)) {
            for await (const f of Deno.readDir(`${meta}/generations/${g.name}/wal`)) {
              n += (await Deno.stat(`${meta}/generations/${g.name}/wal/${f.name}`)).size;
            }
          }
          return n;
        };
        const before = await shadowBytes();
        await sqlite(
          db,
          "INSERT INTO t (id, v) VALUES (2, randomblob(100)), (3, randomblob(100));",
        );
        await waitFor("the rows in the shadow WAL", async () => await shadowBytes() > before);
        await rep1.waitForLog(/replica sync failed/, { timeoutMs: 20_000 });
        await rep1.kill();
      } finally {
        await rep1[Symbol.asyncDispose]();
      }
      await blocker.unblock();
      const logBefore = (await Deno.readTextFile(`${dir}/replicate.log`)).length;
      const rep2 = await start(dir, db, b, blocker.extra, dbExtra);
      try {
        await rep2.waitForLog(/initialized db/, { after: logBefore });
        await waitFor(
          "a restore holding rows 1..3",
          async () => {
            const r = await restore(b, dir);
            return r.path && await counts(r.path) === "3|3";
          },
          10_000,
          200,
        ).catch(async (err) => {
          throw new Error(
            `${err.message}\n--- log of the restarted replicate ---\n${
              (await rep2.log()).slice(logBefore)
            }`,
          );
        });
        assert.equal(newGenerations((await rep2.log()).slice(logBefore)).length, 0);
        await stopOk(rep2);
      } finally {
        await rep2[Symbol.asyncDispose]();
      }
    }),
});

Deno.test({
  name: "lifecycle: retention deletes old snapshots, WAL below the oldest retained snapshot and " +
    "expired generations, never the last restorable snapshot; restores racing retention are " +
    "correct or fail clearly",
  ...NO_SANITIZERS,
  fn: (t) =>
    onEachBackend(t, async (b, dir) => {
      const db = `${dir}/db.sqlite`;
      await createWriterTable(db);
      const settings = {
        "snapshot-interval": "1s",
        retention: "2s",
        "retention-check-interval": "1s",
      };
      const retention = 2000;

      // Sampler: a replica never lists without a snapshot once it had one.
      const violations: string[] = [];
      let samples = 0;
      let hadSnapshot = false;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          try {
            const s = await allSnapshots(b);
            samples++;
            if (s.length > 0) hadSnapshot = true;
            else if (hadSnapshot) violations.push(`${new Date().toISOString()}: no snapshot`);
          } catch (err) {
            // A generation deleted between listing it and listing its snapshots.
            if (!/not found|NotFound|No such file/i.test(String(err))) {
              violations.push(`listing failed: ${err}`);
            }
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      })();

      let rep = await start(dir, db, b, settings);
      let writer = await Writer.start(db, { pauseMs: 30 });
      try {
        // Old snapshots go: the first one disappears and what is left is within the window.
        const first = await waitFor(
          "a first snapshot",
          async () => {
            const s = await allSnapshots(b);
            return s.length > 0 ? s[0] : undefined;
          },
          15_000,
          100,
        );
        const oldGen = first.generation;
        await waitFor(
          "the first snapshot deleted by retention",
          async () => {
            const s = await b.client.snapshots(oldGen);
            return s.length > 0 && !s.some((x) => x.index === first.index);
          },
          15_000,
          200,
        );
        const now = Date.now();
        const snaps = await b.client.snapshots(oldGen);
        // Within retention plus one check period (and a second of slack for the listing).
        const slack = retention + 1000 + 1500;
        assert.ok(
          snaps.every((s) => s.createdAt.getTime() >= now - slack),
          `snapshots older than ${slack} ms remain: ${
            snaps.map((s) => `${s.index}@${s.createdAt.toISOString()}`).join(" ")
          } (now ${iso(now)})`,
        );
        // WAL below the oldest retained snapshot goes (eventually: deletion follows listing),
        // and the oldest snapshot's own WAL (its index from offset 0) always stays. Only samples
        // whose oldest snapshot is the same before and after listing the WAL count.
        let sampled = "";
        await waitFor(
          "no WAL segment below the oldest snapshot",
          async () => {
            const s1 = await b.client.snapshots(oldGen);
            const w = await b.client.walSegments(oldGen);
            const s2 = await b.client.snapshots(oldGen);
            if (s1.length === 0 || s2.length === 0 || s1[0].index !== s2[0].index) return false;
            const m = s1[0].index;
            sampled = `oldest snapshot ${m}, wal ${
              [...new Set(w.map((x) => `${x.index}/${x.offset}`))].slice(0, 6).join(" ")
            }`;
            assert.ok(
              w.some((x) => x.index === m && x.offset === 0),
              `the WAL the oldest snapshot needs is gone: ${sampled}`,
            );
            return w[0].index >= m;
          },
          5_000,
          200,
        ).catch((err) => {
          throw new Error(`${err.message}: ${sampled}`);
        });

        // A new generation: stop, let sqlite3 close last (checkpoint and delete the WAL), restart.
        await writer.stop();
        await stopOk(rep);
        await rep[Symbol.asyncDispose]();
        const oldNewest = Math.max(
          ...(await b.client.snapshots(oldGen)).map((s) => s.createdAt.getTime()),
        );
        await sqlite(db, "SELECT count(*) FROM t;");
        assert.equal(
          await Deno.stat(`${db}-wal`).then(() => true, () => false),
          false,
          "the sqlite3 shell, closing last, deleted the WAL",
        );
        const logBefore = (await Deno.readTextFile(`${dir}/replicate.log`)).length;
        rep = await start(dir, db, b, settings);
        writer = await Writer.start(db, { pauseMs: 30 });
        const gens = await waitFor(
          "a second generation",
          async () => {
            const g = await b.client.generations();
            return g.length >= 2 || (g.length === 1 && g[0] !== oldGen) ? g : undefined;
          },
          15_000,
          100,
        );
        const newGen = newGenerations((await rep.log()).slice(logBefore)).at(-1)?.generation;
        assert.ok(newGen && newGen !== oldGen, `a new generation was logged (${gens})`);
        // The old generation disappears once all its snapshots are past retention.
        const goneAt = await waitFor(
          "the old generation deleted",
          async () => {
            const g = await b.client.generations();
            return !g.includes(oldGen) && g.includes(newGen) ? Date.now() : undefined;
          },
          15_000,
          200,
        );
        console.log(
          `[${b.name}] generation ${oldGen} deleted ${goneAt - oldNewest} ms after its newest ` +
            `snapshot; current ${newGen}`,
        );
        assert.ok(
          goneAt >= oldNewest + retention,
          `old generation deleted before its newest snapshot expired (${goneAt - oldNewest} ms)`,
        );

        // Restores racing retention (writer on, snapshots every second, deletions every second),
        // two at a time.
        const history: { at: number; lastId: number }[] = [];
        const outcomes: string[] = [];
        const raceEnd = Date.now() + 4000;
        const raceLoop = async () => {
          while (Date.now() < raceEnd) {
            const startAt = Date.now();
            history.push({ at: startAt, lastId: writer.lastId });
            // Rows committed 3 s before the restore started must be in it.
            const floor = Math.max(
              0,
              ...history.filter((h) => h.at <= startAt - 3000).map((h) => h.lastId),
            );
            const r = await restore(b, dir);
            const ceiling = writer.lastId + 2; // a commit may be replicated before its ack.
            if (!r.path) {
              const errLines = r.result.err.split("\n").filter((l) => l.trim() !== "");
              outcomes.push(`failed: ${errLines.join(" | ")}`);
              assert.equal(r.result.code, 1, `failed restore exits 1: ${describeResult(r.result)}`);
              assert.equal(errLines.length, 1, `one clear line: ${describeResult(r.result)}`);
              continue;
            }
            const ok = await integrityCheck(r.path);
            const [count, max] = (await counts(r.path)).split("|").map(Number);
            outcomes.push(`ok ${count}`);
            assert.equal(ok, "ok", `restore racing retention: integrity`);
            assert.equal(count, max, `restored ids are 1..${max} without gaps (count ${count})`);
            assert.ok(max >= floor, `restore lost committed rows: ${max} < ${floor}`);
            assert.ok(max <= ceiling, `restore holds rows never committed: ${max} > ${ceiling}`);
            await Deno.remove(r.path);
          }
        };
        await Promise.all([raceLoop(), raceLoop()]);
        console.log(`[${b.name}] restores racing retention: ${outcomes.join(", ")}`);
        assert.ok(outcomes.some((o) => o.startsWith("ok")), "some restore succeeded");

        // The latest state: every row.
        const lastId = await writer.stop();
        await waitForRows(b, dir, lastId);
        await stopOk(rep);
        const final = await waitForRows(b, dir, lastId);
        assert.equal(await integrityCheck(final), "ok");
      } finally {
        sampling = false;
        await sampler;
        await writer.stop().catch(() => {});
        await rep[Symbol.asyncDispose]();
      }
      console.log(`[${b.name}] snapshot listings sampled: ${samples}, violations: ${violations}`);
      assert.deepEqual(violations, [], "the replica always listed a snapshot");
    }),
});
