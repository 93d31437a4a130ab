/**
 * Helpers over the `sqlite3` command-line shell, so tests touch databases the way an independent
 * application process would (separate process, its own locks, its own WAL handling).
 *
 * @module
 */

import assert from "node:assert/strict";
import { waitFor } from "./poll.ts";

/** The system SQLite shell (3.40.1 on the project's machines). */
export const SQLITE3 = "/usr/bin/sqlite3";

/** Milliseconds SQLite waits on a locked database before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;

/**
 * Runs `sql` (statements and/or dot-commands) against `dbPath` in a fresh `sqlite3` process and
 * returns its standard output without the trailing newline. Stops at the first error and throws
 * with the shell's stderr.
 */
export async function sqlite(dbPath: string, sql: string): Promise<string> {
  const child = new Deno.Command(SQLITE3, {
    args: ["-batch", "-bail", "-cmd", `.timeout ${BUSY_TIMEOUT_MS}`, dbPath],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(sql.endsWith("\n") ? sql : `${sql}\n`));
  await writer.close();
  const out = await child.output();
  const dec = new TextDecoder();
  const stderr = dec.decode(out.stderr).trim();
  if (!out.success || stderr !== "") {
    throw new Error(
      `sqlite3 ${dbPath} failed (exit ${out.code}): ${stderr}\nSQL: ${sql.slice(0, 500)}`,
    );
  }
  return dec.decode(out.stdout).replace(/\n$/, "");
}

/** Has the sqlite3 CLI hold the write lock (`BEGIN IMMEDIATE`) until `release()` (idempotent). */
export async function holdWriteLock(path: string): Promise<{ release(): Promise<void> }> {
  const child = new Deno.Command(SQLITE3, {
    args: [path],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let output = "";
  const reading = child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (output += chunk) }),
  );
  const stdin = child.stdin.getWriter();
  await stdin.write(new TextEncoder().encode("BEGIN IMMEDIATE;\nSELECT 'locked';\n"));
  await waitFor("the CLI to take the write lock", () => output.includes("locked"));
  let released: Promise<void> | undefined;
  return {
    release() {
      released ??= (async () => {
        await stdin.close(); // end of input: the CLI rolls back and exits
        await reading;
        assert.ok((await child.status).success);
      })();
      return released;
    },
  };
}

/** `PRAGMA integrity_check` of `dbPath`: `"ok"`, or the problems SQLite reports (one per line). */
export function integrityCheck(dbPath: string): Promise<string> {
  return sqlite(dbPath, "PRAGMA integrity_check;");
}

/** Number of rows in `table` (default `t`, the {@link Writer}'s table). */
export async function rowCount(dbPath: string, table = "t"): Promise<number> {
  return Number(await sqlite(dbPath, `SELECT count(*) FROM "${table}";`));
}

/** Largest `id` in `table` (default `t`), 0 when empty. */
export async function maxId(dbPath: string, table = "t"): Promise<number> {
  return Number(await sqlite(dbPath, `SELECT coalesce(max(id), 0) FROM "${table}";`));
}

/** The {@link Writer}'s table: an integer key and a blob per row. */
function writerTableDdl(table: string): string {
  return `CREATE TABLE IF NOT EXISTS "${table}" (id INTEGER PRIMARY KEY, v BLOB);`;
}

/**
 * Creates (if missing) the database in WAL mode with the {@link Writer}'s table and no rows,
 * from a short-lived `sqlite3` process.
 */
export async function createWriterTable(dbPath: string, table = "t"): Promise<void> {
  const mode = await sqlite(dbPath, `PRAGMA journal_mode = WAL;\n${writerTableDdl(table)}`);
  if (mode !== "wal") throw new Error(`${dbPath}: journal_mode is ${mode}, not wal`);
}

/** Options for {@link Writer.start}. */
export interface WriterOptions {
  /** Table to write (created if missing as `(id INTEGER PRIMARY KEY, v BLOB)`). Default `t`. */
  table?: string;
  /** Rows per transaction. Default 2. */
  rowsPerTransaction?: number;
  /** Bytes of random data per row. Default 1024. */
  blobSize?: number;
  /** Pause between transactions, to keep the write rate (and database size) modest. Default 20. */
  pauseMs?: number;
}

/**
 * An application-like writer: one long-lived `sqlite3` process, in WAL mode, committing numbered
 * rows of random data in a loop until stopped. Ids continue from the table's current maximum.
 *
 * After every transaction the shell is asked to echo the new id; since the shell runs statements
 * in order, an echoed id proves that transaction committed. That echo is also what paces the loop.
 */
