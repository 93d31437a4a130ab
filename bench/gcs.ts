/**
 * Scenarios with a GCS replica, against OUR GCS test server (tests/support/gcs_server.ts; no
 * GCS emulator installs here) in its own process (`bench/gcs_server_process.ts`, a fresh one per
 * run and per tool), objects in memory. Both tools reach it through `STORAGE_EMULATOR_HOST`
 * (v0.3.13 through Google's Go library), which this process sets while a server runs and the
 * replicators and restores it starts inherit; runs are sequential.
 *
 * - `gcs-write-load`: the write load of `replicate-write-load`; catch-up, CPU, peak RSS, requests.
 * - `gcs-snapshot`: first snapshot of a 1 GB database (resumable upload in chunks): time and peak
 *   RSS (ours must stay under 150 MB).
 * - `gcs-restore-large`: the `restore-large` replica (built by v0.3.13), copied to the server,
 *   restored from `gcs://` by both tools.
 *
 * @module
 */

import { LOAD, writeLoadScenario } from "./replicate_write_load.ts";
import { snapshotScenario } from "./replicate_snapshot.ts";
import { LARGE, noSlower, oursRss, restoreScenario } from "./restore.ts";
import { gcsReplicaLister, waitForSnapshot } from "./support/replica_watch.ts";
import type { Scenario } from "./support/report.ts";
import { startServerProcess } from "./support/s3rver.ts";
import { BACKEND_RSS_MB, DEFAULT_RUNS, type TargetFactory } from "./support/targets.ts";
import { toolSlug } from "./support/tools.ts";
import { listReplicaObjects } from "../tests/support/fixtures.ts";

/** Starts a server process and points `STORAGE_EMULATOR_HOST` at it until `stop`. */
async function gcsServer() {
  const p = await startServerProcess("bench/gcs_server_process.ts");
  Deno.env.set("STORAGE_EMULATOR_HOST", p.info.host);
  return {
    ...p,
    async stop() {
      Deno.env.delete("STORAGE_EMULATOR_HOST");
      await p.stop();
    },
  };
}

/** A fresh server process per run; the replica lives under `bench-<tool>/` in its bucket. */
function gcsTargets(pollMs: number): TargetFactory {
  return {
    kind: "gcs",
    pollMs,
    snapshotTiming: `from spawning the replicator to the end of the first listing (every ` +
      `${pollMs} ms) that shows a snapshot; a GCS object is listed only once its upload completed`,
    async setup(tool) {
      const srv = await gcsServer();
      const target = {
        type: "gcs" as const,
        endpoint: srv.info.endpoint,
        bucket: srv.info.bucket,
        path: `bench-${toolSlug(tool)}`,
      };
      const lister = gcsReplicaLister(target);
      return {
        target,
        lister,
        requests: () => srv.requests(),
        // An object is listed only once its upload completed (GCS semantics).
        waitForSnapshot: (proc, timeoutMs) => waitForSnapshot(lister, proc, timeoutMs, pollMs),
        cleanup: () => srv.stop(),
      };
    },
  };
}

/** Copies a cached file replica into a fresh server process, as `restore-large/`. */
async function viaGcs(replicaPath: string) {
  const srv = await gcsServer();
  try {
    const objects = await listReplicaObjects(replicaPath);
    const prefix = "restore-large";
    let bytes = 0;
    for (const o of objects) {
      const rel = o.path.slice(replicaPath.length + 1);
      const q = new URLSearchParams({ uploadType: "media", name: `${prefix}/${rel}` });
      const data = await Deno.readFile(o.path);
      bytes += data.length;
      const res = await fetch(
        `${srv.info.endpoint}/upload/storage/v1/b/${srv.info.bucket}/o?${q}`,
        { method: "POST", body: data },
      );
      if (!res.ok) throw new Error(`upload of ${rel}: HTTP ${res.status} ${await res.text()}`);
      await res.body?.cancel();
    }
    return {
      source: [`gcs://${srv.info.bucket}/${prefix}`],
      facts: {
        "replica served by": `our GCS test server (tests/support/gcs_server.ts) in its own ` +
          `process, objects in memory: ${objects.length} objects, ${(bytes / 1e6).toFixed(1)} MB`,
      },
      stop: () => srv.stop(),
    };
  } catch (err) {
    await srv.stop();
    throw err;
  }
}

/** The GCS scenarios, in the order `bench/main.ts` runs them. */
export const scenarios: Scenario[] = [
  {
    name: "gcs-write-load",
    summary: `GCS (our test server, separate process): ${LOAD.rate} tx/s of 1 KB rows for ` +
      `${LOAD.seconds} s; catch-up, CPU, peak RSS, requests`,
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      writeLoadScenario(
        ctx,
        "gcs-write-load",
        scenarios[0].summary,
        gcsTargets(50),
        BACKEND_RSS_MB,
      ),
  },
  {
    name: "gcs-snapshot",
    summary: "GCS (our test server, separate process): first snapshot of a 1 GB database; time " +
      "and peak RSS",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      snapshotScenario(ctx, {
        name: "gcs-snapshot",
        summary: scenarios[1].summary,
        factory: gcsTargets(100),
        dbKey: "db-1gb-v1",
        dbBytes: 1e9,
        rssLimitMB: BACKEND_RSS_MB,
      }),
  },
  {
    name: "gcs-restore-large",
    summary: "GCS (our test server, separate process): restore the restore-large replica " +
      "(~220 MB snapshot plus >1,000 WAL segments) from gcs://",
    run: (ctx) =>
      restoreScenario(ctx, {
        name: "gcs-restore-large",
        description: scenarios[2].summary,
        recipe: LARGE,
        via: viaGcs,
        targets: (ours, v0313) => [noSlower(ours, v0313), oursRss(ours)],
      }),
  },
];
