/**
 * What every SQLite driver provides: the connection interface, open options,
 * result codes and the error type. Drivers live in `ffi.ts` and `node.ts`.
 *
 * @module
 */

import { LitestreamError } from "../errors.ts";

/** A column value: integers as `number` when safe, else `bigint`; REAL as `number`. */
export type SqliteValue = number | bigint | string | null;

/** The driver behind a {@linkcode Database}. */
export type DriverName = "ffi" | "node:sqlite";

/** How to open a database. */
export interface OpenOptions {
  /** Open read-only (never writes, never creates; wins over `create`). Default false. */
  readOnly?: boolean;
  /** Create the file when missing. Default false: a missing file is an error (SQLITE_CANTOPEN). */
  create?: boolean;
  /** How long a statement waits for a lock before SQLITE_BUSY. Default {@linkcode DEFAULT_BUSY_TIMEOUT_MS}. */
  busyTimeoutMs?: number;
}

/** Litestream's busy timeout (spec §4.1). */
export const DEFAULT_BUSY_TIMEOUT_MS = 1000;

/** One open SQLite connection. Calls on one connection run one at a time, in call order. */
export interface Database {
  /** Which driver runs this connection. */
  readonly driver: DriverName;
  /** The path the connection was opened with (used in error messages). */
  readonly path: string;
  /** The SQLite library version, e.g. "3.40.1". */
  readonly version: string;
  /** Whether {@linkcode Database.setPersistWal} works (needs `sqlite3_file_control`). */
  readonly canPersistWal: boolean;
  /** Whether a statement waiting on a lock freezes the event loop for the wait. */
  readonly blocksEventLoop: boolean;
  /** Runs one or more `;`-separated statements, discarding rows. */
  exec(sql: string): Promise<void>;
  /** Runs one statement and returns its first row, or `undefined` when it yields none. */
  queryRow(sql: string): Promise<SqliteValue[] | undefined>;
  /**
   * Sets SQLITE_FCNTL_PERSIST_WAL on the "main" database, so the `-wal` file survives this
   * connection closing last. Rejects with a {@linkcode SqliteError} when `!canPersistWal`.
   */
  setPersistWal(on: boolean): Promise<void>;
  /** Closes the connection after calls already made finish; closing again does nothing. */
  close(): Promise<void>;
}

/** SQLite's primary result codes (https://sqlite.org/rescode.html), by name. */
export const SqliteCode = Object.freeze({
  SQLITE_OK: 0,
  SQLITE_ERROR: 1,
  SQLITE_INTERNAL: 2,
  SQLITE_PERM: 3,
  SQLITE_ABORT: 4,
  SQLITE_BUSY: 5,
  SQLITE_LOCKED: 6,
  SQLITE_NOMEM: 7,
  SQLITE_READONLY: 8,
  SQLITE_INTERRUPT: 9,
  SQLITE_IOERR: 10,
  SQLITE_CORRUPT: 11,
  SQLITE_NOTFOUND: 12,
  SQLITE_FULL: 13,
  SQLITE_CANTOPEN: 14,
  SQLITE_PROTOCOL: 15,
  SQLITE_EMPTY: 16,
  SQLITE_SCHEMA: 17,
  SQLITE_TOOBIG: 18,
  SQLITE_CONSTRAINT: 19,
  SQLITE_MISMATCH: 20,
  SQLITE_MISUSE: 21,
  SQLITE_NOLFS: 22,
  SQLITE_AUTH: 23,
  SQLITE_FORMAT: 24,
  SQLITE_RANGE: 25,
  SQLITE_NOTADB: 26,
  SQLITE_NOTICE: 27,
  SQLITE_WARNING: 28,
  SQLITE_ROW: 100,
  SQLITE_DONE: 101,
});

/** The name of a (primary or extended) result code's primary code, e.g. 517 -> "SQLITE_BUSY". */
export function codeName(code: number): string {
  const primary = code & 0xff;
  const entry = Object.entries(SqliteCode).find(([, value]) => value === primary);
  return entry?.[0] ?? "SQLITE_UNKNOWN";
}

/** An error reported by SQLite; the message names the database, the code and SQLite's text. */
export class SqliteError extends LitestreamError {
  /** The primary result code (`extendedCode & 0xff`), e.g. {@linkcode SqliteCode.SQLITE_BUSY}. */
  readonly code: number;

  /**
   * Creates an error for database `path`. `extendedCode` is SQLite's (extended) result code,
   * `detail` its message (`sqlite3_errmsg`), `sql` the statement that failed, if any.
   */
  constructor(
    readonly path: string,
    readonly extendedCode: number,
    readonly detail: string,
    readonly sql?: string,
  ) {
    const code = extendedCode & 0xff;
    const ext = extendedCode === code ? "" : `, extended ${extendedCode}`;
    const stmt = sql === undefined ? "" : ` (in: ${oneLine(sql)})`;
    super(`sqlite ${path}: ${detail} [${codeName(code)} ${code}${ext}]${stmt}`);
    this.code = code;
  }
}

/** The error for a call on a closed connection. */
export function closedError(path: string): LitestreamError {
  return new LitestreamError(`sqlite ${path}: database is closed`);
}

/** Throws for a BLOB column: nothing the replicator asks for returns one. */
export function blobUnsupported(path: string, sql: string): never {
  throw new LitestreamError(`sqlite ${path}: BLOB columns are not supported (in: ${oneLine(sql)})`);
}

/** Integers come back as `number` when exactly representable, else as `bigint`. */
export function fromInteger(value: number | bigint): number | bigint {
  if (typeof value === "number") return value;
  const safe = value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER);
  return safe ? Number(value) : value;
}

/** Keeps SQL in an error message on one short line. */
function oneLine(sql: string): string {
  const flat = sql.replace(/\s+/g, " ").trim();
  return flat.length > 120 ? `${flat.slice(0, 117)}...` : flat;
}
