/**
 * The raw LZ4 block format: a sequence of (token, literals, offset, match length) records.
 *
 * Codec choice, measured warm on 4 MiB blocks (2 cores): on SQLite pages lz4-wasm-nodejs
 * compresses at ~700 MB/s against ~160-200 MB/s for our TypeScript encoder, so it compresses.
 * Its decompressor cannot serve frames: it demands the exact decoded size up front (a larger
 * size prefix is an error), which a frame block does not carry, and it cannot take the
 * dictionary that linked blocks need. Our TypeScript decoder runs at ~800 MB/s on SQLite pages
 * (several GB/s on half-random data) and checks every offset and length. It keeps one
 * reusable output area of the largest block seen (at most 4 MiB + 64 KiB).
 *
 * @module
 */

import { encodeBlock, MIN_MATCH } from "./block_encode.ts";

/** A block that does not follow the LZ4 block format, or decodes to more than allowed. */
export class BlockFormatError extends Error {}

/**
 * lz4-wasm-nodejs reads its `.wasm` with `node:fs` when imported, which needs read access to
 * Deno's npm cache. Where that fails (narrow `--allow-read`, a host without the package files
 * or synchronous fs) we fall back to the portable encoder instead of making every importer of
 * this module fail; {@linkcode blockCompressor} tells which one is in use.
 */
const wasm = await import("lz4-wasm-nodejs").catch(() => undefined);

/** Which encoder {@linkcode compressBlock} uses: the fast WASM one or the portable fallback. */
export const blockCompressor: "lz4-wasm-nodejs" | "portable" = wasm
  ? "lz4-wasm-nodejs"
  : "portable";

/**
 * Compresses `src` into one raw LZ4 block (no size prefix). The result may be longer than
 * `src` for incompressible input; the caller then stores the block uncompressed.
 */
export function compressBlock(src: Uint8Array): Uint8Array {
  // The WASM API prefixes the block with its decoded size (4 bytes, little-endian).
  return wasm ? wasm.compress(src).subarray(4) : encodeBlock(src);
}

/** Reusable output area: `dict` then up to `maxOut` decoded bytes; grown on demand. */
let scratch = new Uint8Array(0);

/**
 * Decodes the raw LZ4 block `src` into at most `maxOut` bytes. Matches may reach back into
 * `dict` (the end of the previous block, for linked-block frames). Throws
 * {@linkcode BlockFormatError} on malformed input or output longer than `maxOut`.
 */
export function decompressBlock(
  src: Uint8Array,
  maxOut: number,
  dict: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const start = dict.length;
  const limit = start + maxOut;
  if (scratch.length < limit) scratch = new Uint8Array(limit);
  const dst = scratch;
  dst.set(dict, 0);
  const n = src.length;
  let s = 0;
  let d = start;
  for (;;) {
    if (s >= n) throw new BlockFormatError("block ends before its last sequence");
    const token = src[s++];
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (s >= n) throw new BlockFormatError("block ends inside a literal length");
        lit += b = src[s++];
      } while (b === 255);
    }
    if (s + lit > n) throw new BlockFormatError("literals run past the end of the block");
    if (d + lit > limit) throw new BlockFormatError(`block decodes to more than ${maxOut} bytes`);
    // Short runs: a plain loop beats creating a subarray for `set`.
    if (lit > 64) dst.set(src.subarray(s, s + lit), d);
    else for (let k = 0; k < lit; k++) dst[d + k] = src[s + k];
    s += lit;
    d += lit;
    if (s === n) break;
    if (s + 2 > n) throw new BlockFormatError("block ends inside a match offset");
    const offset = src[s] | (src[s + 1] << 8);
    s += 2;
    if (offset === 0 || offset > d) throw new BlockFormatError("match offset out of range");
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (s >= n) throw new BlockFormatError("block ends inside a match length");
        len += b = src[s++];
      } while (b === 255);
    }
    len += MIN_MATCH;
    if (d + len > limit) throw new BlockFormatError(`block decodes to more than ${maxOut} bytes`);
    const from = d - offset;
    if (len <= 32) {
      // Forward byte copy also reproduces overlapping matches (offset < len) correctly.
      for (let k = 0; k < len; k++) dst[d + k] = dst[from + k];
      d += len;
    } else {
      // Copy the periodic run [from, d) onto itself; the copied span doubles each pass.
      for (const end = d + len; d < end;) {
        const c = Math.min(d - from, end - d);
        dst.copyWithin(d, from, from + c);
        d += c;
      }
    }
  }
  return dst.slice(start, d);
}
