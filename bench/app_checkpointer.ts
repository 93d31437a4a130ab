/**
 * The application's checkpointer for the `app-checkpoint` scenario: a Worker that
 * `bench/load_writer.ts` starts in its own process, so the application's checkpoints run on a
 * second SQLite connection (`node:sqlite`, `busy_timeout = 5000`) on another thread while the
 * writer's connection keeps committing, as in an application with a connection pool.
 *
 * Protocol: the writer posts `{ path, everyMs }` to start; the Worker runs
 * `PRAGMA wal_checkpoint(TRUNCATE)` every `everyMs` (counted from the end of the previous
 * checkpoint, so a checkpoint that stalls for its whole busy timeout does not make the next one
 * due at once) and records each one. The writer posts `"stop"`; the Worker finishes a checkpoint
 * in progress (it is synchronous), closes its connection and posts back its
 * {@link CheckpointRecord} list.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { DatabaseSync } from "node:sqlite";
import { type CheckpointRecord, epochMs } from "./support/load.ts";

let db: DatabaseSync | undefined;
let timer: ReturnType<typeof setTimeout> | undefined;
const records: CheckpointRecord[] = [];

function checkpoint(): void {
  const started = epochMs();
  const t0 = performance.now();
  try {
    const row = db!.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as {
      busy: number;
      log: number;
      checkpointed: number;
    };
    records.push({
      startEpochMs: started,
      durationMs: performance.now() - t0,
      row: [row.busy, row.log, row.checkpointed],
    });
  } catch (err) {
    // SQLITE_BUSY or another error: recorded as a failed checkpoint with its message.
    records.push({
      startEpochMs: started,
      durationMs: performance.now() - t0,
      error: (err as Error).message,
    });
  }
}

self.onmessage = (e: MessageEvent<{ path: string; everyMs: number } | "stop">) => {
  if (e.data === "stop") {
    clearTimeout(timer);
    db?.close();
    self.postMessage(records);
    return;
  }
  const { path, everyMs } = e.data;
  db = new DatabaseSync(path);
  db.exec("PRAGMA busy_timeout = 5000");
  const next = () => {
    timer = setTimeout(() => {
      checkpoint();
      next();
    }, everyMs);
  };
  next();
};
