/**
 * Portable LZ4 block encoder, used where the WASM encoder cannot be loaded (see `block.ts`).
 *
 * @module
 */

import { read32 } from "./bytes.ts";

/** Shortest match the format can express. */
export const MIN_MATCH = 4;

/** Matches may not start in the last 12 bytes of a block (format rule, keeps decoders simple). */
const MF_LIMIT = 12;
/** The last 5 bytes of a block are always literals. */
const LAST_LITERALS = 5;
const MAX_OFFSET = 0xffff;
const HASH_LOG = 16;
/** The search stride grows every 2^SKIP_TRIGGER bytes without a match: skims random data. */
const SKIP_TRIGGER = 6;

/** Positions of recent 4-byte sequences by hash; reused across calls (they never overlap). */
const table = new Int32Array(1 << HASH_LOG);

function hash(seq: number): number {
  return Math.imul(seq, 0x9e3779b1) >>> (32 - HASH_LOG);
}

/** Writes the extra length bytes of a length that did not fit in its 4-bit token field. */
function writeLength(dst: Uint8Array, d: number, rest: number): number {
  for (; rest >= 255; rest -= 255) dst[d++] = 255;
  dst[d++] = rest;
  return d;
}

/** Writes one sequence: literals `src[from..to)`, then a match (`offset` 0: none, the last one). */
function writeSequence(
  dst: Uint8Array,
  d: number,
  src: Uint8Array,
  from: number,
  to: number,
  offset: number,
  matchLen: number,
): number {
  const tokenAt = d++;
  const lit = to - from;
  let token = Math.min(lit, 15) << 4;
  if (lit >= 15) d = writeLength(dst, d, lit - 15);
  // Short runs: a plain loop beats creating a subarray for `set`.
  if (lit > 64) dst.set(src.subarray(from, to), d);
  else for (let k = 0; k < lit; k++) dst[d + k] = src[from + k];
  d += lit;
  if (offset > 0) {
    dst[d++] = offset & 0xff;
    dst[d++] = offset >>> 8;
    const m = matchLen - MIN_MATCH;
    token |= Math.min(m, 15);
    if (m >= 15) d = writeLength(dst, d, m - 15);
  }
  dst[tokenAt] = token;
  return d;
}

/** Emits the sequences of `src` into `dst` (large enough), returning the length written. */
function encodeSequences(src: Uint8Array, dst: Uint8Array): number {
  const n = src.length;
  const lastMatchStart = n - MF_LIMIT;
  const matchEndLimit = n - LAST_LITERALS;
  let d = 0;
  let anchor = 0;
  let i = 0;
  table.fill(-1);
  while (i <= lastMatchStart) {
    const seq = read32(src, i);
    const h = hash(seq);
    let ref = table[h];
    table[h] = i;
    if (ref < 0 || i - ref > MAX_OFFSET || read32(src, ref) !== seq) {
      // The stride grows with the distance since the last match, like LZ4's acceleration.
      i += 1 + ((i - anchor) >>> SKIP_TRIGGER);
      continue;
    }
    while (i > anchor && ref > 0 && src[i - 1] === src[ref - 1]) i--, ref--;
    let end = i + MIN_MATCH;
    for (let r = ref + MIN_MATCH; end < matchEndLimit && src[end] === src[r]; r++) end++;
    d = writeSequence(dst, d, src, anchor, i, i - ref, end - i);
    anchor = i = end;
    // Index a position inside the match so the next search can start from a nearby candidate.
    if (i - 2 <= lastMatchStart) table[hash(read32(src, i - 2))] = i - 2;
  }
  return writeSequence(dst, d, src, anchor, n, 0, 0);
}

/**
 * Compresses `src` into one raw LZ4 block (no size prefix) in portable TypeScript, with the
 * greedy single-probe search of LZ4's fast mode. The result may be longer than `src` for
 * incompressible input.
 */
export function encodeBlock(src: Uint8Array): Uint8Array {
  const dst = new Uint8Array(encodeBound(src.length));
  return dst.slice(0, encodeSequences(src, dst));
}

/** Largest block {@linkcode encodeBlock} can produce for `n` input bytes. */
function encodeBound(n: number): number {
  return n + Math.ceil(n / 255) + 16;
}

/** Scratch area of {@linkcode encodeBlockInto} when the caller's room is below the bound. */
let spare = new Uint8Array(0);

/**
 * {@linkcode encodeBlock} into `dst` from index `at`: returns the block's length, or -1 (and
 * `dst` holds garbage from `at` on) when it is longer than `max` bytes.
 */
export function encodeBlockInto(src: Uint8Array, dst: Uint8Array, at: number, max: number): number {
  const bound = encodeBound(src.length);
  if (dst.length - at >= bound) {
    const n = encodeSequences(src, dst.subarray(at));
    return n <= max ? n : -1;
  }
  if (spare.length < bound) spare = new Uint8Array(bound);
  const n = encodeSequences(src, spare);
  if (n > max || n > dst.length - at) return -1;
  dst.set(spare.subarray(0, n), at);
  return n;
}
