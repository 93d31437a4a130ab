/**
 * `litestream status` and `/healthz` end to end, with our replicate as a subprocess and an S3
 * replica on s3rver behind the fault proxy: a healthy replicate (live figures, exit 0, 80
 * columns, `-json` parsed); a stalled store (`/healthz` 503 naming the replica, status exit
 * 1, then both healthy again once the store answers); a stopped replicate whose replica goes
 * stale (figures from files, exit 0, then 1); databases never replicated or missing (exit 1);
 * databases under a `dir` entry.
 */

import assert from "node:assert/strict";
import { tempDir, waitFor } from "../support/poll.ts";
import { createWriterTable, sqlite } from "../support/sqlite_cli.ts";
import { startS3rver } from "../support/s3_server.ts";
import { startFaultProxy } from "../support/fault_proxy.ts";
import { configYaml, s3ReplicaKeys } from "../support/config_yaml.ts";
import { freePort } from "../support/net.ts";
import {
  describeResult,
  restoreOk,
  runLitestream,
  startReplicate,
  stopOk,
  writeConfig,
} from "../support/replicate_process.ts";
import type { Status } from "../../lib/cli/status/collect.ts";
import type { HealthReport } from "../../lib/cli/health.ts";

/** Runs `status -json` and parses it. */
async function statusJson(...args: string[]): Promise<{ code: number; status: Status }> {
  const r = await runLitestream(["status", "-json", ...args]);
  try {
    return { code: r.code, status: JSON.parse(r.out) };
  } catch {
    throw new Error(`status printed no JSON: ${describeResult(r)}`);
  }
}

async function healthz(addr: string): Promise<{ code: number; body: HealthReport }> {
  const res = await fetch(`http://${addr}/healthz`);
  return { code: res.status, body: await res.json() };
}

