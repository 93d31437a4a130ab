/**
 * SQLite's rollback journal (`<db>-journal`), written before the follower changes the output so
 * that a follower killed in the middle of a batch never leaves readers a half-written state: the
 * journal is "hot" once no process holds the RESERVED lock, and SQLite then refuses read-only
 * readers (SQLITE_READONLY_ROLLBACK) or rolls it back for read-write ones; a restarted follower
 * rolls it back itself. Format: SQLite's file-format document, section "The Rollback Journal".
 * The follower also records, in the header's padding (which SQLite ignores), which change the
 * journal protects (see {@linkcode ChangeMark}). Encoding and decoding are pure.
 *
 * @module
 */

import { CorruptionError } from "../errors.ts";

/** The journal header's magic. */
const MAGIC = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
/** Sector size we declare: the header is padded to it. */
export const JOURNAL_SECTOR = 512;

/** The journal of database `db`. */
export function journalPath(db: string): string {
  return `${db}-journal`;
}

/** SQLite's record checksum: the nonce plus every 200th byte of the page, from the end. */
export function pageChecksum(nonce: number, page: Uint8Array): number {
  let sum = nonce >>> 0;
  for (let i = page.length - 200; i > 0; i -= 200) sum = (sum + page[i]) >>> 0;
  return sum;
}

/**
 * What a follower's journal says about its change: the machine's boot id when it was written and
 * the change counter the database header takes once every page of the change is written. A
 * follower that made a change visible and was killed before deleting the journal left a
 * database holding that counter; in the same boot (the page cache survived) the change is whole
 * and is kept instead of rolled back, so readers that saw it never see the older state again.
 */
export interface ChangeMark {
  boot: string;
  counter: number;
}

/** Where the mark sits in the header's padding: a tag, the counter, the boot id. */
const MARK_AT = 28;
const encoder = new TextEncoder();
const MARK_TAG = encoder.encode("lsfollow");
const BOOT_ID_LENGTH = 36;

/** One journalled page: its number and its content before the change. */
export interface JournalRecord {
  pgno: number;
  page: Uint8Array;
}

/** Bytes of a journal of `pages` records of `pageSize` bytes. */
export function journalSize(pages: number, pageSize: number): number {
  return JOURNAL_SECTOR + pages * (8 + pageSize);
}

/**
 * Encodes, into `out` (at least {@linkcode journalSize} bytes, reused across changes), the
 * journal of the pages `pgnos` for a database of `dbPages` pages before the change;
 * `readPage(pgno, into)` fills each page's current content straight into its record. Returns
 * the journal's bytes (a view of `out`).
 */
export function encodeJournal(
  out: Uint8Array,
  pgnos: readonly number[],
  readPage: (pgno: number, into: Uint8Array) => void,
  dbPages: number,
  pageSize: number,
  nonce: number,
  mark?: ChangeMark,
): Uint8Array {
  const recordSize = 8 + pageSize;
  const bytes = out.subarray(0, journalSize(pgnos.length, pageSize));
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  bytes.fill(0, 0, JOURNAL_SECTOR);
  bytes.set(MAGIC, 0);
  dv.setUint32(8, pgnos.length);
  dv.setUint32(12, nonce >>> 0);
  dv.setUint32(16, dbPages);
  dv.setUint32(20, JOURNAL_SECTOR);
  dv.setUint32(24, pageSize);
  if (mark && mark.boot.length === BOOT_ID_LENGTH) {
    bytes.set(MARK_TAG, MARK_AT);
    dv.setUint32(MARK_AT + 8, mark.counter >>> 0);
    bytes.set(encoder.encode(mark.boot), MARK_AT + 12);
  }
  let at = JOURNAL_SECTOR;
  for (const pgno of pgnos) {
    const page = bytes.subarray(at + 4, at + 4 + pageSize);
    dv.setUint32(at, pgno);
    readPage(pgno, page);
    dv.setUint32(at + 4 + pageSize, pageChecksum(nonce, page));
    at += recordSize;
  }
  return bytes;
}

/** A decoded journal: the database's size before the change and the pages to put back. */
export interface Journal {
  dbPages: number;
  pageSize: number;
  records: JournalRecord[];
  /** The follower's mark, when the journal has one. */
  mark?: ChangeMark;
}

/**
 * Decodes a journal; undefined when it is not hot (empty, or zeroed header). Records after the
 * first whose checksum fails are ignored, as SQLite does (they were never synced).
 */
export function decodeJournal(bytes: Uint8Array, name: string): Journal | undefined {
  if (bytes.length === 0 || bytes[0] === 0) return undefined;
  if (bytes.length < 28 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new CorruptionError(name, "not an SQLite rollback journal");
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nRec = dv.getUint32(8);
  const nonce = dv.getUint32(12);
  const dbPages = dv.getUint32(16);
  const sector = dv.getUint32(20);
  const pageSize = dv.getUint32(24);
  const records: JournalRecord[] = [];
  const recordSize = 8 + pageSize;
  for (let i = 0, at = sector; i < nRec && at + recordSize <= bytes.length; i++, at += recordSize) {
    const pgno = dv.getUint32(at);
    const page = bytes.subarray(at + 4, at + 4 + pageSize);
    if (dv.getUint32(at + 4 + pageSize) !== pageChecksum(nonce, page)) break;
    records.push({ pgno, page });
  }
  const journal: Journal = { dbPages, pageSize, records };
  const markEnd = MARK_AT + 12 + BOOT_ID_LENGTH;
  if (
    sector >= markEnd && bytes.length >= markEnd &&
    MARK_TAG.every((b, i) => bytes[MARK_AT + i] === b)
  ) {
    journal.mark = {
      counter: dv.getUint32(MARK_AT + 8),
      boot: new TextDecoder().decode(bytes.subarray(MARK_AT + 12, MARK_AT + 12 + BOOT_ID_LENGTH)),
    };
  }
  return journal;
}
