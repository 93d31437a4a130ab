/**
 * `many-dbs`: N small databases in one process (issue 10). Ours replicates them from one `dir`
 * entry; v0.3.13 gets the same databases listed one by one; each database has its own file
 * replica at `<replicas>/<name>` (the same layout for both). Per run and tool, on fresh copies:
 *
 * 1. start-up: time from spawning the replicator until every replica lists a snapshot;
 * 2. idle: CPU over {@link IDLE_S} s of steady state (see {@link STEADY_AFTER_S}), RSS at its end;
 * 3. fan-out: one commit to every database (one writer process, in order); the time from the
 *    last commit until every replica lists a new WAL segment (the database was idle, so a new
 *    segment holds that commit);
 * 4. spread load: {@link LOAD_RATE} transactions a second across all databases for
 *    {@link LOAD_S} s from one writer process: the replicator's CPU over the load, and the
 *    catch-up of a random sample of {@link SAMPLE} databases (time after the last commit until
 *    our restore of each equals its database);
 * 5. peak RSS of the whole run (GNU time).
 *
 * `many-dbs` runs N = 100 and 1,000 (runs alternate the tool order); `many-dbs-10000` runs
 * N = 10,000 once, ours only, for the record.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { sleep } from "../lib/os/async.ts";
import { readDirOrEmpty } from "../lib/os/fs.ts";
import { waitFor } from "../tests/support/poll.ts";
import { dbDigest, restoreFileReplica } from "../tests/support/db_digest.ts";
import { removeTree, REPO_ROOT, scratchDir } from "./support/cache.ts";
import { epochMs } from "./support/load.ts";
import { type MeasuredProcess, requireGnuTime } from "./support/measure.ts";
import { fileReplicaLister, isSegmentName, isSnapshotName } from "./support/replica_watch.ts";
import { median, medianRange, type Scenario, type ScenarioReport } from "./support/report.ts";
import {
  killQuietly,
  startReplicator,
  stopReplicator,
  type Tool,
  toolLabel,
  toolOrder,
} from "./support/tools.ts";

/** Idle window, seconds. */
export const IDLE_S = 60;
/**
 * The idle window opens at least {@link SETTLE_S} s after the last snapshot and no sooner than
 * {@link STEADY_AFTER_S} s after start: both tools checkpoint every database once, a minute
 * (the default checkpoint-interval) after start-up wrote to it, and at N = 1,000 on this
 * loaded machine those thousand checkpoints take tens of seconds.
 */
const SETTLE_S = 5;
const STEADY_AFTER_S = 150;
/** Spread load: transactions a second across all databases, and for how long. */
const LOAD_RATE = 2000;
const LOAD_S = 20;
/** Databases whose restores are checked after the load. */
const SAMPLE = 20;
/** Targets at N = 1,000. */
const TARGETS = { idlePct: 0.5, peakRssMB: 400, fanOutS: 2, startupS: 60 };

/** One run of one tool at one N. */
interface ManyRun {
  startupS: number;
  idlePct: number;
  idleRssMB: number;
  fanOutS: number;
  loadCpuPct: number;
  catchUpS: number;
  peakRssMB: number;
  /** Our restores of the sample equal to their databases. */
  sampleOk: number;
}

/** N small databases (a table `t` with 10 rows of 100 bytes), in WAL mode; their paths. */
export async function createDbs(dir: string, n: number): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (let i = 0; i < n; i++) {
    const path = join(dir, `t${String(i).padStart(5, "0")}.db`);
    const db = new DatabaseSync(path);
    db.exec(
      "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);" +
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 10) " +
        "INSERT INTO t (v) SELECT randomblob(100) FROM c;",
    );
    db.close();
    paths.push(path);
  }
  return paths;
}

/** The config: one `dir` entry (ours) or every database listed (v0.3.13); defaults otherwise. */
function config(tool: Tool, dataDir: string, replicas: string, paths: string[]): string {
  if (tool === "ours") {
    return `dbs:\n  - dir: ${dataDir}\n    pattern: "*.db"\n    replicas:\n      - path: ${replicas}\n`;
  }
  return "dbs:\n" +
    paths.map((p) =>
      `  - path: ${p}\n    replicas:\n      - path: ${
        join(replicas, p.slice(dataDir.length + 1))
      }\n`
    ).join("");
}