export class Writer {
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;
  #stderr: Promise<string>;
  #opts: Required<WriterOptions>;
  #lastId: number;
  #transactions = 0;
  #stopping = false;
  #loop: Promise<void> = Promise.resolve();

  private constructor(
    child: Deno.ChildProcess,
    lines: AsyncIterator<string>,
    opts: Required<WriterOptions>,
    firstId: number,
  ) {
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#lines = lines;
    this.#stderr = new Response(child.stderr).text();
    this.#opts = opts;
    this.#lastId = firstId;
  }

  /** Starts the writer process on `dbPath` (created if missing) and its commit loop. */
  static async start(dbPath: string, options: WriterOptions = {}): Promise<Writer> {
    const opts: Required<WriterOptions> = {
      table: options.table ?? "t",
      rowsPerTransaction: options.rowsPerTransaction ?? 2,
      blobSize: options.blobSize ?? 1024,
      pauseMs: options.pauseMs ?? 20,
    };
    const child = new Deno.Command(SQLITE3, {
      args: ["-batch", "-bail", dbPath],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines = readLines(child.stdout);
    const w = new Writer(child, lines, opts, 0);
    try {
      await w.#send(
        `.timeout ${BUSY_TIMEOUT_MS}\n` +
          `PRAGMA journal_mode = WAL;\n` +
          `${writerTableDdl(opts.table)}\n` +
          `SELECT 'start', coalesce(max(id), 0) FROM "${opts.table}";\n`,
      );
      await w.#expectLine((l) => l === "wal" ? true : undefined, "journal_mode = WAL");
      w.#lastId = await w.#expectLine(
        (l) => l.startsWith("start|") ? Number(l.slice(6)) : undefined,
        "the starting id",
      );
    } catch (err) {
      // Do not leak the shell when startup fails.
      w.#stopping = true;
      await w.stop().catch(() => {});
      throw err;
    }
    w.#loop = w.#run();
    return w;
  }

  /** Id of the last row whose transaction is known to have committed. */
  get lastId(): number {
    return this.#lastId;
  }

  /** Number of transactions committed since start. */
  get transactions(): number {
    return this.#transactions;
  }

  /**
   * Stops the loop after the transaction in flight, ends the shell and returns the last
   * committed id. Throws if the loop or the shell failed.
   */
  async stop(): Promise<number> {
    this.#stopping = true;
    let loopError: unknown;
    await this.#loop.catch((err) => loopError = err);
    await this.#stdin.close().catch(() => {});
    const status = await this.#child.status;
    // Drain anything unread so the stdout stream is closed cleanly.
    while (!(await this.#lines.next()).done) { /* discard */ }
    const stderr = (await this.#stderr).trim();
    if (loopError !== undefined || !status.success || stderr !== "") {
      throw new Error(
        `sqlite3 writer failed (exit ${status.code}) after id ${this.#lastId}: ${stderr}`,
        { cause: loopError },
      );
    }
    return this.#lastId;
  }

  async #run(): Promise<void> {
    const { table, rowsPerTransaction, blobSize, pauseMs } = this.#opts;
    while (!this.#stopping) {
      const first = this.#lastId + 1;
      const last = this.#lastId + rowsPerTransaction;
      let sql = "BEGIN IMMEDIATE;\n";
      for (let id = first; id <= last; id++) {
        sql += `INSERT INTO "${table}" (id, v) VALUES (${id}, randomblob(${blobSize}));\n`;
      }
      sql += `COMMIT;\nSELECT 'ack', ${last};\n`;
      await this.#send(sql);
      this.#lastId = await this.#expectLine(
        (l) => l === `ack|${last}` ? last : undefined,
        `the commit of id ${last}`,
      );
      this.#transactions++;
      if (pauseMs > 0 && !this.#stopping) await new Promise((r) => setTimeout(r, pauseMs));
    }
  }

  async #send(sql: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(sql));
  }

  /** Reads stdout lines until `match` accepts one; throws if the shell exits first. */
  async #expectLine<T>(match: (line: string) => T | undefined, what: string): Promise<T> {
    while (true) {
      const next = await this.#lines.next();
      if (next.done) {
        throw new Error(`sqlite3 writer exited before ${what}: ${(await this.#stderr).trim()}`);
      }
      const v = match(next.value);
      if (v !== undefined) return v;
    }
  }
}

/** Stops a writer when the scope ends (also on failure), ignoring errors of a second stop. */
export function stopping(writer: Writer): AsyncDisposable {
  return { [Symbol.asyncDispose]: () => writer.stop().then(() => {}, () => {}) };
}

/** Splits a byte stream into text lines (without their newlines). */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
    }
  }
  if (buffered !== "") yield buffered;
}
