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

/** The file's mtime in nanoseconds since the epoch, or undefined when it cannot be had here. */
export function mtimeNs(path: string): bigint | undefined {
  const lib = libc();
  if (typeof lib === "string" || !lib.stat || !STAT_LAYOUT_KNOWN) return undefined;
  const st = new Uint8Array(256);
  if (lib.stat(cString(path), st) !== 0) return undefined;
  const dv = new DataView(st.buffer);
  return dv.getBigInt64(88, true) * 1_000_000_000n + dv.getBigInt64(96, true);
}
