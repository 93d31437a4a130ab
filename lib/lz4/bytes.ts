/**
 * Little-endian integer access shared by the LZ4 modules.
 *
 * @module
 */

/** The 32-bit little-endian integer at `b[i..i+4)`, as a signed int32 (V8 keeps it unboxed). */
export function read32(b: Uint8Array, i: number): number {
  return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
}

/** Writes `v` as 32-bit little-endian at `b[i..i+4)`. */
export function write32(b: Uint8Array, i: number, v: number): void {
  b[i] = v;
  b[i + 1] = v >>> 8;
  b[i + 2] = v >>> 16;
  b[i + 3] = v >>> 24;
}

/** The bytes of `parts` joined into one new array (one part is returned as it is). */
export function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}
