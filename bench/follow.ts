/**
 * `deno task bench follow`: a read replica (`restore -f`) under the 500 transactions-a-second
 * write load. A Python writer commits invariant-keeping transactions (see
 * `tests/support/follow_load.ts`) at the load's rate, our `replicate` ships them to a file
 * replica (sync-interval 1 s) and the follower applies them (follow-interval 1 s) while
 * readers of three SQLite implementations sample the copy. Measured:
 * - commit-to-visible lag: for each transaction, from its COMMIT on the primary to the first
 *   reader sample that shows it (transactions of the first seconds after the follower starts,
 *   while it catches up on the baseline phase's backlog, are left out);
 * - the follower's CPU over the load window and its peak RSS (GNU time);
 * - reader query latency with the copy static (follower stopped; same write load on the
 *   machine) and while the follower applies;
 * - every sample checked against the invariants.
 *
 * @module
 */

import { removeTree, scratchDir } from "./support/cache.ts";
import { startMeasured } from "./support/measure.ts";
import { OURS_RUN } from "./support/tools.ts";
import type { BenchContext, Scenario, ScenarioReport, TargetResult } from "./support/report.ts";
import { MAX_RSS_MB } from "./support/targets.ts";
import { configYaml } from "../tests/support/config_yaml.ts";
import { startReplicate, writeConfig } from "../tests/support/replicate_process.ts";
import { waitFor } from "../tests/support/poll.ts";
import {
  checkSamples,
  dumpOf,
  parseSample,
  type Reader,
  READER_KINDS,
  type Sample,
  startFollower,
  startReader,
  startWriter,
  waitForSnapshot,
} from "../tests/support/follow_load.ts";
import { LOAD } from "./replicate_write_load.ts";

const SYNC_INTERVAL_S = 1;
const FOLLOW_INTERVAL_S = 1;
const BASELINE_S = 10;
const FOLLOW_S = 30;
/** Transactions committed this soon after the follower (re)starts are left out of the lag. */
const WARMUP_S = 10;
const READER_PAUSE_MS = 1;
const MIGRATE_AT = 2000;

/** p-th percentile (0..100) of `xs`. */
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** One follow run's numbers. */
interface FollowSample {
  lagMs: number[];
  /** Upload of the newest segment of a batch → the batch applied, per batch. */
  applyLagMs: number[];
  samples: number;
  violations: string[];
  errors: string[];
  baselineMs: number[];
  followingMs: number[];
  cpuS: number;
  windowS: number;
  maxRssMB: number;
  /** Highest RSS sampled after the warm-up. */
  steadyRssMB: number;
  achievedRate: number;
  converged: boolean;
}

