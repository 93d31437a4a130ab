/**
 * LZ4 as Litestream stores it: every snapshot and WAL segment object is one LZ4 frame (v1.6).
 * The writer produces exactly v0.3.13's frames; the readers accept any valid frame, like
 * `lz4 -d`, and hold at most a few blocks in memory whatever the object size.
 *
 * Reading order: `format.ts` (constants and the header v0.3.13 writes), `encode.ts` (the
 * writer), `parse.ts` (one parser for every reader), `decode.ts` (the readers), `block.ts`
 * (block compression through WASM, with a pure-TypeScript fallback) and `xxh32.ts` (its inner
 * loop in WebAssembly from `xxh32_wasm.ts`).
 *
 * @module
 */

export { compressFrame, encodeFrameViews, lz4FrameEncoder } from "./encode.ts";
export {
  decodeFrameBlocks,
  decodeFrameStream,
  decompressFrame,
  lentFrameBlocks,
  lz4FrameDecoder,
  releaseDecodeBuffers,
} from "./decode.ts";
