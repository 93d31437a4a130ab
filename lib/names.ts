/**
 * Replica object names of the Litestream v0.3 layout, parsed strictly and
 * formatted exactly (lowercase, zero-padded `%08x`, 16-hex generations).
 *
 * @module
 */

/** A position in a generation's WAL history: which WAL incarnation (index) and byte offset. */
export interface Pos {
  /** 16 lowercase hex characters. */
  generation: string;
  /** Litestream's WAL incarnation counter within the generation. */
  index: number;
  /** Byte offset within that index's WAL (0 = start of the WAL header). */
  offset: number;
}

/** Highest WAL index v0.3.13 allows; reaching it forces a new generation. */
export const MAX_INDEX = 0x7fffffff;

const GENERATION_RE = /^[0-9a-f]{16}$/;
const SNAPSHOT_RE = /^([0-9a-f]{8})\.snapshot\.lz4$/;
const SEGMENT_RE = /^([0-9a-f]{8})_([0-9a-f]{8})\.wal\.lz4$/;

/** True when `name` is a valid generation name: exactly 16 lowercase hex characters. */
export function isGeneration(name: string): boolean {
  return GENERATION_RE.test(name);
}

/** Formats a 32-bit number as 8 lowercase hex digits, as Go's `%08x`. */
export function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`cannot name ${n}: outside 0..0xffffffff`);
  }
  return n.toString(16).padStart(8, "0");
}

/** Snapshot object name for a WAL index, e.g. `0000000a.snapshot.lz4`. */
export function snapshotName(index: number): string {
  return `${hex8(index)}.snapshot.lz4`;
}

/** WAL segment object name, e.g. `00000000_00004080.wal.lz4`. */
export function walSegmentName(index: number, offset: number): string {
  return `${hex8(index)}_${hex8(offset)}.wal.lz4`;
}

/** Parses a snapshot object name into its index, or `undefined` for a foreign name. */
export function parseSnapshotName(name: string): number | undefined {
  const m = SNAPSHOT_RE.exec(name);
  return m ? parseInt(m[1], 16) : undefined;
}

/** Parses a WAL segment object name into index and offset, or `undefined` for a foreign name. */
export function parseWalSegmentName(name: string): { index: number; offset: number } | undefined {
  const m = SEGMENT_RE.exec(name);
  return m ? { index: parseInt(m[1], 16), offset: parseInt(m[2], 16) } : undefined;
}

/** Formats a position as v0.3.13 logs it: `<generation>/<index %08x>:<offset>`, or "" for none. */
export function formatPos(pos: Pos | undefined): string {
  if (!pos || !pos.generation) return "";
  return `${pos.generation}/${hex8(pos.index)}:${pos.offset}`;
}

/** Creates a new random generation name (8 random bytes as lowercase hex). */
export function newGeneration(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Orders positions by (index, offset); generations are compared only for equality elsewhere. */
export function comparePos(
  a: { index: number; offset: number },
  b: { index: number; offset: number },
): number {
  return a.index - b.index || a.offset - b.offset;
}
