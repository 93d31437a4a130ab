/**
 * The application's write load: runs `bench/load_writer.ts` in its own process (so its CPU and
 * memory are nobody else's) and reads its report. The clock both sides compare, {@link epochMs},
 * lives here too, so that the writer imports nothing heavier.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** Milliseconds since the epoch with a fraction, comparable across processes. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** What bench/load_writer.ts reports (its one JSON line). */
export interface LoadResult {
  lastId: number;
  /** Transactions committed (the planned number unless a checkpointing run hit its deadline). */
  transactions: number;
  /** {@link epochMs} just after the last COMMIT returned. */
  lastCommitEpochMs: number;
  elapsedS: number;
  /** How far the writer fell behind its schedule at worst. */
  maxLagMs: number;
  /** Only with `checkpointEveryS`: what the application saw. */
  checkpointing?: CheckpointingResult;
}

/** `p50`, `p99` and maximum of a set of durations, in milliseconds. */
export interface LatencySummary {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** One `PRAGMA wal_checkpoint(TRUNCATE)` of the application (bench/app_checkpointer.ts). */
export interface CheckpointRecord {
  /** {@link epochMs} when it was issued. */
  startEpochMs: number;
  durationMs: number;
  /** The pragma's row: busy (1 = blocked from completing), WAL frames, frames checkpointed. */
  row?: [number, number, number];
  /** The error it raised instead of a row. */
  error?: string;
}

/** The application's view of a run with checkpoints. */
export interface CheckpointingResult {
  /**
   * Commit latency: from the moment a transaction was due (the writer's schedule) until its
   * COMMIT returned, so time spent queued behind a stalled commit counts (an application serving
   * requests at this rate would make each of them wait).
   */
  latency: LatencySummary;
  /** BEGIN IMMEDIATE → COMMIT returned, of the transactions alone (waiting for the lock included). */
  service: LatencySummary;
  /** BEGIN IMMEDIATE attempts that failed with SQLITE_BUSY after the busy timeout (then retried). */
  busyErrors: number;
  checkpoints: CheckpointRecord[];
}

/** Summarises durations in milliseconds (nearest-rank percentiles); all zero when empty. */
export function summarizeLatencies(ms: Float64Array): LatencySummary {
  if (ms.length === 0) return { p50Ms: 0, p99Ms: 0, maxMs: 0 };
  const s = ms.slice().sort();
  const rank = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
  return { p50Ms: rank(0.5), p99Ms: rank(0.99), maxMs: s[s.length - 1] };
}

const LOAD_WRITER = fileURLToPath(new URL("../load_writer.ts", import.meta.url));

/**
 * Runs bench/load_writer.ts on `dbPath`: `rate` transactions per second of one `rowBytes` row
 * each for `seconds`, the last row starting with `token`. With `checkpointEveryS`, the writer's
 * process also checkpoints (see bench/app_checkpointer.ts) and reports what it saw. Resolves
 * when the writer is done.
 */
export async function runLoadWriter(
  dbPath: string,
  o: { rate: number; seconds: number; rowBytes: number; token: string; checkpointEveryS?: number },
): Promise<LoadResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      LOAD_WRITER,
      dbPath,
      String(o.rate),
      String(o.seconds),
      String(o.rowBytes),
      o.token,
      ...(o.checkpointEveryS === undefined ? [] : [String(o.checkpointEveryS)]),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`load writer failed (exit ${out.code}): ${dec.decode(out.stderr)}`);
  }
  return JSON.parse(dec.decode(out.stdout).trim().split("\n").pop()!) as LoadResult;
}
