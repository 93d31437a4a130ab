/**
 * `sftp-many-dbs`: {@link N} small databases, each with an SFTP replica on one sshd (a fresh one
 * per run and tool, serving a directory of this machine). Ours replicates them from one `dir`
 * entry, whose replicas share a few SSH connections; v0.3.13 gets every database listed, with a
 * connection each. Per run and tool:
 *
 * 1. start-up: time and replicator CPU from spawning it until every replica lists a snapshot,
 *    and the most SSH connections open meanwhile (`ss`, sampled every 200 ms);
 * 2. fan-out: one commit to every database (one writer process); the time from the last commit
 *    until every replica lists a new WAL segment;
 * 3. peak RSS of the whole run (GNU time);
 * 4. a sample of {@link SAMPLE} replicas restored (ours, from the served directory) equal to
 *    their databases.
 *
 * @module
 */

import { join } from "node:path";
import { waitFor } from "../tests/support/poll.ts";
import { dbDigest, restoreFileReplica } from "../tests/support/db_digest.ts";
import { startSshd, type TestSshd } from "../tests/support/sshd.ts";
import { removeTree, scratchDir } from "./support/cache.ts";
import { type MeasuredProcess, requireGnuTime } from "./support/measure.ts";
import { median, medianRange, type Scenario, type ScenarioReport } from "./support/report.ts";
import {
  killQuietly,
  startReplicator,
  stopReplicator,
  type Tool,
  toolLabel,
  toolOrder,
} from "./support/tools.ts";
import { createDbs, everySnapshotted, fanOut } from "./many_dbs.ts";

/** Databases per run. */
const N = 200;
/** Replicas restored and compared after each run. */
const SAMPLE = 5;

/** One run of one tool. */
interface Run {
  startupS: number;
  startupCpuS: number;
  peakConnections: number;
  fanOutS: number;
  peakRssMB: number;
}

/** The SFTP replica of one database (or of a dir entry, `path` then being their parent). */
function sftpReplica(sshd: TestSshd, path: string, indent: string): string {
  return `${indent}- type: sftp\n${indent}  host: 127.0.0.1:${sshd.port}\n` +
    `${indent}  user: ${sshd.user}\n${indent}  key-path: ${sshd.keyPath}\n${indent}  path: ${path}\n`;
}

/** Ours: one `dir` entry. v0.3.13: every database listed with its replica at the same path. */
function config(tool: Tool, sshd: TestSshd, data: string, replicas: string, paths: string[]) {
  if (tool === "ours") {
    return `dbs:\n  - dir: ${data}\n    pattern: "*.db"\n    replicas:\n` +
      sftpReplica(sshd, replicas, "      ");
  }
  return "dbs:\n" + paths.map((p) =>
    `  - path: ${p}\n    replicas:\n` +
    sftpReplica(sshd, join(replicas, p.slice(data.length + 1)), "      ")
  ).join("");
}

