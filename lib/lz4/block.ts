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

import { encodeBlock, encodeBlockInto, MIN_MATCH } from "./block_encode.ts";
import { requireSync } from "../os/require.ts";
import { importLazily } from "../os/lazy_import.ts";

/** A block that does not follow the LZ4 block format, or decodes to more than allowed. */
export class BlockFormatError extends Error {}

type Wasm = typeof import("lz4-wasm-nodejs");

/**
 * lz4-wasm-nodejs is loaded on first use, not when this module is imported: a restore never
 * compresses, and loading it (with Deno's Node compatibility layer) costs several MB of memory.
 * It reads its `.wasm` with `node:fs` when loaded, which needs read access to Deno's npm cache.
 * Where that fails (narrow `--allow-read`, a host without the package files or synchronous fs)
 * we fall back to the portable encoder instead of failing; {@linkcode blockCompressor} tells
 * which one is in use.
 */
let wasm: Wasm | null | undefined;

/**
 * Which encoder {@linkcode compressBlock} uses: the fast WASM one or the portable fallback, or
 * `undefined` until {@linkcode initCompressor} ran (or the first block was compressed).
 */
export let blockCompressor: "lz4-wasm-nodejs" | "portable" | undefined;

function setWasm(module: Wasm | null): "lz4-wasm-nodejs" | "portable" {
  wasm ??= module;
  return blockCompressor = wasm ? "lz4-wasm-nodejs" : "portable";
}

/**
 * Loads the WASM encoder (once) and returns the encoder {@linkcode compressBlock} will use.
 * Writers await it before compressing; {@linkcode compressBlock} also loads it synchronously
 * when nothing did.
 */
export async function initCompressor(): Promise<"lz4-wasm-nodejs" | "portable"> {
  if (wasm !== undefined) return setWasm(wasm);
  return setWasm(await importLazily<Wasm>("lz4-wasm-nodejs").catch(() => null));
}

/** Loads the WASM encoder synchronously (it is a CommonJS package), or marks it unavailable. */
function loadWasmSync(): void {
  try {
    setWasm(requireSync("lz4-wasm-nodejs") as Wasm);
  } catch {
    setWasm(null);
  }
}

/**
 * Compresses `src` into one raw LZ4 block (no size prefix). The result may be longer than
 * `src` for incompressible input; the caller then stores the block uncompressed.
 */
export function compressBlock(src: Uint8Array): Uint8Array {
  if (wasm === undefined) loadWasmSync();
  // The WASM API prefixes the block with its decoded size (4 bytes, little-endian).
  return wasm ? wasm.compress(src).subarray(4) : encodeBlock(src);
}

/** The raw exports of lz4-wasm-nodejs's module (wasm-bindgen ABI). */
interface WasmExports {
  memory: WebAssembly.Memory;
  compress(retptr: number, ptr: number, len: number): void;
  __wbindgen_add_to_stack_pointer(delta: number): number;
  __wbindgen_malloc(size: number): number;
  __wbindgen_free(ptr: number, size: number): void;
}

/**
 * {@linkcode compressBlock} into `dst` from index `at`, without allocating: returns the
 * block's length, or -1 when it would be longer than `max` bytes (the caller then stores the
 * block uncompressed; `dst` from `at` on may hold garbage). With the WASM encoder this calls
 * its raw export and copies the result straight out of WASM memory, where `compressBlock`
 * makes a copy of it first.
 */
export function compressBlockInto(
  src: Uint8Array,
  dst: Uint8Array,
  at: number,
  max: number,
): number {
  if (wasm === undefined) loadWasmSync();
  if (!wasm) return encodeBlockInto(src, dst, at, max);
  const w = (wasm as unknown as { __wasm: WasmExports }).__wasm;
  // The same calls as the package's own `compress`, minus its `.slice()` of the result.
  const retptr = w.__wbindgen_add_to_stack_pointer(-16);
  try {
    const ptr = w.__wbindgen_malloc(src.length);
    new Uint8Array(w.memory.buffer).set(src, ptr); // the callee frees the input
    w.compress(retptr, ptr, src.length);
    const ret = new Int32Array(w.memory.buffer, retptr, 2);
    const out = ret[0];
    const len = ret[1];
    // The result starts with the decoded size (4 bytes), which a frame block does not carry.
    const n = len - 4;
    const fits = n <= max && n <= dst.length - at;
    if (fits) dst.set(new Uint8Array(w.memory.buffer, out + 4, n), at);
    w.__wbindgen_free(out, len);
    return fits ? n : -1;
  } finally {
    w.__wbindgen_add_to_stack_pointer(16);
  }
}

/** Reusable output area of {@linkcode decompressBlock}: `dict` then up to `maxOut` decoded bytes. */
let scratch = new Uint8Array(0);

/**
 * Decodes the raw LZ4 block `src` into at most `maxOut` bytes and returns a copy. Matches may
 * reach back into `dict` (the end of the previous block, for linked-block frames). Throws
 * {@linkcode BlockFormatError} on malformed input or output longer than `maxOut`.
 */
export function decompressBlock(
  src: Uint8Array,
  maxOut: number,
  dict: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const start = dict.length;
  if (scratch.length < start + maxOut) scratch = new Uint8Array(start + maxOut);
  scratch.set(dict, 0);
  return scratch.slice(start, decompressBlockInto(src, scratch, start, maxOut));
}

/**
 * Decodes the raw LZ4 block `src` into `dst` from index `start` on, writing at most `maxOut`
 * bytes (`dst.length` must be at least `start + maxOut`), and returns the index after the last
 * decoded byte. Matches may reach back into `dst[0..start)`, the dictionary. Throws
 * {@linkcode BlockFormatError} on malformed input or output longer than `maxOut`.
 */
export function decompressBlockInto(
  src: Uint8Array,
  dst: Uint8Array,
  start: number,
  maxOut: number,
): number {
  const limit = start + maxOut;
  if (dst.length < limit) throw new RangeError("output buffer too small for the block");
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
  return d;
}
