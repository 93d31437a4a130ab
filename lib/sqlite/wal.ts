/**
 * SQLite WAL file format: the 32-byte header, 24-byte frame headers and the
 * cumulative checksum, in the vocabulary of SQLite's file-format document.
 * Pure functions over bytes; no I/O.
 *
 * @module
 */

/** Size of the WAL header in bytes. */
export const WAL_HEADER_SIZE = 32;
/** Size of a frame header in bytes. */
export const FRAME_HEADER_SIZE = 24;

/** Magic with checksum words read little-endian. */
export const WAL_MAGIC_LE = 0x377f0682;
/** Magic with checksum words read big-endian. */
export const WAL_MAGIC_BE = 0x377f0683;

/** A running WAL checksum: the pair (s0, s1). */
export type Checksum = readonly [number, number];

/** The parsed WAL header. */
export interface WalHeader {
  magic: number;
  /** True when checksum words are big-endian (magic 0x377f0683). */
  bigEndian: boolean;
  version: number;
  pageSize: number;
  checkpointSeq: number;
  salt1: number;
  salt2: number;
  /** The checksum stored in the header (over bytes 0..23). */
  checksum: Checksum;
}

/** The parsed header of one frame. */
export interface FrameHeader {
  pgno: number;
  /** Database size in pages after this commit; 0 for a non-commit frame. */
  commitSize: number;
  salt1: number;
  salt2: number;
  checksum: Checksum;
}

/** Why bytes are not a valid WAL header; `undefined` when they are. */
export type WalHeaderProblem = string;

/**
 * Continues a WAL checksum over `data` (length a multiple of 8), reading
 * 32-bit words in the byte order chosen by the header magic.
 */
export function walChecksum(
  data: Uint8Array,
  bigEndian: boolean,
  seed: Checksum = [0, 0],
): Checksum {
  if (data.length % 8 !== 0) {
    throw new RangeError("WAL checksum input must be a multiple of 8 bytes");
  }
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let s0 = seed[0] | 0;
  let s1 = seed[1] | 0;
  const le = !bigEndian;
  for (let i = 0; i < data.length; i += 8) {
    s0 = (s0 + dv.getUint32(i, le) + s1) | 0;
    s1 = (s1 + dv.getUint32(i + 4, le) + s0) | 0;
  }
  return [s0 >>> 0, s1 >>> 0];
}

/** Decodes a WAL header, returning a problem string instead of throwing for bad input. */
export function decodeWalHeader(b: Uint8Array): WalHeader | WalHeaderProblem {
  if (b.length < WAL_HEADER_SIZE) return "short WAL header";
  const dv = new DataView(b.buffer, b.byteOffset, WAL_HEADER_SIZE);
  const magic = dv.getUint32(0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) return "invalid wal header magic";
  const bigEndian = magic === WAL_MAGIC_BE;
  const checksum: Checksum = [dv.getUint32(24), dv.getUint32(28)];
  const computed = walChecksum(b.subarray(0, 24), bigEndian);
  if (computed[0] !== checksum[0] || computed[1] !== checksum[1]) {
    return "invalid wal header checksum";
  }
  const pageSize = dv.getUint32(8);
  if (!isValidPageSize(pageSize)) return `invalid page size ${pageSize} in wal header`;
  return {
    magic,
    bigEndian,
    version: dv.getUint32(4),
    pageSize,
    checkpointSeq: dv.getUint32(12),
    salt1: dv.getUint32(16),
    salt2: dv.getUint32(20),
    checksum,
  };
}

/** Decodes a 24-byte frame header. */
export function decodeFrameHeader(b: Uint8Array): FrameHeader {
  const dv = new DataView(b.buffer, b.byteOffset, FRAME_HEADER_SIZE);
  return {
    pgno: dv.getUint32(0),
    commitSize: dv.getUint32(4),
    salt1: dv.getUint32(8),
    salt2: dv.getUint32(12),
    checksum: [dv.getUint32(16), dv.getUint32(20)],
  };
}

/** Size of one frame (header + page) for a page size. */
export function frameSize(pageSize: number): number {
  return FRAME_HEADER_SIZE + pageSize;
}

/** Rounds a WAL byte size down to a whole-frame boundary (v0.3.13's `frameAlign`). */
export function frameAlign(offset: number, pageSize: number): number {
  if (offset < WAL_HEADER_SIZE) return 0;
  const fs = frameSize(pageSize);
  return WAL_HEADER_SIZE + Math.floor((offset - WAL_HEADER_SIZE) / fs) * fs;
}

/** True for the page sizes SQLite allows: powers of two from 512 to 65536. */
export function isValidPageSize(n: number): boolean {
  return n >= 512 && n <= 65536 && (n & (n - 1)) === 0;
}

/**
 * Checks one frame against the header's salts and the running checksum.
 * Returns the frame's checksum (the next seed) when valid, or a problem string.
 */
export function verifyFrame(
  frame: Uint8Array,
  header: WalHeader,
  seed: Checksum,
): { header: FrameHeader; checksum: Checksum } | string {
  const fh = decodeFrameHeader(frame);
  if (fh.salt1 !== header.salt1 || fh.salt2 !== header.salt2) return "frame salt mismatch";
  let sum = walChecksum(frame.subarray(0, 8), header.bigEndian, seed);
  sum = walChecksum(
    frame.subarray(FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + header.pageSize),
    header.bigEndian,
    sum,
  );
  if (sum[0] !== fh.checksum[0] || sum[1] !== fh.checksum[1]) return "frame checksum mismatch";
  if (fh.pgno === 0) return "frame with page number 0";
  return { header: fh, checksum: sum };
}
