/**
 * xxHash32, the checksum of the LZ4 frame format (header, block and content checksums).
 *
 * Arithmetic stays in int32 via `Math.imul` and `| 0`, which V8 keeps unboxed; the result is
 * converted to an unsigned number only in {@linkcode Xxh32.digest}.
 *
 * @module
 */

import { read32 } from "./bytes.ts";

const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function round(acc: number, lane: number): number {
  return Math.imul(rotl((acc + Math.imul(lane, P2)) | 0, 13), P1);
}

/**
 * Folds every whole 16-byte stripe of `b[i..end)` into the four accumulators in `acc`;
 * returns the index after the last stripe consumed.
 */
function stripes(acc: Int32Array, b: Uint8Array, i: number, end: number): number {
  const count = (end - i) >>> 4;
  if (LITTLE_ENDIAN && count >= 64 && (b.byteOffset + i) % 4 === 0) {
    // Aligned: read each lane with one 32-bit load instead of four byte loads.
    return i + 16 * alignedStripes(acc, new Int32Array(b.buffer, b.byteOffset + i, 4 * count));
  }
  let v1 = acc[0], v2 = acc[1], v3 = acc[2], v4 = acc[3];
  for (const last = end - 16; i <= last; i += 16) {
    v1 = round(v1, read32(b, i));
    v2 = round(v2, read32(b, i + 4));
    v3 = round(v3, read32(b, i + 8));
    v4 = round(v4, read32(b, i + 12));
  }
  acc[0] = v1, acc[1] = v2, acc[2] = v3, acc[3] = v4;
  return i;
}

/** True where typed arrays use little-endian order (every platform Deno runs on, in practice). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** {@linkcode stripes} over whole stripes given as 32-bit lanes; returns the stripe count. */
function alignedStripes(acc: Int32Array, w: Int32Array): number {
  let v1 = acc[0], v2 = acc[1], v3 = acc[2], v4 = acc[3];
  const n = w.length;
  for (let j = 0; j < n; j += 4) {
    v1 = round(v1, w[j]);
    v2 = round(v2, w[j + 1]);
    v3 = round(v3, w[j + 2]);
    v4 = round(v4, w[j + 3]);
  }
  acc[0] = v1, acc[1] = v2, acc[2] = v3, acc[3] = v4;
  return n >>> 2;
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
