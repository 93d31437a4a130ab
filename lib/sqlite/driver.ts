/**
 * A small SQLite binding for the replicator: the system libsqlite3 through FFI when it loads
 * and `--allow-ffi` is granted, else Deno's built-in `node:sqlite` (which cannot set
 * persist-WAL and blocks the event loop while waiting on a lock).
 *
 * Do not open one database file through both drivers in one process: they are separate SQLite
 * copies, and POSIX locks are per process, so one copy closing its descriptor drops the other's
 * locks (spec §10.1).
 *
 * @module
 */

import {
  type Database,
  DEFAULT_BUSY_TIMEOUT_MS,
  type DriverName,
  type OpenOptions,
} from "./database.ts";
import { ffiUnavailableReason, openFfi } from "./ffi.ts";
import { openNode } from "./node.ts";

export {
  codeName,
  type Database,
  DEFAULT_BUSY_TIMEOUT_MS,
  type DriverName,
  type OpenOptions,
  SqliteCode,
  SqliteError,
  type SqliteValue,
} from "./database.ts";
export { ffiUnavailableReason } from "./ffi.ts";

/** The driver {@linkcode openDatabase} picks when none is forced. */
export function defaultDriver(): DriverName {
  return ffiUnavailableReason() === undefined ? "ffi" : "node:sqlite";
}

/**
 * Opens the SQLite database at `path`. Never creates it unless `create` is set.
 * `driver` forces a driver (tests); forcing "ffi" where it is unavailable throws, naming why.
 * Errors from SQLite are {@linkcode SqliteError}s.
 */
export async function openDatabase(
  path: string,
  options: OpenOptions & { driver?: DriverName } = {},
): Promise<Database> {
  const opts: Required<OpenOptions> = {
    readOnly: options.readOnly ?? false,
    create: options.create ?? false,
    busyTimeoutMs: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
  };
  const driver = options.driver ?? defaultDriver();
  return driver === "ffi" ? await openFfi(path, opts) : openNode(path, opts);
}
