/**
 * File modification times with nanoseconds. v0.3.13 compares replica object
 * times with `-timestamp` in nanoseconds, but `Deno.stat` gives milliseconds,
 * so a timestamp inside an object's millisecond could pick other objects than
 * v0.3.13 does. On Linux (x86_64 and aarch64, where `st_mtim` sits at byte 88
 * of `struct stat`), libc's `stat` gives the full value when FFI is allowed;
 * elsewhere callers fall back to milliseconds.
 *
 * @module
 */

import { cString, libc } from "./libc.ts";

const STAT_LAYOUT_KNOWN = Deno.build.arch === "x86_64" || Deno.build.arch === "aarch64";

/** Reused `struct stat` buffer: the calls are synchronous. */
const statBuf = new Uint8Array(256);
const statView = new DataView(statBuf.buffer);

/**
 * The file's size and mtime in nanoseconds since the epoch from one synchronous `stat(2)`, or
 * undefined when that cannot be had here or the call fails (callers then use `Deno.stat`,
 * which reports why). One call costs microseconds, where an async `Deno.stat` costs a
 * round trip through Deno's thread pool: it makes listing thousands of objects cheap.
 */
export function statNs(path: string): { size: number; mtimeNs: bigint } | undefined {
  const lib = libc();
  if (typeof lib === "string" || !lib.stat || !STAT_LAYOUT_KNOWN) return undefined;
  if (lib.stat(cString(path), statBuf) !== 0) return undefined;
  // st_size at byte 48 and st_mtim at 88 on both x86_64 and aarch64 Linux.
  return {
    size: Number(statView.getBigInt64(48, true)),
    mtimeNs: statView.getBigInt64(88, true) * 1_000_000_000n + statView.getBigInt64(96, true),
  };
}