/**
 * A poll that turns true once every replica lists a snapshot; each call lists only the replicas
 * still without one.
 */
export function everySnapshotted(replicas: string[]): () => Promise<boolean> {
  let pending = replicas;
  return async () => {
    const counts = await Promise.all(
      pending.map(async (r) => (await fileReplicaLister(r).list()).filter(isSnapshotName).length),
    );
    pending = pending.filter((_, i) => counts[i] === 0);
    return pending.length === 0;
  };
}

/** Runs the writer process (`bench/many_dbs_writer.ts`); returns its JSON line. */
async function runWriter(listFile: string, rate: number, seconds: number) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/bench/many_dbs_writer.ts`, listFile, `${rate}`, `${seconds}`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`writer failed: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(new TextDecoder().decode(out.stdout)) as {
    transactions: number;
    elapsedS: number;
    lastCommitEpochMs: number;
  };
}

/**
 * One commit to every database in `listFile` (one writer process, in order); the seconds from the
 * last commit until every replica in `replicas` lists a new WAL segment (each database was idle,
 * so a new segment holds that commit). Each poll stats one directory a replica (its generations'
 * WAL directories), and lists one only once its time has changed: listing a thousand replicas
 * every 50 ms took most of a core from the replicator it measured.
 */
export async function fanOut(replicas: string[], listFile: string): Promise<number> {
  const watches = await Promise.all(replicas.map(walDirWatch));
  const fan = await runWriter(listFile, 0, 0);
  let pending = watches;
  await waitFor(
    "every replica with the fan-out commit",
    async () => {
      const done = await Promise.all(pending.map(newSegment));
      pending = pending.filter((_, i) => !done[i]);
      return pending.length === 0;
    },
    120_000,
    50,
  );
  return (epochMs() - fan.lastCommitEpochMs) / 1000;
}

/** A replica's WAL directories, each with its time and segment count before the fan-out. */
type WalDirWatch = { dir: string; mtimeMs: number; segments: number }[];

async function walDirWatch(replica: string): Promise<WalDirWatch> {
  const watch: WalDirWatch = [];
  for (const gen of await readDirOrEmpty(join(replica, "generations"))) {
    const dir = join(replica, "generations", gen.name, "wal");
    watch.push({ dir, mtimeMs: await mtimeMs(dir), segments: await segmentsIn(dir) });
  }
  return watch;
}

/**
 * Whether a WAL directory of the replica holds more segments than before. Listed only once its
 * time changed (a segment is written as a temporary file and renamed: the directory changes
 * twice, possibly within one millisecond, so a changed directory is listed until it shows one).
 */
async function newSegment(watch: WalDirWatch): Promise<boolean> {
  for (const w of watch) {
    if (await mtimeMs(w.dir) !== w.mtimeMs && await segmentsIn(w.dir) > w.segments) return true;
  }
  return false;
}

async function mtimeMs(path: string): Promise<number> {
  return (await Deno.stat(path).catch(() => undefined))?.mtime?.getTime() ?? 0;
}

async function segmentsIn(dir: string): Promise<number> {
  return (await readDirOrEmpty(dir)).filter((e) => isSegmentName(`/wal/${e.name}`)).length;
}

