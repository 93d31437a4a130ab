/**
 * The LZ4 frame writer: produces exactly the frames Litestream v0.3.13 writes, holding at most
 * one 4 MiB block in memory whatever the input size.
 *
 * @module
 */

import { compressBlock, compressBlockInto, initCompressor } from "./block.ts";
import { concat, write32 } from "./bytes.ts";
import { Xxh32 } from "./xxh32.ts";
import { blockMaxSize, frameHeader, UNCOMPRESSED, WRITE_BLOCK_CODE } from "./format.ts";

/** Turns bytes written in any chunking into one frame, handing each piece to `emit`. */
class FrameWriter {
  readonly #emit: (piece: Uint8Array) => void;
  readonly #hash = new Xxh32();
  readonly #blockSize = blockMaxSize(WRITE_BLOCK_CODE);
  /** Input not yet in a block; grows up to one block, so small objects stay small. */
  #pending = new Uint8Array(0);
  #pendingLen = 0;

  constructor(emit: (piece: Uint8Array) => void) {
    this.#emit = emit;
    emit(frameHeader());
  }

  write(data: Uint8Array): void {
    for (let i = 0; i < data.length;) {
      const room = this.#blockSize - this.#pendingLen;
      if (this.#pendingLen === 0 && data.length - i >= room) {
        // A whole block is already at hand: encode it in place instead of copying it first.
        this.#block(data.subarray(i, i + room));
        i += room;
        continue;
      }
      const n = Math.min(room, data.length - i);
      this.#reserve(this.#pendingLen + n);
      this.#pending.set(data.subarray(i, i + n), this.#pendingLen);
      this.#pendingLen += n;
      i += n;
      if (this.#pendingLen === this.#blockSize) this.#flushPending();
    }
  }

  end(): void {
    this.#flushPending();
    const trailer = new Uint8Array(8); // end mark (0), then the content checksum
    write32(trailer, 4, this.#hash.digest());
    this.#emit(trailer);
  }

  #reserve(size: number): void {
    if (size <= this.#pending.length) return;
    const grown = new Uint8Array(
      Math.min(this.#blockSize, Math.max(size, 2 * this.#pending.length)),
    );
    grown.set(this.#pending.subarray(0, this.#pendingLen));
    this.#pending = grown;
  }

  #flushPending(): void {
    // Never emit an empty block: a zero size field is the end mark.
    if (this.#pendingLen > 0) this.#block(this.#pending.subarray(0, this.#pendingLen));
    this.#pendingLen = 0;
  }

  #block(raw: Uint8Array): void {
    this.#hash.update(raw);
    const packed = compressBlock(raw);
    const shrank = packed.length < raw.length;
    const size = new Uint8Array(4);
    write32(size, 0, shrank ? packed.length : raw.length | UNCOMPRESSED);
    this.#emit(size);
    // `raw` may be our reusable buffer or the caller's: hand out a copy.
    this.#emit(shrank ? packed : raw.slice());
  }
}

/**
 * A stream that LZ4-compresses its input into exactly one frame in v0.3.13's format:
 * `04 22 4D 18 64 70 B9`, independent blocks of at most 4 MiB (stored uncompressed when they
 * do not shrink), end mark, xxh32 content checksum.
 */
export function lz4FrameEncoder(): TransformStream<Uint8Array, Uint8Array> {
  let writer: FrameWriter;
  return new TransformStream({
    async start(controller) {
      await initCompressor();
      writer = new FrameWriter((piece) => controller.enqueue(piece));
    },
    transform(chunk) {
      writer.write(chunk);
    },
    flush() {
      writer.end();
    },
  });
}

/** {@linkcode lz4FrameEncoder} for bytes already in memory: returns the whole frame. */
export function compressFrame(data: Uint8Array): Uint8Array {
  const pieces: Uint8Array[] = [];
  const writer = new FrameWriter((piece) => pieces.push(piece));
  writer.write(data);
  writer.end();
  return concat(pieces);
}

/** Work areas of finished {@linkcode encodeFrameViews} runs, reused by the next ones. */
const encoderPool: { pending: Uint8Array; out: Uint8Array }[] = [];

/** Header, one block's size word, the largest block and the trailer. */
const FRAME_OUT_MAX = 7 + 4 + (1 << (8 + 2 * WRITE_BLOCK_CODE)) + 8;

/**
 * Encodes the bytes of `input` into the same single frame as {@linkcode lz4FrameEncoder}
 * (byte for byte), with a fixed amount of memory and no allocation per block: yields the frame
 * in pieces (the first block with the header, then one block each, the last one with the end
 * mark and content checksum; a frame of at most one block comes as one piece). Each piece is
 * a view of a reused area, valid only until the generator is resumed. Input chunks are lent
 * the same way: each needs to stay valid only until the next is asked for, and a chunk of
 * exactly one block (4 MiB) is compressed where it is, without being copied.
 */
export async function* encodeFrameViews(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncGenerator<Uint8Array, void, undefined> {
  await initCompressor();
  const blockSize = blockMaxSize(WRITE_BLOCK_CODE);
  const hash = new Xxh32();
  const work = encoderPool.pop() ?? { pending: new Uint8Array(0), out: new Uint8Array(0) };
  let pendingLen = 0;
  let outLen = 0;
  /** Whether `out` holds a block (not just the header). */
  let holding = false;
  const reserveOut = (size: number) => {
    if (size <= work.out.length) return;
    const grown = new Uint8Array(Math.min(FRAME_OUT_MAX, Math.max(size, 2 * work.out.length)));
    grown.set(work.out.subarray(0, outLen));
    work.out = grown;
  };
  /** Appends one block to `out` (compressed, or stored when it does not shrink). */
  const block = (raw: Uint8Array) => {
    hash.update(raw);
    reserveOut(outLen + 4 + raw.length + 8);
    const n = compressBlockInto(raw, work.out, outLen + 4, raw.length - 1);
    if (n >= 0) {
      write32(work.out, outLen, n);
      outLen += 4 + n;
    } else {
      write32(work.out, outLen, raw.length | UNCOMPRESSED);
      work.out.set(raw, outLen + 4);
      outLen += 4 + raw.length;
    }
    holding = true;
  };
  try {
    reserveOut(7);
    work.out.set(frameHeader(), 0);
    outLen = 7;
    for await (const data of input) {
      for (let i = 0; i < data.length;) {
        const room = blockSize - pendingLen;
        const whole = pendingLen === 0 && data.length - i >= room;
        if (!whole) {
          const n = Math.min(room, data.length - i);
          if (work.pending.length < pendingLen + n) {
            const grown = new Uint8Array(
              Math.min(blockSize, Math.max(pendingLen + n, 2 * work.pending.length)),
            );
            grown.set(work.pending.subarray(0, pendingLen));
            work.pending = grown;
          }
          work.pending.set(data.subarray(i, i + n), pendingLen);
          pendingLen += n;
          i += n;
          if (pendingLen < blockSize) continue;
        }
        if (holding) {
          yield work.out.subarray(0, outLen);
          outLen = 0;
          holding = false;
        }
        if (whole) {
          // A whole block is already at hand: encode it in place instead of copying it first.
          block(data.subarray(i, i + room));
          i += room;
        } else {
          block(work.pending.subarray(0, pendingLen));
          pendingLen = 0;
        }
      }
    }
    if (pendingLen > 0) {
      // Never emit an empty block: a zero size field is the end mark.
      if (holding) {
        yield work.out.subarray(0, outLen);
        outLen = 0;
      }
      block(work.pending.subarray(0, pendingLen));
      pendingLen = 0;
    }
    reserveOut(outLen + 8);
    write32(work.out, outLen, 0); // end mark, then the content checksum
    write32(work.out, outLen + 4, hash.digest());
    yield work.out.subarray(0, outLen + 8);
  } finally {
    if (encoderPool.length < 2) encoderPool.push(work);
  }
}
