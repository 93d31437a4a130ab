/**
 * The database-header edits that make a followed copy safe for any SQLite reader (pure).
 * Bytes 18 and 19 (file format versions) become 1, rollback-journal mode, so a reader never
 * looks for a `-wal` or `-shm`; the file change counter (24–27) takes a new value so readers
 * drop their page caches; the version-valid-for number (92–95) equals it, so readers trust the
 * in-header database size (28–31), which is set to the committed page count.
 *
 * @module
 */

import { DB_HEADER_SIZE } from "../sqlite/header.ts";

/** Offset of the file change counter. */
const CHANGE_COUNTER = 24;
/** Offset of the in-header database size in pages. */
const PAGE_COUNT = 28;
/** Offset of the version-valid-for number. */
const VERSION_VALID_FOR = 92;

/** The change counter that follows `counter` (32 bits, wrapping, never equal to it). */
export function nextChangeCounter(counter: number): number {
  return (counter + 1) >>> 0;
}

/**
 * A copy of the 100-byte header `header` as the follower leaves it: rollback-journal mode,
 * change counter and version-valid-for set to `counter`, database size `pages`.
 */
export function followerHeader(header: Uint8Array, counter: number, pages: number): Uint8Array {
  if (header.length < DB_HEADER_SIZE) throw new RangeError("short database header");
  const out = header.slice(0, DB_HEADER_SIZE);
  const dv = new DataView(out.buffer);
  out[18] = 1;
  out[19] = 1;
  dv.setUint32(CHANGE_COUNTER, counter >>> 0);
  dv.setUint32(PAGE_COUNT, pages >>> 0);
  dv.setUint32(VERSION_VALID_FOR, counter >>> 0);
  return out;
}
