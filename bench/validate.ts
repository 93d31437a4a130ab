/**
 * Validate scenarios (ours only: v0.3.13 has no `validate` command), on a 200 MB database with a
 * file replica and no replicator running:
 *
 * - `validate-db`: `deno run -A main.ts validate -config CFG DB` (checksum of the live database
 *   against a restore of the replica at the same position).
 * - `validate-replica`: `deno run -A main.ts validate file:///…/replica` (every object of the
 *   replica, without the primary).
 *
 * The database and replica are built once by OUR replicator and cached in
 * `.cache/bench/validate-200mb-v1/`: a 200 MB database, its first snapshot, then 5 s of writes
 * (200 transactions/s of one 1 KB row) so the replica also holds WAL segments.
 *
 * @module
 */

import { BENCH_CACHE, createDatabase, removeTree, REPO_ROOT } from "./support/cache.ts";
import { CatchUpWatcher } from "./support/catch_up.ts";
import { runLoadWriter } from "./support/load.ts";
import { requireGnuTime, type RunStats, timeCommand } from "./support/measure.ts";
import {
  fileReplicaLister,
  isSegmentName,
  isSnapshotName,
  waitForSnapshot,
} from "./support/replica_watch.ts";
import {
  type BenchContext,
  medianRange,
  type Scenario,
  type ScenarioReport,
} from "./support/report.ts";
import { OURS_RUN, replicateConfig, startReplicator, stopReplicator } from "./support/tools.ts";

const KEY = "validate-200mb-v1";
const DB_BYTES = 200e6;

interface Fixture {
  dir: string;
  dbPath: string;
  replicaPath: string;
  configPath: string;
  dbBytes: number;
  segments: number;
}

/** The config of the fixture in `dir` (paths are absolute, so it is rewritten on every use). */
function fixtureConfig(dir: string): string {
  return replicateConfig(`${dir}/app.db`, { type: "file", path: `${dir}/replica` });
}

/** Returns the cached fixture, building it with our replicator the first time. */
async function fixture(log: (m: string) => void): Promise<Fixture> {
  const dir = `${BENCH_CACHE}/${KEY}`;
  let ready = true;
  try {
    await Deno.stat(`${dir}/ready`);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    ready = false;
  }
  if (!ready) {
    await Deno.mkdir(BENCH_CACHE, { recursive: true });
    await removeTree(dir);
    // Built in place (the replicator's shadow directory records the database path), marked
    // ready at the end; a failed build is removed.
    await Deno.mkdir(dir);
    try {
      await build(dir, log);
      await Deno.writeTextFile(`${dir}/ready`, new Date().toISOString() + "\n");
    } catch (err) {
      await removeTree(dir);
      throw err;
    }
  }
  const configPath = `${dir}/litestream.yml`;
  await Deno.writeTextFile(configPath, fixtureConfig(dir));
  const names = await fileReplicaLister(`${dir}/replica`).list();
  return {
    dir,
    dbPath: `${dir}/app.db`,
    replicaPath: `${dir}/replica`,
    configPath,
    dbBytes: (await Deno.stat(`${dir}/app.db`)).size,
    segments: names.filter(isSegmentName).length,
  };
}

async function build(dir: string, log: (m: string) => void): Promise<void> {
  log(`[${KEY}] creating a ${(DB_BYTES / 1e6).toFixed(0)} MB database`);
  const dbPath = `${dir}/app.db`;
  await createDatabase(dbPath, DB_BYTES);
  const configPath = `${dir}/litestream.yml`;
  await Deno.writeTextFile(configPath, fixtureConfig(dir));
  const lister = fileReplicaLister(`${dir}/replica`);
  const proc = await startReplicator("ours", configPath);
  try {
    await waitForSnapshot(lister, proc, 120_000, 100);
    log(`[${KEY}] snapshot written; writing for 5 s`);
    const token = `LITESTREAM-BENCH-LAST-COMMIT-${crypto.randomUUID()}`;
    const watcher = new CatchUpWatcher(lister, token, 50);
    watcher.start();
    try {
      const load = await runLoadWriter(dbPath, { rate: 200, seconds: 5, rowBytes: 1000, token });
      await watcher.waitForToken(load.lastCommitEpochMs, 60_000);
    } finally {
      await watcher.stop();
    }
  } finally {
    await stopReplicator(proc).catch(async (err) => {
      await proc.kill();
      throw err;
    });
  }
  const names = await lister.list();
  if (!names.some(isSnapshotName) || !names.some(isSegmentName)) {
    throw new Error(`[${KEY}] the replica lacks a snapshot or segments: ${names}`);
  }
  log(`[${KEY}] built: ${names.filter(isSegmentName).length} WAL segments`);
}

type Variant = "db" | "replica";

async function validateScenario(ctx: BenchContext, variant: Variant): Promise<ScenarioReport> {
  await requireGnuTime();
  const f = await fixture(ctx.log);
  const args = variant === "db"
    ? ["validate", "-config", f.configPath, f.dbPath]
    : ["validate", `file://${f.replicaPath}`];
  const once = async (): Promise<RunStats> => {
    await new Deno.Command("sync").output();
    return await timeCommand(Deno.execPath(), [...OURS_RUN, ...args], {
      cwd: REPO_ROOT,
    });
  };
  const name = `validate-${variant}`;
  ctx.log(`[${name}] warm-up`);
  await once();
  const runs: RunStats[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const s = await once();
    runs.push(s);
    ctx.log(
      `[${name}] run ${i + 1}/${ctx.runs}: wall ${s.wallS.toFixed(3)} s, cpu ${
        (s.userS + s.sysS).toFixed(2)
      } s, peak RSS ${s.maxRssMB.toFixed(1)} MB`,
    );
  }
  const command = variant === "db"
    ? "deno run -A main.ts validate -config litestream.yml app.db"
    : "deno run -A main.ts validate file:///…/replica";
  return {
    name,
    description: scenarios.find((s) => s.name === name)!.summary,
    facts: {
      command: `\`${command}\` (exit 0 required), with no replicator running`,
      database: `${(f.dbBytes / 1e6).toFixed(1)} MB (one 3,000-byte random blob per 4 KiB page)`,
      replica: `file replica written by our replicator: one snapshot and ${f.segments} WAL ` +
        "segments (5 s of 200 tx/s of 1 KB rows after the snapshot)",
      measurement: "wall time around the child; CPU and peak RSS from GNU time; one unmeasured " +
        "warm-up; `sync` before each run",
    },
    rows: [],
    table: {
      header: ["tool", "wall (s)", "CPU user+sys (s)", "peak RSS (MB)"],
      rows: [[
        "ours (Deno)",
        medianRange(runs.map((r) => r.wallS), 3),
        medianRange(runs.map((r) => r.userS + r.sysS), 2),
        medianRange(runs.map((r) => r.maxRssMB), 1),
      ]],
    },
    runs: ctx.runs,
    checks: [`every run exited 0 (${ctx.runs + 1} runs)`],
    targets: [],
  };
}

/** The validate scenarios, in the order `bench/main.ts` runs them. */
export const scenarios: Scenario[] = [
  {
    name: "validate-db",
    summary: "validate -config CFG DB: a 200 MB database against its file replica (ours only)",
    defaultRuns: 3,
    run: (ctx) => validateScenario(ctx, "db"),
  },
  {
    name: "validate-replica",
    summary: "validate file:///replica: every object of the 200 MB database's replica (ours only)",
    defaultRuns: 3,
    run: (ctx) => validateScenario(ctx, "replica"),
  },
];