/** One run of `tool` with `n` databases in `dir`. */
async function manyRun(tool: Tool, n: number, dir: string, log: (m: string) => void) {
  const data = join(dir, "data");
  const replicasDir = join(dir, "replicas");
  const paths = await createDbs(data, n);
  const replicas = paths.map((p) => join(replicasDir, p.slice(data.length + 1)));
  const listFile = join(dir, "dbs.txt");
  await Deno.writeTextFile(listFile, paths.join("\n") + "\n");
  const cfg = join(dir, "litestream.yml");
  await Deno.writeTextFile(cfg, config(tool, data, replicasDir, paths));
  let proc: MeasuredProcess | undefined;
  try {
    proc = await startReplicator(tool, cfg);
    const p = proc;
    const snapshotted = everySnapshotted(replicas);
    await waitFor(
      `${n} snapshots (${tool})`,
      async () => {
        if (p.exited) throw new Error(`replicator exited: ${(await p.log()).slice(-2000)}`);
        return await snapshotted();
      },
      600_000,
      500,
    );
    const startupS = (performance.now() - p.startedAt) / 1000;
    log(`  ${tool} N=${n}: every snapshot after ${startupS.toFixed(1)} s`);
    await sleep(
      Math.max(SETTLE_S * 1000, STEADY_AFTER_S * 1000 - (performance.now() - p.startedAt)),
    );
    const cpu0 = await p.cpuS();
    const t0 = performance.now();
    await sleep(IDLE_S * 1000);
    const idlePct = ((await p.cpuS()) - cpu0) / ((performance.now() - t0) / 1000) * 100;
    const idleRssMB = await p.rssMB();
    log(`  ${tool} N=${n}: idle ${idlePct.toFixed(2)} % CPU, RSS ${idleRssMB.toFixed(0)} MB`);

    const fanOutS = await fanOut(replicas, listFile);
    log(`  ${tool} N=${n}: fan-out ${fanOutS.toFixed(2)} s after the last commit`);

    const cpuL0 = await p.cpuS();
    const l0 = performance.now();
    const load = await runWriter(listFile, LOAD_RATE, LOAD_S);
    const loadCpuPct = ((await p.cpuS()) - cpuL0) / ((performance.now() - l0) / 1000) * 100;
    const sample = [...paths.keys()].sort(() => Math.random() - 0.5).slice(0, SAMPLE);
    const digests = await Promise.all(sample.map((i) => dbDigest(paths[i])));
    let sampleOk = 0;
    for (const [k, i] of sample.entries()) {
      const out = join(dir, "check.db");
      await waitFor(
        `the replica of ${paths[i]} caught up`,
        async () => {
          await Deno.remove(out).catch(() => {});
          await restoreFileReplica(replicas[i], out);
          return await dbDigest(out) === digests[k];
        },
        120_000,
        100,
      );
      sampleOk++;
    }
    const catchUpS = (epochMs() - load.lastCommitEpochMs) / 1000;
    log(
      `  ${tool} N=${n}: load ${load.transactions} tx in ${load.elapsedS.toFixed(1)} s, ` +
        `CPU ${loadCpuPct.toFixed(1)} %, sample caught up ${catchUpS.toFixed(2)} s after`,
    );
    const total = await stopReplicator(p);
    return {
      startupS,
      idlePct,
      idleRssMB,
      fanOutS,
      loadCpuPct,
      catchUpS,
      peakRssMB: total.maxRssMB,
      sampleOk,
    } satisfies ManyRun;
  } finally {
    await killQuietly(proc);
  }
}