Deno.test("status and /healthz", async (t) => {
  await using tmp = await tempDir();
  await using srv = await startS3rver();
  await using proxy = startFaultProxy(srv.endpoint);
  const dir = tmp.path;
  const db = `${dir}/app.db`;
  const addr = `127.0.0.1:${freePort()}`;
  const replica = s3ReplicaKeys({
    srv,
    path: "status",
    endpoint: proxy.endpoint,
    extra: { "sync-interval": "500ms" },
  });
  // Unhealthy once a change has waited 4 × 500 ms.
  const config = await writeConfig(
    `${dir}/litestream.yml`,
    configYaml([{ path: db, replicas: [replica] }], `addr: ${addr}\nmax-lag-intervals: 4\n`),
  );
  await createWriterTable(db);
  const rep = startReplicate(["-config", config], { logPath: `${dir}/replicate.log` });
  let stopped = false;
  try {
    await t.step("healthy replicate: live figures, exit 0", async () => {
      await rep.waitForLog(/initialized db/);
      await sqlite(db, "INSERT INTO t (v) VALUES (randomblob(2000)), (randomblob(2000));");
      const { status } = await waitFor("a healthy live status", async () => {
        const s = await statusJson("-config", config);
        const r = s.status.dbs[0]?.replicas[0];
        // The position is set as the first snapshot lands; the sync time once its sync ends.
        return s.code === 0 && r?.lagBytes === 0 && r.restoreWindow && r.lastSyncAt ? s : undefined;
      });
      assert.equal(status.live, addr);
      const d = status.dbs[0];
      assert.equal(d.source, "live");
      assert.equal(d.path, db);
      const r = d.replicas[0];
      assert.equal(r.name, "s3");
      assert.equal(r.position, d.localPosition);
      assert.equal(r.generation, d.localPosition?.split("/")[0]);
      assert.ok(r.lastSyncAt && r.generationStart && r.newestSnapshotAt);
      assert.ok(r.newestSnapshotAgeMs !== null && r.newestSnapshotAgeMs >= 0);
      assert.ok(r.restoreWindow!.oldest <= r.restoreWindow!.newest);
      assert.equal(r.lastError, null);

      const text = await runLitestream(["status", "-config", config, db]);
      assert.equal(text.code, 0, describeResult(text));
      assert.match(text.out, /^OK \(figures live from replicate at /);
      for (const line of text.out.split("\n")) assert.ok(line.length <= 80, `over 80: ${line}`);
      const h = await healthz(addr);
      assert.equal(h.code, 200);
      assert.equal(h.body.healthy, true);
      assert.deepEqual(h.body.unhealthy, []);
    });

    await t.step("stalled store: 503 naming the replica, exit 1, then healthy again", async () => {
      proxy.setRules({ fault: { kind: "stall" } });
      await sqlite(db, "INSERT INTO t (v) VALUES (randomblob(2000));");
      const h = await waitFor("/healthz 503", async () => {
        const h = await healthz(addr);
        return h.code === 503 ? h : undefined;
      });
      assert.equal(h.body.healthy, false);
      assert.equal(h.body.unhealthy.length, 1);
      assert.match(h.body.unhealthy[0], /app\.db: replica s3: .* behind \(limit 2s\)/);

      const { code, status } = await statusJson("-config", config, "-timeout", "2s");
      assert.equal(code, 1);
      const r = status.dbs[0].replicas[0];
      assert.equal(r.healthy, false);
      assert.match(r.problem ?? "", /behind/);
      // The last position the store acknowledged, and the bytes committed since.
      assert.ok(r.position, JSON.stringify(r));
      assert.ok(r.lagBytes !== null && r.lagBytes > 0, JSON.stringify(r));
      assert.match(r.storeError ?? "", /no answer within 2s/);

      proxy.setRules();
      proxy.releaseStalled();
      await waitFor("/healthz 200 again", async () => (await healthz(addr)).code === 200, 30_000);
      const again = await statusJson("-config", config);
      assert.equal(again.code, 0, JSON.stringify(again.status));
    });

    await t.step("stopped replicate: figures from files, stale replica exits 1", async () => {
      await stopOk(rep);
      stopped = true;
      const s = await statusJson("-config", config);
      assert.equal(s.code, 0, JSON.stringify(s.status));
      assert.equal(s.status.live, null);
      assert.equal(s.status.dbs[0].source, "files");
      assert.equal(s.status.dbs[0].replicas[0].lagBytes, 0);

      await sqlite(db, "INSERT INTO t (v) VALUES (randomblob(2000));");
      const stale = await waitFor("a stale status", async () => {
        const s = await statusJson("-config", config);
        return s.code === 1 ? s.status : undefined;
      });
      const r = stale.dbs[0].replicas[0];
      assert.equal(r.healthy, false);
      // The CLI's connection, the last to close, checkpointed and removed the WAL: the commit is
      // beyond what status can compare, and it says so rather than "behind".
      assert.match(
        r.problem ?? "",
        /^WAL restarted since replicate ran; last upload \d+s ago \(limit 2s\)$/,
      );
      assert.match(stale.dbs[0].note ?? "", /WAL restarted since/);
      assert.ok(r.lagMs !== null && r.lagMs > 2000);
    });
  } finally {
    if (!stopped) await rep.stop();
  }

  await t.step("never replicated, missing: exit 1", async () => {
    const never = `${dir}/never.db`;
    const missing = `${dir}/missing.db`;
    await createWriterTable(never);
    const config2 = await writeConfig(
      `${dir}/never.yml`,
      configYaml([
        { path: never, replicas: [{ path: `${dir}/r1` }] },
        { path: missing, replicas: [{ path: `${dir}/r2` }] },
      ]),
    );
    const { code, status } = await statusJson("-config", config2);
    assert.equal(code, 1);
    assert.equal(status.dbs.length, 2);
    assert.match(status.dbs[0].problem ?? "", /never replicated/);
    assert.equal(status.dbs[0].replicas[0].healthy, false);
    assert.equal(status.dbs[1].exists, false);
    assert.match(status.dbs[1].problem ?? "", /database does not exist/);
    // One database only.
    const one = await statusJson("-config", config2, missing);
    assert.equal(one.status.dbs.length, 1);
    assert.equal(one.code, 1);
  });

  await t.step("databases under a dir entry: each listed, healthy once replicated", async () => {
    const data = `${dir}/tenants`;
    await Deno.mkdir(`${data}/eu`, { recursive: true });
    for (const db of [`${data}/a.db`, `${data}/eu/b.db`]) await createWriterTable(db);
    const config3 = await writeConfig(
      `${dir}/tenants.yml`,
      `dbs:\n  - dir: ${data}\n    pattern: "*.db"\n    recursive: true\n` +
        `    replicas:\n      - path: ${dir}/tenant-replicas\n`,
    );
    const before = await statusJson("-config", config3);
    assert.deepEqual(before.status.dbs.map((d) => d.path).sort(), [
      `${data}/a.db`,
      `${data}/eu/b.db`,
    ]);
    assert.equal(before.code, 1, "never replicated");
    const once = await runLitestream(["replicate", "-once", "-config", config3]);
    assert.equal(once.code, 0, describeResult(once));
    const after = await statusJson("-config", config3);
    assert.equal(after.code, 0, JSON.stringify(after.status));
    assert.ok(after.status.dbs.every((d) => d.replicas.every((r) => r.healthy)));
    // One database of the entry by its path.
    const one = await statusJson("-config", config3, `${data}/eu/b.db`);
    assert.deepEqual(one.status.dbs.map((d) => d.path), [`${data}/eu/b.db`]);
  });
});

Deno.test("an addr already in use: replicate logs one error and replicates without it", async () => {
  await using tmp = await tempDir();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const addr = `127.0.0.1:${taken.addr.port}`;
  const db = `${tmp.path}/app.db`;
  const config = await writeConfig(
    `${tmp.path}/litestream.yml`,
    configYaml(
      [{ path: db, replicas: [{ type: "file", path: `${tmp.path}/replica` }] }],
      `addr: ${addr}\n`,
    ),
  );
  await createWriterTable(db);
  await sqlite(db, "INSERT INTO t (v) VALUES ('kept');");
  const rep = startReplicate(["-config", config], { logPath: `${tmp.path}/replicate.log` });
  try {
    const line = await rep.waitForLog(/cannot start metrics server.*/);
    assert.match(line[0], new RegExp(`addr=${addr}.*in use`, "i"));
    await waitFor("the first snapshot", async () => {
      const r = await runLitestream(["snapshots", "-config", config, db]);
      return r.code === 0 && r.out.trim().split("\n").length > 1;
    });
  } finally {
    await stopOk(rep);
  }
  const restored = await restoreOk(tmp.path, ["-config", config, db]);
  assert.equal((await sqlite(restored, "SELECT v FROM t;")).trim(), "kept");
});
