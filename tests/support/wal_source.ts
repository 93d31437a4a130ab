/**
 * Real SQLite WAL material for tests: a database in WAL mode driven through
 * `node:sqlite` in-process, so its WAL can be copied while the connection
 * keeps it (no checkpoint on close until we ask).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { decodeFrameHeader, FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from "../../lib/sqlite/wal.ts";

/** A database with auto-checkpoint off whose WAL incarnations can be captured. */
export class WalSource implements Disposable {
  readonly db: DatabaseSync;

  /** Opens (creating) `dir/name` in WAL mode with the given page size. */
  constructor(readonly dir: string, readonly pageSize = 4096, name = "src.db") {
    this.path = join(dir, name);
    this.db = new DatabaseSync(this.path);
    this.db.exec(
      `PRAGMA page_size=${pageSize}; PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;`,
    );
    this.db.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)");
  }
  readonly path: string;

  /** Checkpoints everything into the database file and empties the WAL; returns the file's bytes. */
  checkpoint(): Uint8Array {
    this.db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    return Deno.readFileSync(this.path);
  }

  /** The current WAL file's bytes. */
  wal(): Uint8Array {
    try {
      return Deno.readFileSync(`${this.path}-wal`);
    } catch {
      return new Uint8Array(0);
    }
  }

  /** Runs one transaction of SQL. */
  tx(sql: string): void {
    this.db.exec(`BEGIN; ${sql}; COMMIT;`);
  }

  [Symbol.dispose](): void {
    this.db.close();
  }
}

/** Splits WAL bytes into segments ending on commit frames: [offset, bytes][] (the first includes the header). */
export function splitAtCommits(
  wal: Uint8Array,
  pageSize: number,
  every = 1,
): [number, Uint8Array][] {
  const size = FRAME_HEADER_SIZE + pageSize;
  const out: [number, Uint8Array][] = [];
  let start = 0;
  let commits = 0;
  let lastCommitEnd = 0;
  for (let off = WAL_HEADER_SIZE; off + size <= wal.length; off += size) {
    if (decodeFrameHeader(wal.subarray(off, off + FRAME_HEADER_SIZE)).commitSize === 0) continue;
    lastCommitEnd = off + size;
    if (++commits % every !== 0) continue;
    out.push([start, wal.slice(start, lastCommitEnd)]);
    start = lastCommitEnd;
  }
  if (lastCommitEnd > start) out.push([start, wal.slice(start, lastCommitEnd)]);
  return out;
}

/** Deterministic pseudo-random bytes for row payloads. */
export function payload(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
