/**
 * The heartbeat end to end: `heartbeat-url` points at a local `Deno.serve` server; while the
 * replica's store refuses every request the heartbeat is withheld (logged), and once the store
 * answers and the replica has caught up, the server gets its request. The first request comes
 * at the first check after start-up (15 s, as v0.5), so this file takes about half a minute.
 */

import assert from "node:assert/strict";
import { tempDir, waitFor } from "../support/poll.ts";
import { createWriterTable, sqlite } from "../support/sqlite_cli.ts";
import { startS3rver } from "../support/s3_server.ts";
import { startFaultProxy } from "../support/fault_proxy.ts";
import { configYaml, s3ReplicaKeys } from "../support/config_yaml.ts";
import { freePort } from "../support/net.ts";
import { startReplicate, stopOk, writeConfig } from "../support/replicate_process.ts";

Deno.test("heartbeat: requested only while every replica is healthy", async () => {
  await using tmp = await tempDir();
  await using srv = await startS3rver();
  await using proxy = startFaultProxy(srv.endpoint);
  const pings: string[] = [];
  const hb = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    pings.push(`${req.method} ${new URL(req.url).pathname}`);
    return new Response("ok");
  });
  try {
    const dir = tmp.path;
    const db = `${dir}/app.db`;
    const addr = `127.0.0.1:${freePort()}`;
    const head = `addr: ${addr}\nmax-lag-intervals: 2\n` +
      `heartbeat-url: http://127.0.0.1:${hb.addr.port}/ping\nheartbeat-interval: 1m\n`;
    const replica = s3ReplicaKeys({
      srv,
      path: "hb",
      endpoint: proxy.endpoint,
      extra: { "sync-interval": "500ms" },
    });
    const config = await writeConfig(
      `${dir}/litestream.yml`,
      configYaml([{ path: db, replicas: [replica] }], head),
    );
    await createWriterTable(db);
    await sqlite(db, "INSERT INTO t (v) VALUES (randomblob(1000));");
    proxy.setRules({ fault: { kind: "drop" } }); // the store is unreachable from the start
    const rep = startReplicate(["-config", config], { logPath: `${dir}/replicate.log` });
    try {
      await rep.waitForLog(/heartbeat enabled/);
      await rep.waitForLog(/heartbeat withheld: not every replica is healthy/, {
        timeoutMs: 30_000,
      });
      assert.deepEqual(pings, [], "no heartbeat while the replica cannot sync");

      proxy.setRules();
      await waitFor("/healthz 200", async () => {
        const res = await fetch(`http://${addr}/healthz`);
        await res.body?.cancel();
        return res.status === 200;
      }, 20_000);
      await waitFor("a heartbeat", () => pings.length > 0, 25_000);
      assert.deepEqual(pings, ["GET /ping"]);
      await stopOk(rep);
    } finally {
      if (!rep.exited) await rep.kill();
    }
  } finally {
    await hb.shutdown();
  }
});
