/**
 * The 100-byte SQLite database header: enough of it to recognise a database
 * file and read its page size and page count. Pure functions over bytes.
 *
 * @module
 */

import { isValidPageSize } from "./wal.ts";

/** "SQLite format 3\0": the first 16 bytes of every database file. */
const MAGIC = new TextEncoder().encode("SQLite format 3\0");

/** Size of the database header in bytes. */
export const DB_HEADER_SIZE = 100;

/** The fields of the database header we use. */
export interface DbHeader {
  pageSize: number;
  /** File format write version: 1 = rollback journal, 2 = WAL. */
  writeVersion: number;
  /** File format read version: 1 = rollback journal, 2 = WAL. */
  readVersion: number;
  /** "In-header database size" in pages (valid when the version-valid-for number matches). */
  pageCount: number;
  changeCounter: number;
}

/** Decodes a database header, or returns why the bytes are not an SQLite database. */
export function decodeDbHeader(b: Uint8Array): DbHeader | string {
  if (b.length < DB_HEADER_SIZE) return "not an SQLite database (file shorter than its header)";
  for (let i = 0; i < MAGIC.length; i++) {
    if (b[i] !== MAGIC[i]) return "not an SQLite database (bad header magic)";
  }
  const dv = new DataView(b.buffer, b.byteOffset, DB_HEADER_SIZE);
  const raw = dv.getUint16(16);
  // The value 1 encodes a page size of 65536, which does not fit in 16 bits.
  const pageSize = raw === 1 ? 65536 : raw;
  if (!isValidPageSize(pageSize)) return `not an SQLite database (invalid page size ${raw})`;
  return {
    pageSize,
    writeVersion: b[18],
    readVersion: b[19],
    changeCounter: dv.getUint32(24),
    pageCount: dv.getUint32(28),
  };
}
