/**
 * Azure Blob Storage (`abs`) scenarios against Azurite, which runs as its own Node process (a
 * fresh one per run and per tool), so its CPU and memory count against neither tool. v0.3.13
 * reaches it through `endpoint:`, as we do.
 *
 * - `abs-write-load`: the write load of `replicate-write-load`; catch-up, CPU, peak RSS.
 * - `abs-snapshot`: first snapshot of a 1 GB database (staged blocks): time and peak RSS.
 * - `abs-restore-large`: the replica of `restore-large` (written by v0.3.13 to a directory),
 *   uploaded blob by blob to Azurite and restored from there by both tools (config mode).
 *
 * @module
 */

import { ContainerClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { listReplicaObjects } from "../tests/support/fixtures.ts";
import {
  AZURITE_ACCOUNT,
  AZURITE_KEY,
  startAzurite,
  type TestAzurite,
} from "../tests/support/azurite.ts";
import { LARGE, noSlower, oursRss, restoreScenario } from "./restore.ts";
import { LOAD, writeLoadScenario } from "./replicate_write_load.ts";
import { snapshotScenario } from "./replicate_snapshot.ts";
import { absReplicaLister, waitForSnapshot } from "./support/replica_watch.ts";
import type { Scenario } from "./support/report.ts";
import { BACKEND_RSS_MB, DEFAULT_RUNS, type TargetFactory } from "./support/targets.ts";
import { type ReplicaTarget, replicateConfig, toolSlug } from "./support/tools.ts";

const CONTAINER = "bench";

/** The abs replica target under `path` of Azurite `srv`. */
function absTarget(srv: TestAzurite, path: string): Extract<ReplicaTarget, { type: "abs" }> {
  return {
    type: "abs",
    endpoint: srv.endpoint,
    accountName: AZURITE_ACCOUNT,
    accountKey: AZURITE_KEY,
    container: CONTAINER,
    path,
  };
}

/** A fresh Azurite per run; the replica lives under `bench-<tool>/` in its container. */
function absTargets(pollMs: number): TargetFactory {
  return {
    kind: "abs",
    pollMs,
    snapshotTiming: `from spawning the replicator to the end of the first listing (every ` +
      `${pollMs} ms) that shows a snapshot; a blob is listed only once its blocks are committed`,
    async setup(tool) {
      const srv = await startAzurite();
      await srv.container(CONTAINER);
      const target = absTarget(srv, `bench-${toolSlug(tool)}`);
      const lister = absReplicaLister(target);
      return {
        target,
        lister,
        // Blobs are listed only once committed: a listed snapshot is complete.
        waitForSnapshot: (proc, timeoutMs) => waitForSnapshot(lister, proc, timeoutMs, pollMs),
        cleanup: () => srv.close(),
      };
    },
  };
}

/**
 * Uploads the file replica v0.3.13 wrote to a fresh Azurite (oldest object first, so creation
 * times keep their order) and points both tools at it through a config file.
 */
async function azuriteCopy(
  replicaPath: string,
  scratch: string,
): Promise<{ source: string[]; facts: Record<string, string>; stop(): Promise<void> }> {
  const srv = await startAzurite();
  try {
    await srv.container(CONTAINER);
    const container = new ContainerClient(
      `${srv.endpoint}/${CONTAINER}`,
      new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
    );
    const objects = (await listReplicaObjects(replicaPath))
      .sort((a, b) => (a.mtimeNs < b.mtimeNs ? -1 : a.mtimeNs > b.mtimeNs ? 1 : 0));
    for (const o of objects) {
      const rel = o.path.slice(replicaPath.length + 1);
      await container.getBlockBlobClient(`large/${rel}`).uploadFile(o.path);
    }
    const dbPath = `${scratch}/source.db`;
    const configPath = `${scratch}/abs.yml`;
    await Deno.writeTextFile(configPath, replicateConfig(dbPath, absTarget(srv, "large")));
    return {
      source: ["-config", configPath, dbPath],
      facts: {
        source: `the replica copied to Azurite (${objects.length} blobs under ` +
          `${CONTAINER}/large/), restored in config mode with endpoint ${srv.endpoint}`,
      },
      stop: () => srv.close(),
    };
  } catch (err) {
    await srv.close();
    throw err;
  }
}

/** The abs scenarios, in the order `bench/main.ts` runs them. */
export const scenarios: Scenario[] = [
  {
    name: "abs-write-load",
    summary: `Azure Blob Storage (Azurite, separate process): ${LOAD.rate} tx/s of 1 KB rows ` +
      `for ${LOAD.seconds} s; catch-up, CPU, peak RSS`,
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      writeLoadScenario(
        ctx,
        "abs-write-load",
        scenarios[0].summary,
        absTargets(50),
        BACKEND_RSS_MB,
      ),
  },
  {
    name: "abs-snapshot",
    summary: "Azure Blob Storage (Azurite, separate process): first snapshot of a 1 GB database; " +
      "time and peak RSS",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      snapshotScenario(ctx, {
        name: "abs-snapshot",
        summary: scenarios[1].summary,
        factory: absTargets(100),
        dbKey: "db-1gb-v1",
        dbBytes: 1e9,
        rssLimitMB: BACKEND_RSS_MB,
      }),
  },
  {
    name: "abs-restore-large",
    summary: "restore-large's replica (~220 MB snapshot, >1,000 WAL segments) from Azure Blob " +
      "Storage (Azurite, separate process)",
    run: (ctx) =>
      restoreScenario(ctx, {
        name: "abs-restore-large",
        description: scenarios[2].summary,
        recipe: LARGE,
        targets: (ours, v0313) => [noSlower(ours, v0313), oursRss(ours)],
        via: azuriteCopy,
      }),
  },
];
