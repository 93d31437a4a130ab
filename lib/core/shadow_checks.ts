/**
 * Continuity checks between SQLite's WAL and our shadow WAL, read with no risk to SQLite's
 * locks (this process never opens the database file or the `-shm` here; closing a
 * descriptor of the WAL is harmless, SQLite takes no POSIX locks on it).
 *
 * @module
 */

import { equalBytes } from "../os/bytes.ts";
import { readAtSync } from "../os/fs.ts";
import { decodeFrameHeader, FRAME_HEADER_SIZE, frameSize, WAL_HEADER_SIZE } from "../sqlite/wal.ts";
import type { ShadowState } from "./shadow_wal.ts";

/**
 * True when the WAL still has our shadow's header (a restart writes new
 * salts) and no frame of this incarnation starts where our shadow ends (new
 * frames carry the header's salts; after a restart they overwrite old
 * frames in place, so neither the file size nor its coarse mtime is a
 * reliable sign). Sync reads of the WAL, never of the database file: no
 * thread-pool round trip, and no risk to SQLite's locks.
 */
export function walUnchangedSince(walPath: string, shadow: ShadowState): boolean {
  let wal: Deno.FsFile;
  try {
    wal = Deno.openSync(walPath, { read: true });
  } catch {
    return false;
  }
  try {
    const header = new Uint8Array(WAL_HEADER_SIZE);
    if (
      readAtSync(wal, 0, header) !== WAL_HEADER_SIZE || !equalBytes(header, shadow.headerBytes)
    ) return false;
    const next = new Uint8Array(FRAME_HEADER_SIZE);
    if (readAtSync(wal, shadow.size, next) < FRAME_HEADER_SIZE) return true;
    const frame = decodeFrameHeader(next);
    return frame.salt1 !== shadow.header.salt1 || frame.salt2 !== shadow.header.salt2;
  } finally {
    wal.close();
  }
}

/** True when the shadow's last frame is still, byte for byte, in the real WAL (sync reads). */
export function lastFrameMatches(walPath: string, shadow: ShadowState, pageSize: number): boolean {
  const size = frameSize(pageSize);
  const at = shadow.size - size;
  const [a, b] = [new Uint8Array(size), new Uint8Array(size)];
  const read = (path: string, buf: Uint8Array) => {
    let f: Deno.FsFile;
    try {
      f = Deno.openSync(path, { read: true });
    } catch {
      return 0; // gone meanwhile: it does not match
    }
    try {
      return readAtSync(f, at, buf);
    } finally {
      f.close();
    }
  };
  return read(shadow.path, a) === size && read(walPath, b) === size && equalBytes(a, b);
}
