/**
 * SQLite through `Deno.dlopen` over the system libsqlite3 (needs `--allow-ffi`).
 *
 * Calls that can wait on a lock or do much I/O (exec, prepare, step, close) are
 * `nonblocking` FFI calls: they run on Deno's blocking thread pool, so a busy wait does not
 * freeze the event loop. That needs a thread-safe libsqlite3 (checked at load), and each
 * connection runs its calls one at a time so no blocking call ever waits on the
 * connection's mutex held by a nonblocking one. (Deno keeps buffer arguments of a
 * nonblocking call alive until it returns, since denoland/deno#32775.)
 *
 * @module
 */

import { LitestreamError } from "../errors.ts";
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

const SYMBOLS = {
  sqlite3_libversion: { parameters: [], result: "pointer" },
  sqlite3_threadsafe: { parameters: [], result: "i32" },
  // Variadic in C; called (before the first open) only where variadic integer arguments travel
  // in registers as fixed ones do (Linux x86-64 and arm64): see `configureMemory`.
  sqlite3_config: { parameters: ["i32", "usize", "i32", "i32"], result: "i32" },
  sqlite3_errstr: { parameters: ["i32"], result: "pointer" },
  sqlite3_open_v2: { parameters: ["buffer", "buffer", "i32", "pointer"], result: "i32" },
  sqlite3_close_v2: { parameters: ["pointer"], result: "i32", nonblocking: true },
  sqlite3_busy_timeout: { parameters: ["pointer", "i32"], result: "i32" },
  sqlite3_errmsg: { parameters: ["pointer"], result: "pointer" },
  sqlite3_extended_errcode: { parameters: ["pointer"], result: "i32" },
  sqlite3_file_control: { parameters: ["pointer", "buffer", "i32", "buffer"], result: "i32" },
  sqlite3_exec: {
    parameters: ["pointer", "buffer", "pointer", "pointer", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  sqlite3_prepare_v2: {
    parameters: ["pointer", "buffer", "i32", "buffer", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  sqlite3_step: { parameters: ["pointer"], result: "i32", nonblocking: true },
  sqlite3_finalize: { parameters: ["pointer"], result: "i32" },
  sqlite3_column_count: { parameters: ["pointer"], result: "i32" },
  sqlite3_column_type: { parameters: ["pointer", "i32"], result: "i32" },
  sqlite3_column_int64: { parameters: ["pointer", "i32"], result: "i64" },
  sqlite3_column_double: { parameters: ["pointer", "i32"], result: "f64" },
  sqlite3_column_text: { parameters: ["pointer", "i32"], result: "pointer" },
  sqlite3_column_bytes: { parameters: ["pointer", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const OPEN_READONLY = 0x1;
const OPEN_READWRITE = 0x2;
const OPEN_CREATE = 0x4;
// Serialized mode: safe whichever pool thread a nonblocking call lands on.
const OPEN_FULLMUTEX = 0x10000;
const FCNTL_PERSIST_WAL = 10;
const COLUMN_INTEGER = 1;
const COLUMN_FLOAT = 2;
const COLUMN_TEXT = 3;
const COLUMN_BLOB = 4;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const MAIN = cString("main");

/** Where libsqlite3 usually is, per OS; bare names go through the loader's search path. */
function candidates(): string[] {
  switch (Deno.build.os) {
    case "darwin":
      return [
        "/opt/homebrew/opt/sqlite/lib/libsqlite3.dylib",
        "/usr/local/opt/sqlite/lib/libsqlite3.dylib",
        "/usr/lib/libsqlite3.dylib",
        "libsqlite3.dylib",
      ];
    case "windows":
      return ["sqlite3.dll"];
    default:
      return [
        "libsqlite3.so.0",
        "libsqlite3.so",
        "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0",
        "/usr/lib/aarch64-linux-gnu/libsqlite3.so.0",
        "/usr/lib64/libsqlite3.so.0",
        "/usr/lib/libsqlite3.so.0",
      ];
  }
}

/** The loaded library, or why none loaded. */
type Loaded = { lib: Lib; version: string } | { reason: string };

let loaded: Loaded | undefined;

function load(): Loaded {
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return { reason: "--allow-ffi is not granted" };
  }
  const envGranted =
    Deno.permissions.querySync({ name: "env", variable: "DENO_SQLITE_PATH" }).state === "granted";
  const fromEnv = envGranted ? Deno.env.get("DENO_SQLITE_PATH") : undefined;
  const paths = fromEnv ? [fromEnv] : candidates();
  const failures: string[] = [];
  for (const path of paths) {
    let dylib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      dylib = Deno.dlopen(path, SYMBOLS);
    } catch (err) {
      failures.push(`${path}: ${(err as Error).message}`);
      continue;
    }
    const lib = dylib.symbols;
    const version = readCString(lib.sqlite3_libversion());
    // Single-threaded builds must not be called from the thread pool.
    if (lib.sqlite3_threadsafe() === 0) {
      failures.push(`${path}: SQLite ${version} is compiled without thread safety`);
      dylib.close();
      continue;
    }
    configureMemory(lib);
    return { lib, version };
  }
  return { reason: `no usable libsqlite3 (${failures.join("; ")})` };
}

const SQLITE_CONFIG_PAGECACHE = 7;
const SQLITE_CONFIG_LOOKASIDE = 13;

/**
 * Our connections run a handful of small statements and read a page or two (snapshots read the
 * file itself), yet by default each one allocates a 120 KB lookaside area and a bulk page cache
 * of 20 pages (about 85 KB, touched as it is carved up): with two connections per database, a
 * thousand databases held some 160 MB for nothing. Both are turned off before the library
 * initialises; pages are then allocated one at a time as read.
 */
function configureMemory(lib: Lib): void {
  if (Deno.build.os !== "linux") return; // variadic arguments go on the stack on macOS arm64
  lib.sqlite3_config(SQLITE_CONFIG_PAGECACHE, 0n, 0, 0);
  lib.sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0n, 0, 0);
}

/** Loads the library on first use; later calls return the same outcome. */
function library(): Loaded {
  loaded ??= load();
  return loaded;
}

/** Why the FFI driver cannot run here, or `undefined` when it can (loads the library once). */
export function ffiUnavailableReason(): string | undefined {
  const l = library();
  return "reason" in l ? l.reason : undefined;
}

/** Opens `path` with the FFI driver; throws a {@linkcode LitestreamError} when it is unavailable. */
export async function openFfi(path: string, options: Required<OpenOptions>): Promise<Database> {
  const l = library();
  if ("reason" in l) throw new LitestreamError(`sqlite ffi driver unavailable: ${l.reason}`);
  const { lib, version } = l;
  const flags = OPEN_FULLMUTEX |
    (options.readOnly ? OPEN_READONLY : OPEN_READWRITE | (options.create ? OPEN_CREATE : 0));
  const out = new BigUint64Array(1);
  const rc = lib.sqlite3_open_v2(cString(path), out, flags, null);
  const handle = Deno.UnsafePointer.create(out[0]);
  // Only a failed allocation leaves no handle; any other failure's message is in the handle.
  if (!handle) throw new SqliteError(path, rc, errstr(lib, rc));
  if (rc !== SqliteCode.SQLITE_OK) {
    const err = lastError(lib, handle, path);
    await lib.sqlite3_close_v2(handle);
    throw err;
  }
  lib.sqlite3_busy_timeout(handle, options.busyTimeoutMs);
  return new FfiDatabase(lib, version, path, handle);
}

/** A connection whose calls are chained so that only one runs at a time. */
class FfiDatabase implements Database {
  readonly driver = "ffi";
  readonly canPersistWal = true;
  readonly blocksEventLoop = false;
  #tail: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;

  constructor(
    private readonly lib: Lib,
    readonly version: string,
    readonly path: string,
    private readonly handle: Deno.PointerObject,
  ) {}

  exec(sql: string): Promise<void> {
    return this.#serial(async (db) => {
      const rc = await this.lib.sqlite3_exec(db, cString(sql), null, null, null);
      if (rc !== SqliteCode.SQLITE_OK) throw lastError(this.lib, db, this.path, sql);
    });
  }

  queryRow(sql: string): Promise<SqliteValue[] | undefined> {
    return this.#serial(async (db) => {
      const text = cString(sql);
      const out = new BigUint64Array(1);
      const rc = await this.lib.sqlite3_prepare_v2(db, text, text.length, out, null);
      if (rc !== SqliteCode.SQLITE_OK) {
        throw lastError(this.lib, db, this.path, sql);
      }
      const stmt = Deno.UnsafePointer.create(out[0]);
      if (!stmt) return undefined; // empty SQL or only a comment
      try {
        const step = await this.lib.sqlite3_step(stmt);
        if (step === SqliteCode.SQLITE_DONE) return undefined;
        if (step !== SqliteCode.SQLITE_ROW) throw lastError(this.lib, db, this.path, sql);
        return this.#row(stmt, sql);
      } finally {
        this.lib.sqlite3_finalize(stmt);
      }
    });
  }

  setPersistWal(on: boolean): Promise<void> {
    return this.#serial((db) => {
      const rc = this.lib.sqlite3_file_control(
        db,
        MAIN,
        FCNTL_PERSIST_WAL,
        new Int32Array([on ? 1 : 0]),
      );
      // File control does not set the connection's error message.
      if (rc !== SqliteCode.SQLITE_OK) {
        throw new SqliteError(this.path, rc, `persist-WAL: ${errstr(this.lib, rc)}`);
      }
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#serial(async (db) => {
      const rc = await this.lib.sqlite3_close_v2(db);
      if (rc !== SqliteCode.SQLITE_OK) throw new SqliteError(this.path, rc, errstr(this.lib, rc));
    });
    return this.#closing;
  }

  #row(stmt: Deno.PointerObject, sql: string): SqliteValue[] {
    const row: SqliteValue[] = [];
    const columns = this.lib.sqlite3_column_count(stmt);
    for (let i = 0; i < columns; i++) {
      switch (this.lib.sqlite3_column_type(stmt, i)) {
        case COLUMN_INTEGER:
          row.push(fromInteger(this.lib.sqlite3_column_int64(stmt, i)));
          break;
        case COLUMN_FLOAT:
          row.push(this.lib.sqlite3_column_double(stmt, i));
          break;
        case COLUMN_TEXT: {
          // Text first, then its length (the documented order); may hold NULs.
          const ptr = this.lib.sqlite3_column_text(stmt, i);
          const len = this.lib.sqlite3_column_bytes(stmt, i);
          row.push(ptr ? decoder.decode(Deno.UnsafePointerView.getArrayBuffer(ptr, len)) : "");
          break;
        }
        case COLUMN_BLOB:
          blobUnsupported(this.path, sql);
          break;
        default:
          row.push(null);
      }
    }
    return row;
  }

  /** Runs `op` after every earlier call on this connection has settled; none after close. */
  #serial<T>(op: (db: Deno.PointerObject) => T | Promise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(closedError(this.path));
    const run = this.#tail.then(() => op(this.handle));
    this.#tail = run.catch(() => {});
    return run;
  }
}

/** The connection's last error as a {@linkcode SqliteError}. */
function lastError(lib: Lib, db: Deno.PointerObject, path: string, sql?: string): SqliteError {
  return new SqliteError(
    path,
    lib.sqlite3_extended_errcode(db),
    readCString(lib.sqlite3_errmsg(db)),
    sql,
  );
}

function errstr(lib: Lib, rc: number): string {
  return readCString(lib.sqlite3_errstr(rc));
}

function readCString(ptr: Deno.PointerValue): string {
  return ptr ? Deno.UnsafePointerView.getCString(ptr) : "";
}

function cString(s: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(`${s}\0`);
}