/** Established TCP connections to `port` on this machine (each SSH connection counts once). */
async function connectionsTo(port: number): Promise<number> {
  const out = await new Deno.Command("ss", {
    args: ["-Htn", "state", "established", `( dport = :${port} )`],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim()).length;
}

async function manyRun(tool: Tool, dir: string, log: (m: string) => void): Promise<Run> {
  await using sshd = await startSshd();
  const data = join(dir, "data");
  const replicasDir = join(dir, "replicas");
  const paths = await createDbs(data, N);
  const replicas = paths.map((p) => join(replicasDir, p.slice(data.length + 1)));
  const listFile = join(dir, "dbs.txt");
  await Deno.writeTextFile(listFile, paths.join("\n") + "\n");
  const cfg = join(dir, "litestream.yml");
  await Deno.writeTextFile(cfg, config(tool, sshd, data, replicasDir, paths));
  let proc: MeasuredProcess | undefined;
  try {
    proc = await startReplicator(tool, cfg);
    const p = proc;
    let peakConnections = 0;
    const snapshotted = everySnapshotted(replicas);
    await waitFor(
      `${N} snapshots over SFTP (${tool})`,
      async () => {
        if (p.exited) throw new Error(`replicator exited: ${(await p.log()).slice(-2000)}`);
        peakConnections = Math.max(peakConnections, await connectionsTo(sshd.port));
        return await snapshotted();
      },
      600_000,
      200,
    );
    const startupCpuS = await p.cpuS();
    const startupS = (performance.now() - p.startedAt) / 1000;
    const cpu = startupCpuS.toFixed(2);
    log(
      `  ${tool}: every snapshot after ${startupS.toFixed(1)} s, CPU ${cpu} s, ` +
        `at most ${peakConnections} SSH connections`,
    );
    const fanOutS = await fanOut(replicas, listFile);
    log(`  ${tool}: fan-out ${fanOutS.toFixed(2)} s after the last commit`);
    const total = await stopReplicator(p);
    for (const i of [...paths.keys()].sort(() => Math.random() - 0.5).slice(0, SAMPLE)) {
      const out = join(dir, `check${i}.db`);
      await restoreFileReplica(replicas[i], out);
      if (await dbDigest(out) !== await dbDigest(paths[i])) {
        throw new Error(`the replica of ${paths[i]} (${tool}) does not restore to its database`);
      }
    }
    return { startupS, startupCpuS, peakConnections, fanOutS, peakRssMB: total.maxRssMB };
  } finally {
    await killQuietly(proc);
  }
}

async function sftpManyScenario(runs: number, log: (m: string) => void): Promise<ScenarioReport> {
  await requireGnuTime();
  const results = new Map<Tool, Run[]>();
  for (let i = 0; i < runs; i++) {
    for (const tool of toolOrder(i)) {
      const dir = await scratchDir(`sftp-many-dbs-${tool === "ours" ? "ours" : "v0313"}`);
      try {
        results.set(tool, [...results.get(tool) ?? [], await manyRun(tool, dir, log)]);
      } finally {
        await removeTree(dir);
      }
    }
  }
  const rows = (["ours", "v0.3.13"] as Tool[]).map((tool) => {
    const rs = results.get(tool)!;
    const cell = (f: (r: Run) => number, d: number) => medianRange(rs.map(f), d);
    return [
      toolLabel(tool),
      cell((r) => r.startupS, 1),
      cell((r) => r.startupCpuS, 2),
      cell((r) => r.peakConnections, 0),
      cell((r) => r.fanOutS, 2),
      cell((r) => r.peakRssMB, 0),
    ];
  });
  const m = (tool: Tool, f: (r: Run) => number) => median(results.get(tool)!.map(f));
  return {
    name: "sftp-many-dbs",
    description: scenarios[0].summary,
    facts: {
      databases: N,
      "each database": "10 rows of 100 bytes, WAL mode; default intervals (monitor and sync 1 s)",
      "ours": "one dir entry (pattern *.db); v0.3.13: every database listed",
      "server": "OpenSSH sshd on 127.0.0.1 (fresh per run), key-path login",
    },
    rows: [],
    table: {
      header: [
        "tool",
        "all snapshots (s)",
        "CPU until then (s)",
        "SSH connections (most)",
        "fan-out (s)",
        "peak RSS (MB)",
      ],
      rows,
    },
    checks: [`${SAMPLE} sampled replicas per run restored equal to their databases`],
    targets: [{
      description: "start-up no slower than v0.3.13 (median)",
      met: m("ours", (r) => r.startupS) <= m("v0.3.13", (r) => r.startupS),
      detail: `${m("ours", (r) => r.startupS).toFixed(1)} s vs ${
        m("v0.3.13", (r) => r.startupS).toFixed(1)
      } s`,
    }],
    runs,
  };
}

/** The scenarios of this module. */
export const scenarios: Scenario[] = [{
  name: "sftp-many-dbs",
  summary: `${N} small databases with SFTP replicas on one server, ours (dir) vs v0.3.13 (listed)`,
  defaultRuns: 1,
  run: (ctx) => sftpManyScenario(ctx.runs, ctx.log),
}];
