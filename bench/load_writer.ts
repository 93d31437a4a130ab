/**
 * The benchmark's application writer, run as its own process so its CPU and memory are nobody
 * else's: `deno run -A bench/load_writer.ts DB RATE SECONDS ROW_BYTES TOKEN`.
 *
 * Opens DB with `node:sqlite` (WAL mode, `synchronous = NORMAL`, busy timeout 5 s) and commits one
 * row of ROW_BYTES random bytes per transaction into `t(id INTEGER PRIMARY KEY, v BLOB)`, paced to
 * RATE transactions per second for SECONDS seconds: commit *n* is due at start + n / RATE; a writer
 * that falls behind commits without sleeping until it is on schedule again. The last transaction
 * writes a row whose payload starts with TOKEN (ASCII), so the benchmark can recognise the page
 * holding the last commit inside a replica's WAL segments.
 *
 * When done it prints one JSON line: `lastId`, `transactions`, `lastCommitEpochMs` (wall clock
 * just after the last COMMIT returned, in milliseconds since the epoch with a fraction),
 * `elapsedS` and `maxLagMs` (how far the writer fell behind its schedule at worst).
 *
 * With a sixth argument CHECKPOINT_EVERY_S (the `app-checkpoint` scenario), the application also
 * checkpoints: a Worker of this process (bench/app_checkpointer.ts) runs
 * `PRAGMA wal_checkpoint(TRUNCATE)` on its own connection (busy timeout 5 s) every
 * CHECKPOINT_EVERY_S seconds. The writer then records every commit's latency, retries a BEGIN
 * that fails with SQLITE_BUSY (counting it), stops starting transactions SECONDS + 30 s after
 * it began whatever is left (so a run that stalls still ends), and adds `checkpointing` (see
 * `CheckpointingResult` in bench/support/load.ts) to its JSON line.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import {
  type CheckpointRecord,
  epochMs,
  type LoadResult,
  summarizeLatencies,
} from "./support/load.ts";

/** A checkpointing run stops starting transactions this long after its planned end. */
const DEADLINE_GRACE_MS = 30_000;

/**
 * True for node:sqlite's error when the busy timeout ran out (SQLITE_BUSY). Deno's node:sqlite
 * gives its errors no `errcode`, only SQLite's message for the code.
 */
function isBusy(err: unknown): boolean {
  return (err as Error).message === "database is locked";
}

/** Starts bench/app_checkpointer.ts on `path`; `stop()` ends it and returns its checkpoints. */
function startCheckpointer(path: string, everyMs: number): { stop(): Promise<CheckpointRecord[]> } {
  const worker = new Worker(new URL("./app_checkpointer.ts", import.meta.url), { type: "module" });
  worker.postMessage({ path, everyMs });
  return {
    stop() {
      const { promise, resolve, reject } = Promise.withResolvers<CheckpointRecord[]>();
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => reject(new Error(`checkpointer: ${e.message}`));
      worker.postMessage("stop");
      return promise.finally(() => worker.terminate());
    },
  };
}

async function main(
  [path, rateArg, secondsArg, rowArg, token, everyArg]: string[],
): Promise<void> {
  const rate = Number(rateArg);
  const seconds = Number(secondsArg);
  const rowBytes = Number(rowArg);
  const checkpointEveryS = everyArg === undefined ? undefined : Number(everyArg);
  if (
    !path || !(rate > 0) || !(seconds > 0) || !(rowBytes > 0) || !token ||
    (checkpointEveryS !== undefined && !(checkpointEveryS > 0))
  ) {
    throw new Error("usage: load_writer.ts DB RATE SECONDS ROW_BYTES TOKEN [CHECKPOINT_EVERY_S]");
  }
  const db = new DatabaseSync(path);
  db.exec("PRAGMA busy_timeout = 5000");
  const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string };
  if (mode.journal_mode !== "wal") throw new Error(`journal_mode is ${mode.journal_mode}`);
  db.exec("PRAGMA synchronous = NORMAL");
  db.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)");
  let id = (db.prepare("SELECT coalesce(max(id), 0) AS n FROM t").get() as { n: number }).n;
  const insert = db.prepare("INSERT INTO t (id, v) VALUES (?, ?)");
  const total = Math.round(rate * seconds);
  const row = new Uint8Array(rowBytes);
  const checkpointer = checkpointEveryS === undefined
    ? undefined
    : startCheckpointer(path, checkpointEveryS * 1000);
  // Per-commit timings, kept only when checkpointing (the other scenarios need none).
  const latency = new Float64Array(checkpointer ? total : 0);
  const service = new Float64Array(checkpointer ? total : 0);
  let busyErrors = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000 + DEADLINE_GRACE_MS;
  let maxLagMs = 0;
  let lastCommitEpochMs = 0;
  let n = 0;
  for (; n < total; n++) {
    const due = started + (n * 1000) / rate;
    const now = performance.now();
    if (now < due) await new Promise((r) => setTimeout(r, due - now));
    else maxLagMs = Math.max(maxLagMs, now - due);
    if (checkpointer && now > deadline) break;
    crypto.getRandomValues(row);
    if (n === total - 1) row.set(new TextEncoder().encode(token));
    id++;
    const begun = performance.now();
    while (true) {
      try {
        db.exec("BEGIN IMMEDIATE");
        break;
      } catch (err) {
        if (!checkpointer || !isBusy(err)) throw err;
        busyErrors++;
      }
    }
    insert.run(id, row);
    db.exec("COMMIT");
    lastCommitEpochMs = epochMs();
    if (checkpointer) {
      const done = performance.now();
      latency[n] = done - due;
      service[n] = done - begun;
    }
  }
  const elapsedS = (performance.now() - started) / 1000;
  const checkpoints = await checkpointer?.stop();
  db.close();
  const result: LoadResult = {
    lastId: id,
    transactions: n,
    lastCommitEpochMs,
    elapsedS,
    maxLagMs,
    ...(checkpoints && {
      checkpointing: {
        latency: summarizeLatencies(latency.subarray(0, n)),
        service: summarizeLatencies(service.subarray(0, n)),
        busyErrors,
        checkpoints,
      },
    }),
  };
  console.log(JSON.stringify(result));
}

if (import.meta.main) await main(Deno.args);
