/**
 * The fallback driver over Deno's built-in `node:sqlite` (its own SQLite, 3.53 in Deno 2.9.6).
 *
 * Limits, each surfaced rather than hidden: it is synchronous, so a busy wait freezes the event
 * loop (`blocksEventLoop`); it has no file-control API, so persist-WAL cannot be set
 * (`canPersistWal` is false); its errors carry no result code, so the code is inferred from
 * SQLite's standard message text (SQLITE_ERROR when nothing matches); text values end at the
 * first NUL character.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import {
  blobUnsupported,
  closedError,
  type Database,
  fromInteger,
  type OpenOptions,
  SqliteCode,
  SqliteError,
  type SqliteValue,
} from "./database.ts";

/** `sqlite3_errstr()` texts that identify a primary code inside an `sqlite3_errmsg()` text. */
const MESSAGE_CODES: [string, number][] = [
  ["database is locked", SqliteCode.SQLITE_BUSY],
  ["database table is locked", SqliteCode.SQLITE_LOCKED],
  ["out of memory", SqliteCode.SQLITE_NOMEM],
  ["attempt to write a readonly database", SqliteCode.SQLITE_READONLY],
  ["interrupted", SqliteCode.SQLITE_INTERRUPT],
  ["disk I/O error", SqliteCode.SQLITE_IOERR],
  ["database disk image is malformed", SqliteCode.SQLITE_CORRUPT],
  ["database or disk is full", SqliteCode.SQLITE_FULL],
  ["unable to open database file", SqliteCode.SQLITE_CANTOPEN],
  ["locking protocol", SqliteCode.SQLITE_PROTOCOL],
  ["database schema has changed", SqliteCode.SQLITE_SCHEMA],
  ["string or blob too big", SqliteCode.SQLITE_TOOBIG],
  ["constraint failed", SqliteCode.SQLITE_CONSTRAINT],
  ["datatype mismatch", SqliteCode.SQLITE_MISMATCH],
  ["bad parameter or other API misuse", SqliteCode.SQLITE_MISUSE],
  ["authorization denied", SqliteCode.SQLITE_AUTH],
  ["column index out of range", SqliteCode.SQLITE_RANGE],
  ["file is not a database", SqliteCode.SQLITE_NOTADB],
];

/**
 * Opens `path` with `node:sqlite`. DatabaseSync always adds SQLITE_OPEN_CREATE to a read-write
 * open, and Deno 2.9.6 takes a `file:` URI (`?mode=rw`) for a relative path unless run with
 * `--allow-all`, so `create: false` is checked by a read-only open first: a file deleted between
 * the two opens would be created.
 */
export function openNode(path: string, options: Required<OpenOptions>): Database {
  const open = (readOnly: boolean) =>
    translated(path, () =>
      new DatabaseSync(path, {
        readOnly,
        timeout: options.busyTimeoutMs,
        enableForeignKeyConstraints: false, // plain SQLite's default, as with the FFI driver
      }));
  if (!options.readOnly && !options.create) open(true).close();
  return new NodeDatabase(path, open(options.readOnly));
}

/** A `node:sqlite` connection behind the async {@linkcode Database} interface. */
class NodeDatabase implements Database {
  readonly driver = "node:sqlite";
  readonly canPersistWal = false;
  readonly blocksEventLoop = true;
  readonly version = libraryVersion();
  #db: DatabaseSync | undefined;

  constructor(readonly path: string, db: DatabaseSync) {
    this.#db = db;
  }

  exec(sql: string): Promise<void> {
    return this.#async((db) => db.exec(sql), sql);
  }

  queryRow(sql: string): Promise<SqliteValue[] | undefined> {
    return this.#async((db) => {
      // Deno 2.9.6 has setReturnArrays at run time but not in its types.
      const stmt = db.prepare(sql) as StatementSync & { setReturnArrays(on: boolean): void };
      stmt.setReadBigInts(true);
      stmt.setReturnArrays(true); // objects would merge duplicate column names
      const row = stmt.get() as unknown[] | undefined;
      return row?.map((v) => {
        if (v instanceof Uint8Array) blobUnsupported(this.path, sql);
        return typeof v === "bigint" ? fromInteger(v) : v as SqliteValue;
      });
    }, sql);
  }

  setPersistWal(): Promise<void> {
    // SQLITE_NOTFOUND is what sqlite3_file_control() returns for an op it cannot do.
    return Promise.reject(
      new SqliteError(
        this.path,
        SqliteCode.SQLITE_NOTFOUND,
        "persist-WAL needs sqlite3_file_control, which node:sqlite lacks (use the ffi driver)",
      ),
    );
  }

  close(): Promise<void> {
    const db = this.#db;
    this.#db = undefined;
    return Promise.try(() => db?.close());
  }

  /** Runs `op` on the open connection, turning a throw into a rejection. */
  #async<T>(op: (db: DatabaseSync) => T, sql?: string): Promise<T> {
    return Promise.try(() => {
      const db = this.#db;
      if (!db) throw closedError(this.path);
      return translated(this.path, () => op(db), sql);
    });
  }
}

let version: string | undefined;

/** node:sqlite's SQLite version, asked of an in-memory database (a file might not be SQLite). */
function libraryVersion(): string {
  if (version === undefined) {
    const memory = new DatabaseSync(":memory:");
    version = (memory.prepare("SELECT sqlite_version() AS v").get() as { v: string }).v;
    memory.close();
  }
  return version;
}

/** Runs `op`, converting node:sqlite's errors to {@linkcode SqliteError}. */
function translated<T>(path: string, op: () => T, sql?: string): T {
  try {
    return op();
  } catch (err) {
    if ((err as { code?: string }).code !== "ERR_SQLITE_ERROR") throw err;
    const message = (err as Error).message;
    const code = MESSAGE_CODES.find(([text]) => message.includes(text))?.[1] ??
      SqliteCode.SQLITE_ERROR;
    throw new SqliteError(path, code, message, sql);
  }
}
