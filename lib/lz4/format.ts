/**
 * The constants of the LZ4 frame format (v1.6) and the frame header Litestream v0.3.13 writes
 * (FLG 0x64, BD 0x70: independent blocks of at most 4 MiB, no block checksums, no content size,
 * a content checksum). Shared by the encoder and the parser.
 *
 * @module
 */

import { write32 } from "./bytes.ts";
import { xxh32 } from "./xxh32.ts";

export const FRAME_MAGIC = 0x184d2204;
/** Skippable frames use the 16 magics 0x184D2A50..0x184D2A5F. */
export const SKIPPABLE_MAGIC = 0x184d2a50;
export const SKIPPABLE_MASK = 0xfffffff0;
/** Skippable frames are consumed in steps of this size, so a huge one needs no huge buffer. */
export const SKIP_STEP = 64 << 10;
/** Block size field bit that marks a block stored uncompressed. */
export const UNCOMPRESSED = 0x80000000;
/** How far back a match in a linked block may reach into earlier blocks. */
export const WINDOW = 64 << 10;

export const FLG_VERSION_1 = 0x40;
export const FLG_INDEPENDENT = 0x20;
export const FLG_BLOCK_CHECKSUM = 0x10;
export const FLG_CONTENT_SIZE = 0x08;
export const FLG_CONTENT_CHECKSUM = 0x04;
export const FLG_RESERVED = 0x02;
export const FLG_DICT_ID = 0x01;
export const BD_RESERVED = 0x8f;

/** The block size code v0.3.13 writes: 7 = 4 MiB. */
export const WRITE_BLOCK_CODE = 7;

/** Largest decoded block for a BD block size code (4 = 64 KiB … 7 = 4 MiB). */
export function blockMaxSize(code: number): number {
  return 1 << (8 + 2 * code);
}

/** The header checksum byte HC: second byte of xxh32 over the descriptor (FLG up to HC). */
export function headerChecksum(descriptor: Uint8Array): number {
  return (xxh32(descriptor) >>> 8) & 0xff;
}

/** The 7 header bytes v0.3.13 writes: 04 22 4D 18 64 70 B9. */
export function frameHeader(): Uint8Array {
  const h = new Uint8Array(7);
  write32(h, 0, FRAME_MAGIC);
  h[4] = FLG_VERSION_1 | FLG_INDEPENDENT | FLG_CONTENT_CHECKSUM;
  h[5] = WRITE_BLOCK_CODE << 4;
  h[6] = headerChecksum(h.subarray(4, 6));
  return h;
}
