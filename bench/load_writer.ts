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
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { epochMs, type LoadResult } from "./support/load.ts";

async function main([path, rateArg, secondsArg, rowArg, token]: string[]): Promise<void> {
  const rate = Number(rateArg);
  const seconds = Number(secondsArg);
  const rowBytes = Number(rowArg);
  if (!path || !(rate > 0) || !(seconds > 0) || !(rowBytes > 0) || !token) {
    throw new Error("usage: load_writer.ts DB RATE SECONDS ROW_BYTES TOKEN");
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
  const started = performance.now();
  let maxLagMs = 0;
  let lastCommitEpochMs = 0;
  for (let n = 0; n < total; n++) {
    const due = started + (n * 1000) / rate;
    const now = performance.now();
    if (now < due) await new Promise((r) => setTimeout(r, due - now));
    else maxLagMs = Math.max(maxLagMs, now - due);
    crypto.getRandomValues(row);
    if (n === total - 1) row.set(new TextEncoder().encode(token));
    id++;
    db.exec("BEGIN IMMEDIATE");
    insert.run(id, row);
    db.exec("COMMIT");
    lastCommitEpochMs = epochMs();
  }
  const elapsedS = (performance.now() - started) / 1000;
  db.close();
  const result: LoadResult = {
    lastId: id,
    transactions: total,
    lastCommitEpochMs,
    elapsedS,
    maxLagMs,
  };
  console.log(JSON.stringify(result));
}

if (import.meta.main) await main(Deno.args);
