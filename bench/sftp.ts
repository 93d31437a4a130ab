/**
 * Scenarios with an SFTP replica: OpenSSH's sshd on 127.0.0.1 (a fresh one per run and per
 * tool, from `tests/support/sshd.ts`), serving a directory of this machine, so the replica is
 * listed and read straight from disk. Both tools log in with `key-path`; ours also pins the
 * server's `host-key`. sshd's CPU and memory count against neither replicator; the SSH
 * encryption is on the replicator's side.
 *
 * - `sftp-write-load`: the write load of `replicate-write-load`; catch-up, CPU, peak RSS.
 * - `sftp-snapshot`: first snapshot of a 1 GB database: time and peak RSS (ours under 150 MB).
 * - `sftp-restore-large`: `restore-large`'s replica (written by v0.3.13) restored over SFTP.
 * - `sftp-lag`: single commits replicated to an sshd {@link LAG_DELAY_MS} ms away each way (a
 *   delaying TCP proxy in front of it); the lag of each.
 *
 * v0.3.13 writes objects under their final names while the data streams in, so the time of the
 * first snapshot is taken from each tool's "snapshot written" log line, not from listings.
 *
 * @module
 */

import { startSshd } from "../tests/support/sshd.ts";
import { startTcpFaultProxy } from "../tests/support/tcp_fault_proxy.ts";
import { lagScenario } from "./replicate_lag.ts";
import { snapshotScenario } from "./replicate_snapshot.ts";
import { LOAD, writeLoadScenario } from "./replicate_write_load.ts";
import { LARGE, noSlower, oursRss, restoreScenario } from "./restore.ts";
import { epochMs } from "./support/load.ts";
import { fileReplicaLister, waitWhileReplicating } from "./support/replica_watch.ts";
import type { Scenario } from "./support/report.ts";
import { BACKEND_RSS_MB, DEFAULT_RUNS, type TargetFactory } from "./support/targets.ts";

/** Delay each way of `sftp-lag`'s proxy: a 50 ms round trip, a server in another region. */
const LAG_DELAY_MS = 25;

/**
 * A fresh sshd per run serving `<dir>/replica`; with `delayMs`, reached through a proxy that
 * delays every byte that long each way.
 */
function sftpTargets(pollMs: number, delayMs = 0): TargetFactory {
  return {
    kind: "sftp",
    pollMs,
    snapshotTiming: 'from spawning the replicator to its "snapshot written" log line (both ' +
      "tools log it once the upload is complete; v0.3.13 writes under the final name, so a " +
      "listing would show a partial snapshot)",
    async setup(_tool, dir) {
      const sshd = await startSshd();
      const proxy = delayMs > 0 ? startTcpFaultProxy(sshd.port) : undefined;
      if (proxy) proxy.delayMs = delayMs;
      const path = `${dir}/replica`;
      return {
        target: {
          type: "sftp",
          host: `127.0.0.1:${proxy?.port ?? sshd.port}`,
          user: sshd.user,
          keyPath: sshd.keyPath,
          hostKey: sshd.hostKey,
          path,
        },
        lister: fileReplicaLister(path),
        waitForSnapshot: (proc, timeoutMs) =>
          waitWhileReplicating(
            "the first snapshot upload to complete",
            proc,
            async () => /snapshot written/.test(await proc.log()) ? epochMs() : undefined,
            timeoutMs,
            pollMs,
          ),
        cleanup: async () => {
          await proxy?.close();
          await sshd[Symbol.asyncDispose]();
        },
      };
    },
  };
}

/** Serves `replicaPath` from a fresh sshd; both tools restore it through a config with key-path. */
async function viaSftp(replicaPath: string, scratch: string) {
  const sshd = await startSshd();
  const db = `${scratch}/sftp-restore-target.db`;
  const config = `${scratch}/sftp.yml`;
  await Deno.writeTextFile(
    config,
    [
      "dbs:",
      `  - path: ${db}`,
      "    replicas:",
      "      - type: sftp",
      `        host: 127.0.0.1:${sshd.port}`,
      `        user: ${sshd.user}`,
      `        key-path: ${sshd.keyPath}`,
      `        host-key: "${sshd.hostKey}"`,
      `        path: ${replicaPath}`,
      "",
    ].join("\n"),
  );
  return { source: ["-config", config, db], stop: async () => await sshd[Symbol.asyncDispose]() };
}

/** The SFTP scenarios, in the order `bench/main.ts` runs them. */
export const scenarios: Scenario[] = [
  {
    name: "sftp-write-load",
    summary: `SFTP (OpenSSH sshd): ${LOAD.rate} tx/s of 1 KB rows for ${LOAD.seconds} s; ` +
      "catch-up, CPU, peak RSS",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      writeLoadScenario(
        ctx,
        "sftp-write-load",
        scenarios[0].summary,
        sftpTargets(50),
        BACKEND_RSS_MB,
      ),
  },
  {
    name: "sftp-snapshot",
    summary: "SFTP (OpenSSH sshd): first snapshot of a 1 GB database; time and peak RSS",
    defaultRuns: DEFAULT_RUNS,
    run: (ctx) =>
      snapshotScenario(ctx, {
        name: "sftp-snapshot",
        summary: scenarios[1].summary,
        factory: sftpTargets(100),
        dbKey: "db-1gb-v1",
        dbBytes: 1e9,
        rssLimitMB: BACKEND_RSS_MB,
      }),
  },
  {
    name: "sftp-restore-large",
    summary: "restore-large's replica (~220 MB snapshot, >1,000 WAL segments) over SFTP",
    run: (ctx) =>
      restoreScenario(ctx, {
        name: "sftp-restore-large",
        description: scenarios[2].summary,
        recipe: LARGE,
        targets: (ours, v0313) => [noSlower(ours, v0313), oursRss(ours)],
        via: viaSftp,
      }),
  },
  {
    name: "sftp-lag",
    summary: `SFTP (OpenSSH sshd) ${2 * LAG_DELAY_MS} ms of round trip away: single commits; ` +
      "the lag of each",
    defaultRuns: 1,
    run: (ctx) =>
      lagScenario(
        ctx,
        "sftp-lag",
        scenarios[3].summary,
        sftpTargets(20, LAG_DELAY_MS),
        `sshd on 127.0.0.1 behind a TCP proxy (tests/support/tcp_fault_proxy.ts) that delays ` +
          `every byte ${LAG_DELAY_MS} ms each way`,
      ),
  },
];
