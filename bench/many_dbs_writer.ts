/**
 * The `many-dbs` benchmark's application: `deno run -A bench/many_dbs_writer.ts LIST RATE
 * SECONDS`, one process writing to every database named in the file LIST (one path a line).
 * Commits one 100-byte row per transaction into `t(id INTEGER PRIMARY KEY, v BLOB)` of a
 * database chosen at random, paced to RATE transactions a second across all of them for
 * SECONDS seconds (`node:sqlite`, WAL mode, `synchronous = NORMAL`, busy timeout 5 s). With
 * RATE 0 it commits once to every database, in order, and stops (the fan-out commit).
 *
 * Prints one JSON line: `transactions`, `elapsedS`, `maxLagMs` (worst lag behind schedule) and
 * `lastCommitEpochMs`.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";

const [listFile, rateArg, secondsArg] = Deno.args;
const paths = (await Deno.readTextFile(listFile)).split("\n").filter((p) => p !== "");
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const dbs = paths.map((p) => {
  const db = new DatabaseSync(p);
  db.exec("PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;");
  return db.prepare("INSERT INTO t (v) VALUES (randomblob(100))");
});
const started = performance.now();
let n = 0;
let maxLagMs = 0;
if (rate === 0) {
  for (const insert of dbs) insert.run(), n++;
} else {
  const total = Math.round(rate * seconds);
  while (n < total) {
    const due = started + (n * 1000) / rate;
    const lag = performance.now() - due;
    if (lag < 0) await new Promise((r) => setTimeout(r, -lag));
    else maxLagMs = Math.max(maxLagMs, lag);
    dbs[Math.floor(Math.random() * dbs.length)].run();
    n++;
  }
}
console.log(JSON.stringify({
  transactions: n,
  elapsedS: (performance.now() - started) / 1000,
  maxLagMs,
  lastCommitEpochMs: performance.timeOrigin + performance.now(),
}));
