/**
 * The open-file limit. Each replicated database holds several descriptors (its connections'
 * files, the WAL, the `-shm`, ours), so thousands of databases need far more than the usual
 * soft limit of 1024: it is raised to the hard limit at start-up, as Go's runtime does for
 * Litestream v0.3.13. Without FFI (or off Linux) nothing is changed. Running out is reported
 * naming the limit, for the one database that met it.
 *
 * @module
 */

import { type Libc, libc } from "./libc.ts";
import type { Logger } from "../log.ts";

const RLIMIT_NOFILE = 7;

/** The soft and hard open-file limits, or undefined where they cannot be read. */
export function openFileLimit(): { soft: bigint; hard: bigint } | undefined {
  const lib = libc();
  return typeof lib === "string" ? undefined : read(lib);
}

function read(lib: Libc): { soft: bigint; hard: bigint } | undefined {
  const buf = new BigUint64Array(2);
  if (lib.getrlimit(RLIMIT_NOFILE, buf) !== 0) return undefined;
  return { soft: buf[0], hard: buf[1] };
}

/** Raises the soft open-file limit to the hard limit (logged); silently nothing without FFI. */
export function raiseOpenFileLimit(log: Logger): void {
  const lib = libc();
  if (typeof lib === "string") return;
  const limit = read(lib);
  if (!limit || limit.soft >= limit.hard) return;
  if (lib.setrlimit(RLIMIT_NOFILE, new BigUint64Array([limit.hard, limit.hard])) === 0) {
    log.debug("open-file limit raised", { from: String(limit.soft), to: String(limit.hard) });
  }
}

/**
 * When `err` is the process running out of descriptors (EMFILE, or SQLite unable to open a
 * file while nearly every descriptor is taken), a message naming the limit to raise;
 * otherwise undefined.
 */
export function fileLimitMessage(err: unknown): string | undefined {
  const msg = err instanceof Error ? err.message : String(err);
  const emfile = /os error 24|too many open files/i.test(msg);
  if (!emfile && !/unable to open/i.test(msg)) return undefined;
  const limit = openFileLimit();
  if (!emfile) {
    if (!limit) return undefined;
    let open = 0;
    try {
      for (const _ of Deno.readDirSync("/proc/self/fd")) open++;
    } catch {
      return undefined;
    }
    if (BigInt(open) < limit.soft - 32n) return undefined;
  }
  const which = limit ? ` (RLIMIT_NOFILE ${limit.soft})` : "";
  return `open files ran out${which}: raise the limit (ulimit -n, systemd LimitNOFILE=): ${msg}`;
}

/**
 * Descriptors a replicated database holds (three connections' database and WAL files, the
 * `-shm`, ours of the database and the `-shm`, the meta lock; the third connection opens when it
 * first idles) plus one it opens now and then.
 */
export const FDS_PER_DB = 11;

/** Descriptors kept free for everything else (logs, sockets, restores, the application's `-exec`). */
const FD_RESERVE = 256n;

/**
 * Whether one more database fits under the open-file limit with `dbs` already replicated; a
 * database admitted past it would take the descriptors the others need for their next sync.
 * True where the limit cannot be read.
 */
export function fitsOpenFileLimit(dbs: number): boolean {
  const limit = openFileLimit();
  return !limit || BigInt((dbs + 1) * FDS_PER_DB) + FD_RESERVE <= limit.soft;
}
