/**
 * Replicate scenarios with an S3 replica: the drivers of `bench/replicate.ts` against s3rver on
 * 127.0.0.1, which runs in a separate process (`bench/s3rver_process.ts`, a fresh one per run and
 * per tool) so its CPU and memory count against neither replicator. The server logs every
 * request with its user agent, so requests can be counted per window (the benchmark's own
 * listings, made with user agent `litestream-bench`, are left out).
 *
 * - `s3-write-load`: the write load of `replicate-write-load`; catch-up, CPU, peak RSS, requests.
 * - `s3-idle`: two consecutive 60 s windows without writes after the first snapshot (the first
 *   includes the checkpoint the default 1-minute `checkpoint-interval` makes; the second is the
 *   steady state): S3 requests per minute, CPU%, RSS.
 * - `s3-snapshot`: first snapshot of a 1 GB database uploaded to an empty bucket prefix: time and
 *   peak RSS (ours must stay under 150 MB).
 *
 * @module
 */

import { IDLE_SECONDS, idleScenario } from "./replicate_idle.ts";
import { snapshotScenario } from "./replicate_snapshot.ts";
import { LOAD, writeLoadScenario } from "./replicate_write_load.ts";
import { s3ReplicaLister, waitWhileReplicating } from "./support/replica_watch.ts";
import type { Scenario } from "./support/report.ts";
import { snapshotUploadedAt, startS3rverProcess } from "./support/s3rver.ts";
import { BACKEND_RSS_MB, DEFAULT_RUNS, type TargetFactory } from "./support/targets.ts";
import { toolSlug } from "./support/tools.ts";

/** A fresh s3rver process per run; the replica lives under `bench-<tool>/` in its bucket. */
function s3Targets(pollMs: number): TargetFactory {
  return {
    kind: "s3",
    pollMs,
    async setup(tool) {
      const srv = await startS3rverProcess();
      const path = `bench-${toolSlug(tool)}`;
      const target = srv.target(path);
      return {
        target,
        lister: s3ReplicaLister(target),
        requests: () => srv.requests(),
        // s3rver lists an object while its data still streams in; the server's answer to the
        // request completing the upload (single PUT or CompleteMultipartUpload) marks the end.
        waitForSnapshot: (proc, timeoutMs) =>
          waitWhileReplicating(
            "the first snapshot upload to complete",
            proc,
            () => Promise.resolve(snapshotUploadedAt(srv.requests(), path)),
            timeoutMs,
            pollMs,
          ),
        cleanup: () => srv.stop(),
      };
    },
  };
}

/** The S3 scenarios, in the order `bench/main.ts` runs them. */
export const scenarios: Scenario[] = [
  {
    name: "s3-write-load",
    summary: `S3 (s3rver, separate process): ${LOAD.rate} tx/s of 1 KB rows for ${LOAD.seconds} ` +
      "s; catch-up, CPU, peak RSS, requests",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) => writeLoadScenario(ctx, "s3-write-load", scenarios[0].summary, s3Targets(50)),
  },
  {
    name: "s3-idle",
    summary: `S3 (s3rver, separate process): 2 × ${IDLE_SECONDS} s without writes after the ` +
      "first snapshot; requests per minute, CPU%, RSS",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) => idleScenario(ctx, "s3-idle", scenarios[1].summary, s3Targets(100), 2),
  },
  {
    name: "s3-snapshot",
    summary: "S3 (s3rver, separate process): first snapshot of a 1 GB database; time and peak RSS",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      snapshotScenario(ctx, {
        name: "s3-snapshot",
        summary: scenarios[2].summary,
        factory: s3Targets(100),
        dbKey: "db-1gb-v1",
        dbBytes: 1e9,
        rssLimitMB: BACKEND_RSS_MB,
      }),
  },
];