async function followRun(dir: string, log: (m: string) => void): Promise<FollowSample> {
  const db = `${dir}/primary.db`;
  const replica = `${dir}/replica`;
  const out = `${dir}/copy.db`;
  const stop = `${dir}/readers.stop`;
  const yaml = configYaml([{
    path: db,
    replicas: [{ type: "file", path: replica, "sync-interval": `${SYNC_INTERVAL_S}s` }],
    // v0.3.13's checkpoint defaults (the test configs' frequent checkpoints are not the point here).
    extra: {
      "monitor-interval": "100ms",
      "checkpoint-interval": "1m",
      "min-checkpoint-page-count": 1000,
      "max-checkpoint-page-count": 10000,
    },
  }]);
  const config = await writeConfig(
    `${dir}/litestream.yml`,
    yaml.replace("level: debug", "level: info"),
  );
  // The follower logs each batch (debug), for a look at a run kept with BENCH_KEEP=1.
  const followerConfig = await writeConfig(`${dir}/follower.yml`, yaml);
  const writer = await startWriter(db, dir, {
    migrateAt: MIGRATE_AT,
    pauseMs: 0,
    rate: LOAD.rate,
  });
  const rep = startReplicate(["-config", config], { logPath: `${dir}/replicate.log` });
  const readers: Reader[] = [];
  let follower;
  try {
    await waitForSnapshot(replica);
    // A first follower restores the copy and stops: the baseline reads a static copy.
    const first = startFollower(
      ["-follow-interval", `${FOLLOW_INTERVAL_S}s`, "-o", out, `file://${replica}`],
      `${dir}/follower.log`,
    );
    await first.waitForLog(/following/, { timeoutMs: 60_000 });
    await first.stop(30_000);
    for (const kind of READER_KINDS) {
      readers.push(await startReader(kind, out, stop, dir, READER_PAUSE_MS));
    }
    const baselineStart = Date.now();
    log(`  baseline: readers on a static copy for ${BASELINE_S} s`);
    await new Promise((r) => setTimeout(r, BASELINE_S * 1000));
    const followStart = Date.now();
    log(`  following for ${FOLLOW_S} s`);
    follower = await startMeasured(
      Deno.execPath(),
      [
        ...OURS_RUN,
        "restore",
        "-f",
        "-follow-interval",
        `${FOLLOW_INTERVAL_S}s`,
        "-config",
        followerConfig,
        "-o",
        out,
        db,
      ],
      { logPath: `${dir}/follower.log` },
    );
    // CPU and RSS over the window after the warm-up (catching up on the baseline's backlog).
    await new Promise((r) => setTimeout(r, WARMUP_S * 1000));
    const cpu0 = await follower.cpuS();
    const t0 = performance.now();
    let steadyRssMB = 0;
    while (performance.now() - t0 < (FOLLOW_S - WARMUP_S) * 1000) {
      steadyRssMB = Math.max(steadyRssMB, await follower.rssMB());
      await new Promise((r) => setTimeout(r, 250));
    }
    const cpu1 = await follower.cpuS();
    const windowS = (performance.now() - t0) / 1000;
    const followEnd = Date.now();
    const firstN = writer.last();
    await writer.stop();
    const converged = await waitFor(
      "the copy to reach the primary",
      async () => {
        return await dumpOf(out) === await dumpOf(db);
      },
      60_000,
      500,
    ).then(() => true, () => false);
    await Deno.writeTextFile(stop, "");
    await Promise.all(readers.map((r) => r.done));
    const { stats } = await follower.stop(30_000);
    if (Deno.env.get("BENCH_KEEP") === "1") {
      // Every sample (value|…|ms|epoch ms), to set slow queries against the follower's batches.
      for (const r of readers) {
        await Deno.writeTextFile(`${dir}/${r.kind}.samples`, r.lines.join("\n"));
      }
    }

    // Lag: the first sample (any reader) showing each transaction.
    const samples: Sample[] = readers.flatMap((r) =>
      r.lines.map(parseSample).filter((s): s is Sample => typeof s !== "string")
    );
    const timed = samples.filter((s) => s.at !== undefined).sort((a, b) => a.at! - b.at!);
    const lagMs: number[] = [];
    let next = 0;
    const seen = new Map<number, number>();
    for (const s of timed) {
      for (; next <= s.n; next++) seen.set(next, s.at!);
    }
    for (const [n, committed] of writer.commits) {
      if (committed < followStart + WARMUP_S * 1000 || committed > followEnd) continue;
      const visible = seen.get(n);
      if (visible !== undefined) lagMs.push(visible - committed);
    }
    // The follower's own part: from a segment's upload to its batch being visible (debug lines).
    const applyLagMs: number[] = [];
    for (
      const m of (await follower.log()).matchAll(
        /time=(\S+) level=DEBUG msg="follow: applied".* lag=([\d.]+)s/g,
      )
    ) {
      if (Date.parse(m[1]) >= followStart + WARMUP_S * 1000) applyLagMs.push(Number(m[2]) * 1000);
    }
    const reports = readers.map((r) => checkSamples(r.lines, MIGRATE_AT));
    const inWindow = (from: number, to: number) =>
      timed.filter((s) => s.at! >= from && s.at! < to && s.ms !== undefined).map((s) => s.ms!);
    const commits = [...writer.commits.values()];
    return {
      lagMs,
      applyLagMs,
      samples: reports.reduce((a, r) => a + r.samples, 0),
      violations: reports.flatMap((r) => r.violations),
      errors: reports.flatMap((r) => r.errors),
      baselineMs: inWindow(baselineStart, followStart),
      followingMs: inWindow(followStart + WARMUP_S * 1000, followEnd),
      cpuS: cpu1 - cpu0,
      windowS,
      maxRssMB: stats.maxRssMB,
      steadyRssMB,
      achievedRate: (commits.length - 1) / ((Math.max(...commits) - Math.min(...commits)) / 1000),
      converged: converged && writer.last() >= firstN,
    };
  } finally {
    await writer.stop().catch(() => {});
    await Deno.writeTextFile(stop, "").catch(() => {});
    await Promise.all(readers.map((r) => r.done));
    await follower?.kill().catch(() => {});
    await rep.stop(60_000).catch(() => {});
  }
}