/** Runs `ns` for `tools`, `runs` times (alternating the order), and reports medians. */
async function manyScenario(
  name: string,
  summary: string,
  ns: number[],
  runs: number,
  tools: (i: number) => Tool[],
  log: (m: string) => void,
): Promise<ScenarioReport> {
  await requireGnuTime();
  const results = new Map<string, ManyRun[]>();
  for (const n of ns) {
    for (let i = 0; i < runs; i++) {
      for (const tool of tools(i)) {
        const dir = await scratchDir(`many-dbs-${n}-${tool === "ours" ? "ours" : "v0313"}`);
        try {
          const r = await manyRun(tool, n, dir, log);
          results.set(`${tool}|${n}`, [...results.get(`${tool}|${n}`) ?? [], r]);
        } finally {
          await removeTree(dir);
        }
      }
    }
  }
  const rows: string[][] = [];
  const m = (key: string, f: (r: ManyRun) => number) => median((results.get(key) ?? []).map(f));
  for (const n of ns) {
    for (const tool of ["ours", "v0.3.13"] as Tool[]) {
      const rs = results.get(`${tool}|${n}`);
      if (!rs) continue;
      const cell = (f: (r: ManyRun) => number, d: number) => medianRange(rs.map(f), d);
      rows.push([
        `${toolLabel(tool)}, N=${n}`,
        cell((r) => r.startupS, 1),
        cell((r) => r.idlePct, 2),
        cell((r) => r.idleRssMB, 0),
        cell((r) => r.peakRssMB, 0),

        cell((r) => r.fanOutS, 2),
        cell((r) => r.loadCpuPct, 1),
        cell((r) => r.catchUpS, 2),
      ]);
    }
  }
  const nMax = Math.max(...ns);
  const ours = `ours|${nMax}`;
  const theirs = `v0.3.13|${nMax}`;
  const targets = results.has(ours)
    ? [
      {
        description: `N=${nMax}: idle CPU under ${TARGETS.idlePct} % of a core` +
          (results.has(theirs) ? " and under a tenth of v0.3.13's" : ""),
        met: m(ours, (r) => r.idlePct) < TARGETS.idlePct &&
          (!results.has(theirs) || m(ours, (r) => r.idlePct) < m(theirs, (r) => r.idlePct) / 10),
        detail: `ours ${m(ours, (r) => r.idlePct).toFixed(2)} %` +
          (results.has(theirs) ? `, v0.3.13 ${m(theirs, (r) => r.idlePct).toFixed(2)} %` : ""),
      },
      {
        description: `N=${nMax}: peak RSS under ${TARGETS.peakRssMB} MB in every run`,
        met: Math.max(...results.get(ours)!.map((r) => r.peakRssMB)) < TARGETS.peakRssMB,
        detail: `worst ${Math.max(...results.get(ours)!.map((r) => r.peakRssMB)).toFixed(0)} MB`,
      },
      {
        description: `N=${nMax}: fan-out within sync-interval + 1 s (${TARGETS.fanOutS} s)`,
        met: m(ours, (r) => r.fanOutS) <= TARGETS.fanOutS,
        detail: `median ${m(ours, (r) => r.fanOutS).toFixed(2)} s`,
      },
      {
        description: `N=${nMax}: every snapshot within ${TARGETS.startupS} s of start`,
        met: m(ours, (r) => r.startupS) <= TARGETS.startupS,
        detail: `median ${m(ours, (r) => r.startupS).toFixed(1)} s`,
      },
    ]
    : [];
  const sampled = [...results.values()].flat().reduce((s, r) => s + r.sampleOk, 0);
  // Memory per 100 idle databases: the RSS difference between the largest and smallest N.
  const perHundred: Record<string, string> = {};
  const [lo, hi] = [Math.min(...ns), Math.max(...ns)];
  for (const tool of ["ours", "v0.3.13"] as Tool[]) {
    if (lo === hi || !results.has(`${tool}|${lo}`) || !results.has(`${tool}|${hi}`)) continue;
    const d = m(`${tool}|${hi}`, (r) => r.idleRssMB) - m(`${tool}|${lo}`, (r) => r.idleRssMB);
    perHundred[`idle RSS per 100 databases, ${toolLabel(tool)}`] = `${
      (d / (hi - lo) * 100).toFixed(1)
    } MB (idle RSS at N=${hi} minus N=${lo})`;
  }
  return {
    name,
    description: summary,
    facts: {
      databases: ns.join(", "),
      "each database": "10 rows of 100 bytes, WAL mode; default intervals (monitor and sync 1 s)",
      "ours": "one dir entry (pattern *.db); v0.3.13: every database listed",
      "spread load": `${LOAD_RATE} tx/s across all databases for ${LOAD_S} s, one writer process`,
      "machine": "2 cores shared with other engineers' work (loaded; figures are indicative)",
      ...perHundred,
    },
    rows: [],
    table: {
      header: [
        "tool, N",
        "all snapshots (s)",
        "idle CPU (%)",
        "idle RSS (MB)",
        "peak RSS (MB)",
        "fan-out (s)",
        "CPU under load (%)",
        "catch-up (s)",
      ],
      rows,
    },
    checks: [
      `${sampled} sampled replicas restored by ours equal to their databases after the load`,
    ],
    targets,
    runs,
  };
}

/** The scenarios of this module. */
export const scenarios: Scenario[] = [
  {
    name: "many-dbs",
    summary: "N = 100 and 1,000 small databases in one process, ours (dir) vs v0.3.13 (listed)",
    defaultRuns: 1,
    run: (ctx) =>
      manyScenario("many-dbs", scenarios[0].summary, [100, 1000], ctx.runs, toolOrder, ctx.log),
  },
  {
    name: "many-dbs-10000",
    summary: "N = 10,000 small databases, ours only, once: what it costs or what stops it",
    defaultRuns: 1,
    run: (ctx) =>
      manyScenario("many-dbs-10000", scenarios[1].summary, [10000], 1, () => ["ours"], ctx.log),
  },
];
