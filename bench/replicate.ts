/**
 * Replicate scenarios with a file replica: our `deno run -A main.ts replicate -config CFG`
 * against the real Litestream v0.3.13 `litestream replicate -config CFG`, reading the same YAML
 * (default intervals and checkpoint thresholds unless a scenario says otherwise).
 *
 * - `replicate-write-load`: a separate writer process commits 500 transactions per second of one
 *   1 KB row each for 20 s; catch-up, CPU, peak RSS (`bench/replicate_write_load.ts`).
 * - `age-write-load`: the same load on a file replica encrypted with age (both tools encrypt every
 *   object for one X25519 recipient).
 * - `replicate-idle`: two consecutive 60 s windows without writes after the first snapshot; CPU%
 *   and RSS over each (`bench/replicate_idle.ts`).
 * - `replicate-snapshot`: a 500 MB database and an empty replica: time from spawning the
 *   replicator until the first snapshot is listed on the replica, and peak RSS
 *   (`bench/replicate_snapshot.ts`).
 * - `replicate-lag`: single commits, each 1–2 s after the last reached the replica; the lag of
 *   each (`bench/replicate_lag.ts`, shared with `sftp-lag`).
 *
 * The drivers are shared with `bench/s3.ts`, which runs the same work against S3.
 *
 * @module
 */

import type { Scenario } from "./support/report.ts";
import {
  AGE_FILE_TARGETS,
  BACKEND_RSS_MB,
  DEFAULT_RUNS,
  FILE_TARGETS,
  MAX_RSS_MB,
} from "./support/targets.ts";
import { IDLE_SECONDS, idleScenario } from "./replicate_idle.ts";
import { snapshotScenario } from "./replicate_snapshot.ts";
import { LOAD, writeLoadScenario } from "./replicate_write_load.ts";
import { lagScenario } from "./replicate_lag.ts";

/** The file-replica replicate scenarios, in the order `bench/main.ts` runs them. */
export const scenarios: Scenario[] = [
  {
    name: "replicate-write-load",
    summary: `file replica: ${LOAD.rate} tx/s of 1 KB rows for ${LOAD.seconds} s; catch-up, ` +
      "CPU, peak RSS",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      writeLoadScenario(
        ctx,
        "replicate-write-load",
        scenarios[0].summary,
        FILE_TARGETS,
      ),
  },
  {
    name: "age-write-load",
    summary: `file replica encrypted with age: ${LOAD.rate} tx/s of 1 KB rows for ` +
      `${LOAD.seconds} s; catch-up, CPU, peak RSS`,
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      writeLoadScenario(
        ctx,
        "age-write-load",
        scenarios[1].summary,
        AGE_FILE_TARGETS,
        BACKEND_RSS_MB,
      ),
  },
  {
    name: "replicate-idle",
    summary:
      `file replica: ${IDLE_SECONDS} s without writes after the first snapshot; CPU% and RSS`,
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) => idleScenario(ctx, "replicate-idle", scenarios[2].summary, FILE_TARGETS, 2),
  },
  {
    name: "replicate-snapshot",
    summary: "file replica: first snapshot of a 500 MB database; time and peak RSS",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      snapshotScenario(ctx, {
        name: "replicate-snapshot",
        summary: scenarios[3].summary,
        factory: { ...FILE_TARGETS, pollMs: 50 },
        dbKey: "db-500mb-v1",
        dbBytes: 500e6,
        rssLimitMB: MAX_RSS_MB,
      }),
  },
  {
    name: "replicate-lag",
    summary: "file replica: single commits; the lag of each",
    defaultRuns: 1,
    run: (ctx) =>
      lagScenario(
        ctx,
        "replicate-lag",
        scenarios[4].summary,
        FILE_TARGETS,
        "a local directory",
      ),
  },
];
