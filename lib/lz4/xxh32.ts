/**
 * xxHash32, the checksum of the LZ4 frame format (header, block and content checksums).
 *
 * The stripe loop, where the time goes, runs in WebAssembly (`xxh32_wasm.ts`): on this
 * project's machines 4.6–5.8 GB/s in place and 3.6–4.5 GB/s copied, at any alignment, where
 * the TypeScript loop it replaces ran at 1.4–1.7 GB/s, or 3.7–5 GB/s on 4-byte aligned data.
 * It reads the bytes where they are when they live in an array from {@linkcode hashableBytes}
 * (the LZ4 decoder's output areas); other bytes are copied into a small WebAssembly memory a
 * slice at a time first. The few bytes around the stripes and the final mixing stay in
 * TypeScript, in int32 arithmetic via `Math.imul` and `| 0`, which V8 keeps unboxed.
 *
 * @module
 */

import { read32 } from "./bytes.ts";
import { P1, P2, STRIPES_WASM } from "./xxh32_wasm.ts";

const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/**
 * Every WebAssembly memory holds the four accumulators at address 0 during a call, and its
 * bytes from `DATA` on: a cache line apart, and aligned for the 32-bit loads.
 */
const DATA = 64;
const PAGE = 65536;

/** The stripe loop bound to one WebAssembly memory. */
interface Stripes {
  /** Folds the whole stripes of memory `[p, end)` into the accumulators at 0; returns the end. */
  run: (acc: number, p: number, end: number) => number;
  /** The accumulators, a view of the memory's first 16 bytes. */
  lanes: Int32Array;
}

const stripesModule = new WebAssembly.Module(STRIPES_WASM);

/** The stripe loop of each memory handed out, by its buffer (memories never grow). */
const byBuffer = new WeakMap<ArrayBufferLike, Stripes>();

/** A WebAssembly memory of at least `DATA + size` bytes, that can never grow, with its loop. */
function boundMemory(size: number): { buffer: ArrayBuffer; stripes: Stripes } {
  const pages = Math.ceil((DATA + size) / PAGE);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  const instance = new WebAssembly.Instance(stripesModule, { x: { m: memory } });
  const stripes: Stripes = {
    run: instance.exports.s as Stripes["run"],
    lanes: new Int32Array(memory.buffer, 0, 4),
  };
  // Not shared (no `shared: true`): a plain ArrayBuffer.
  const buffer = memory.buffer as ArrayBuffer;
  byBuffer.set(buffer, stripes);
  return { buffer, stripes };
}

/**
 * A zeroed array of `size` bytes that {@linkcode Xxh32} hashes where it is, without copying:
 * the LZ4 decoder decodes blocks into these. It lives in a WebAssembly memory of its own (freed
 * with the array); it cannot be transferred (`postMessage`, a BYOB read into it). Where no such
 * memory can be had (V8 reserves gigabytes of address space for each; 3,000 live ones were fine
 * here) it is a plain array, hashed by copy.
 */
export function hashableBytes(size: number): Uint8Array<ArrayBuffer> {
  try {
    return new Uint8Array(boundMemory(size).buffer, DATA, size);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    return new Uint8Array(size);
  }
}

/** Where bytes from elsewhere are copied to be hashed, a slice (a multiple of 16) at a time. */
const SLICE = 32 << 10;
const scratch = boundMemory(SLICE);
const scratchBytes = new Uint8Array(scratch.buffer, DATA, SLICE);

/** Folds the whole stripes of `b[i..end)` into `acc`; returns the index after the last one. */
function stripes(acc: Int32Array, b: Uint8Array, i: number, end: number): number {
  const stop = i + ((end - i) & ~15);
  const home = byBuffer.get(b.buffer);
  const { run, lanes } = home ?? scratch.stripes;
  lanes.set(acc);
  if (home) {
    run(0, b.byteOffset + i, b.byteOffset + stop);
  } else {
    for (let k = i; k < stop; k += SLICE) {
      const n = Math.min(SLICE, stop - k);
      scratchBytes.set(b.subarray(k, k + n));
      run(0, DATA, DATA + n);
    }
  }
  acc.set(lanes);
  return stop;
}

/** Incremental xxHash32: {@linkcode Xxh32.update} adds bytes, {@linkcode Xxh32.digest} reads it. */
export class Xxh32 {
  readonly #seed: number;
  readonly #acc = new Int32Array(4);
  /** Bytes of a stripe not yet complete (always fewer than 16). */
  readonly #pending = new Uint8Array(16);
  #pendingLen = 0;
  #total = 0;

  /** Starts a hash with the given 32-bit `seed` (the LZ4 frame format uses 0). */
  constructor(seed = 0) {
    this.#seed = seed | 0;
    this.#acc.set([this.#seed + P1 + P2, this.#seed + P2, this.#seed, this.#seed - P1]);
  }

  /** Adds `data` to the hash; returns `this` so calls can be chained. */
  update(data: Uint8Array): this {
    const n = data.length;
    this.#total += n;
    let i = 0;
    if (this.#pendingLen > 0) {
      i = Math.min(16 - this.#pendingLen, n);
      this.#pending.set(data.subarray(0, i), this.#pendingLen);
      this.#pendingLen += i;
      if (this.#pendingLen < 16) return this;
      stripes(this.#acc, this.#pending, 0, 16);
      this.#pendingLen = 0;
    }
    i = stripes(this.#acc, data, i, n);
    this.#pending.set(data.subarray(i), 0);
    this.#pendingLen = n - i;
    return this;
  }

  /** The hash of everything added so far, as an unsigned 32-bit number; the state is unchanged. */
  digest(): number {
    const [v1, v2, v3, v4] = this.#acc;
    let h = this.#total >= 16
      ? (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0
      : (this.#seed + P5) | 0;
    // The format mixes in the length modulo 2^32; `| 0` takes exactly those low bits.
    h = (h + (this.#total | 0)) | 0;
    const b = this.#pending, n = this.#pendingLen;
    let p = 0;
    for (; p + 4 <= n; p += 4) h = Math.imul(rotl((h + Math.imul(read32(b, p), P3)) | 0, 17), P4);
    for (; p < n; p++) h = Math.imul(rotl((h + Math.imul(b[p], P5)) | 0, 11), P1);
    h = Math.imul(h ^ (h >>> 15), P2);
    h = Math.imul(h ^ (h >>> 13), P3);
    return (h ^ (h >>> 16)) >>> 0;
  }
}

/** xxHash32 of `data` with `seed` (default 0), as an unsigned 32-bit number. */
export function xxh32(data: Uint8Array, seed = 0): number {
  return new Xxh32(seed).update(data).digest();
}