async function run(ctx: BenchContext): Promise<ScenarioReport> {
  const runs: FollowSample[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const dir = await scratchDir("follow");
    ctx.log(`run ${i + 1}/${ctx.runs}`);
    try {
      runs.push(await followRun(dir, ctx.log));
    } finally {
      if (Deno.env.get("BENCH_KEEP") !== "1") await removeTree(dir);
    }
  }
  const lag = runs.flatMap((r) => r.lagMs);
  const applyLag = runs.flatMap((r) => r.applyLagMs);
  const base = runs.flatMap((r) => r.baselineMs);
  const during = runs.flatMap((r) => r.followingMs);
  const samples = runs.reduce((a, r) => a + r.samples, 0);
  const violations = runs.flatMap((r) => r.violations);
  const errors = runs.flatMap((r) => r.errors);
  const rss = Math.max(...runs.map((r) => r.maxRssMB));
  const cpuPct = runs.map((r) => (100 * r.cpuS) / r.windowS);
  const limitS = SYNC_INTERVAL_S + FOLLOW_INTERVAL_S + 0.3;
  const p = (xs: number[], q: number, d = 1) => xs.length ? percentile(xs, q).toFixed(d) : "n/a";
  const targets: TargetResult[] = [
    {
      description: `p99 commit-to-visible lag within sync-interval + follow-interval + 0.3 s (${
        limitS.toFixed(1)
      } s)`,
      met: lag.length > 0 && percentile(lag, 99) <= limitS * 1000,
      detail: `p50 ${p(lag, 50, 0)} ms, p99 ${p(lag, 99, 0)} ms, max ${
        lag.length ? Math.max(...lag).toFixed(0) : "n/a"
      } ms over ${lag.length} transactions`,
    },
    {
      description: "zero invariant violations and reader errors in at least 10,000 samples",
      met: samples >= 10_000 && violations.length === 0 && errors.length === 0,
      detail: `${samples} samples, ${violations.length} violations, ${errors.length} errors${
        violations.length ? `: ${violations[0]}` : errors.length ? `: ${errors[0]}` : ""
      }`,
    },
    {
      description: `follower peak RSS under ${MAX_RSS_MB} MB`,
      met: rss < MAX_RSS_MB,
      detail: `${rss.toFixed(1)} MB`,
    },
    {
      description: "readers' p99 query latency no more than doubled while following",
      met: base.length > 0 && during.length > 0 &&
        percentile(during, 99) <= 2 * percentile(base, 99),
      detail: `static copy p99 ${p(base, 99, 2)} ms, following p99 ${p(during, 99, 2)} ms`,
    },
  ];
  return {
    name: "follow",
    description: "Read replica (`restore -f`) under the write load; readers of three SQLite " +
      "implementations sample the copy throughout.",
    facts: {
      "write load": `${LOAD.rate} tx/s target (Python sqlite3, WAL, synchronous=NORMAL); achieved ${
        runs.map((r) => r.achievedRate.toFixed(0)).join(", ")
      } tx/s`,
      "intervals": `sync-interval ${SYNC_INTERVAL_S}s, follow-interval ${FOLLOW_INTERVAL_S}s`,
      "phases":
        `${BASELINE_S} s static copy, then ${FOLLOW_S} s following (the first ${WARMUP_S} s, ` +
        "catching up on the baseline's backlog, excluded from lag, latency and CPU)",
      "converged to the primary's content": runs.map((r) => r.converged ? "yes" : "NO").join(", "),
    },
    rows: [],
    checks: [
      `${samples} reader samples, ${violations.length} invariant violations, ${errors.length} errors`,
    ],
    targets,
    table: {
      header: [
        "measure",
        "p50",
        "p99",
        "max",
      ],
      rows: [
        ["commit-to-visible lag (ms)", p(lag, 50, 0), p(lag, 99, 0), p(lag, 100, 0)],
        [
          "segment upload → batch visible, per batch (ms)",
          p(applyLag, 50, 0),
          p(applyLag, 99, 0),
          p(applyLag, 100, 0),
        ],
        ["reader query, static copy (ms)", p(base, 50, 2), p(base, 99, 2), p(base, 100, 2)],
        ["reader query, following (ms)", p(during, 50, 2), p(during, 99, 2), p(during, 100, 2)],
        [
          "follower CPU (% of one core)",
          cpuPct.map((c) => c.toFixed(1)).join(", "),
          "",
          "",
        ],
        ["follower peak RSS, whole run (MB)", rss.toFixed(1), "", ""],
        [
          "follower RSS after the warm-up, highest sample (MB)",
          Math.max(...runs.map((r) => r.steadyRssMB)).toFixed(1),
          "",
          "",
        ],
      ],
    },
    runs: ctx.runs,
  };
}

/** The follow scenario. */
export const scenarios: Scenario[] = [{
  name: "follow",
  summary: "restore -f under the write load: lag, follower CPU and RSS, reader latency",
  defaultRuns: 1,
  run,
}];
