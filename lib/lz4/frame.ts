/**
 * The LZ4 frame format (v1.6): what every snapshot and WAL segment object holds.
 *
 * The writer produces exactly the frames Litestream v0.3.13 writes (FLG 0x64, BD 0x70:
 * independent blocks of at most 4 MiB, no block checksums, no content size, a content
 * checksum). The reader accepts any valid frame, like `lz4 -d`. Both hold at most a few
 * blocks in memory whatever the object size.
 *
 * @module
 */

import { CorruptionError } from "../errors.ts";
import { BlockFormatError, compressBlock, decompressBlock } from "./block.ts";
import { concat, read32, write32 } from "./bytes.ts";
import { Xxh32, xxh32 } from "./xxh32.ts";

const FRAME_MAGIC = 0x184d2204;
/** Skippable frames use the 16 magics 0x184D2A50..0x184D2A5F. */
const SKIPPABLE_MAGIC = 0x184d2a50;
const SKIPPABLE_MASK = 0xfffffff0;
/** Skippable frames are consumed in steps of this size, so a huge one needs no huge buffer. */
const SKIP_STEP = 64 << 10;
/** Block size field bit that marks a block stored uncompressed. */
const UNCOMPRESSED = 0x80000000;
/** How far back a match in a linked block may reach into earlier blocks. */
const WINDOW = 64 << 10;

const FLG_VERSION_1 = 0x40;
const FLG_INDEPENDENT = 0x20;
const FLG_BLOCK_CHECKSUM = 0x10;
const FLG_CONTENT_SIZE = 0x08;
const FLG_CONTENT_CHECKSUM = 0x04;
const FLG_RESERVED = 0x02;
const FLG_DICT_ID = 0x01;
const BD_RESERVED = 0x8f;

/** The block size code v0.3.13 writes: 7 = 4 MiB. */
const WRITE_BLOCK_CODE = 7;

/** Largest decoded block for a BD block size code (4 = 64 KiB … 7 = 4 MiB). */
function blockMaxSize(code: number): number {
  return 1 << (8 + 2 * code);
}

/** The header checksum byte HC: second byte of xxh32 over the descriptor (FLG up to HC). */
function headerChecksum(descriptor: Uint8Array): number {
  return (xxh32(descriptor) >>> 8) & 0xff;
}

/** The 7 header bytes v0.3.13 writes: 04 22 4D 18 64 70 B9. */
function frameHeader(): Uint8Array {
  const h = new Uint8Array(7);
  write32(h, 0, FRAME_MAGIC);
  h[4] = FLG_VERSION_1 | FLG_INDEPENDENT | FLG_CONTENT_CHECKSUM;
  h[5] = WRITE_BLOCK_CODE << 4;
  h[6] = headerChecksum(h.subarray(4, 6));
  return h;
}

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
    start(controller) {
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

/** What the parser waits for: `n` bytes of `what`; `endOk` when input may cleanly end instead. */
interface Need {
  n: number;
  what: string;
  endOk?: boolean;
}

/** A parser coroutine: yields what it needs next and is resumed with exactly those bytes. */
type Parser = Generator<Need, never, Uint8Array>;

/** The previous `WINDOW` bytes of output, the dictionary of the next linked block. */
function slideWindow(window: Uint8Array, out: Uint8Array): Uint8Array {
  if (out.length >= WINDOW) return out.slice(out.length - WINDOW);
  const keep = Math.min(window.length, WINDOW - out.length);
  return concat([window.subarray(window.length - keep), out]);
}

/** Parses a sequence of LZ4 and skippable frames, emitting decoded bytes as they come. */
function* parseFrames(fail: (detail: string) => never, emit: (out: Uint8Array) => void): Parser {
  for (let first = true;; first = false) {
    const magic = read32(yield { n: 4, what: "frame magic number", endOk: !first }, 0);
    if (((magic & SKIPPABLE_MASK) >>> 0) === SKIPPABLE_MAGIC) {
      let left = read32(yield { n: 4, what: "skippable frame size" }, 0) >>> 0;
      for (let n; left > 0; left -= n) {
        yield { n: n = Math.min(left, SKIP_STEP), what: "skippable frame" };
      }
    } else if (magic >>> 0 === FRAME_MAGIC) {
      yield* parseFrame(fail, emit);
    } else {
      fail(first ? "not an LZ4 frame (bad magic number)" : "unexpected data after the LZ4 frame");
    }
  }
}

/** Parses one LZ4 frame after its magic number, up to and including its content checksum. */
function* parseFrame(
  fail: (detail: string) => never,
  emit: (out: Uint8Array) => void,
): Generator<Need, void, Uint8Array> {
  const desc = yield { n: 2, what: "frame descriptor" };
  const [flg, bd] = desc;
  if ((flg & 0xc0) !== FLG_VERSION_1) fail(`unsupported LZ4 frame version ${flg >>> 6}`);
  if (flg & FLG_RESERVED || bd & BD_RESERVED) fail("reserved bits set in the frame descriptor");
  const code = bd >>> 4;
  if (code < 4) fail(`invalid block size code ${code} in the frame descriptor`);
  const optional = (flg & FLG_CONTENT_SIZE ? 8 : 0) + (flg & FLG_DICT_ID ? 4 : 0);
  const rest = yield { n: optional + 1, what: "frame descriptor" };
  if (headerChecksum(concat([desc, rest.subarray(0, optional)])) !== rest[optional]) {
    fail("bad LZ4 frame header checksum");
  }
  if (flg & FLG_DICT_ID) fail("LZ4 frame needs an external dictionary, which is not supported");
  const contentSize = flg & FLG_CONTENT_SIZE
    ? (read32(rest, 0) >>> 0) + (read32(rest, 4) >>> 0) * 2 ** 32
    : undefined;
  const blockMax = blockMaxSize(code);
  const linked = !(flg & FLG_INDEPENDENT);
  const checksumLen = flg & FLG_BLOCK_CHECKSUM ? 4 : 0;
  const hash = flg & FLG_CONTENT_CHECKSUM ? new Xxh32() : undefined;
  let window: Uint8Array = new Uint8Array(0);
  let total = 0;
  for (let k = 0;; k++) {
    const word = read32(yield { n: 4, what: `size of block ${k}` }, 0) >>> 0;
    if (word === 0) break;
    const size = word & ~UNCOMPRESSED;
    if (size > blockMax) {
      fail(`block ${k} is ${size} bytes, over the frame's ${blockMax}-byte limit`);
    }
    const body = yield { n: size + checksumLen, what: `block ${k}` };
    const data = body.subarray(0, size);
    if (checksumLen && xxh32(data) !== read32(body, size) >>> 0) fail(`bad checksum of block ${k}`);
    let out: Uint8Array;
    try {
      out = word & UNCOMPRESSED ? data.slice() : decompressBlock(data, blockMax, window);
    } catch (e) {
      if (e instanceof BlockFormatError) fail(`block ${k}: ${e.message}`);
      throw e;
    }
    hash?.update(out);
    total += out.length;
    if (linked) window = slideWindow(window, out);
    if (out.length > 0) emit(out);
  }
  if (contentSize !== undefined && total !== contentSize) {
    fail(`LZ4 frame holds ${total} bytes but its header says ${contentSize}`);
  }
  if (hash && read32(yield { n: 4, what: "content checksum" }, 0) >>> 0 !== hash.digest()) {
    fail("bad LZ4 content checksum");
  }
}

/** Holds received chunks until the parser's next need can be served, mostly without copying. */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Removes and returns the next `n` bytes (`n` ≤ `length`); a view if one chunk has them. */
  take(n: number): Uint8Array {
    this.length -= n;
    if (n === 0) return new Uint8Array(0);
    if (this.#chunks[0].length - this.#head >= n) return this.#consume(n);
    const out = new Uint8Array(n);
    for (let o = 0; o < n;) {
      const part = this.#consume(Math.min(n - o, this.#chunks[0].length - this.#head));
      out.set(part, o);
      o += part.length;
    }
    return out;
  }

  /** Removes and returns up to `k` bytes of the first chunk. */
  #consume(k: number): Uint8Array {
    const c = this.#chunks[0];
    const part = c.subarray(this.#head, this.#head + k);
    this.#head += k;
    if (this.#head === c.length) this.#chunks.shift(), this.#head = 0;
    return part;
  }
}

/** Feeds bytes in any chunking to {@linkcode parseFrames}; `end` checks nothing is cut off. */
class FrameReader {
  readonly #queue = new ByteQueue();
  readonly #parser: Parser;
  readonly #fail: (detail: string) => never;
  #need: Need;
  #seen = 0;

  constructor(objectName: string, emit: (out: Uint8Array) => void) {
    this.#fail = (detail) => {
      throw new CorruptionError(objectName, detail);
    };
    this.#parser = parseFrames(this.#fail, emit);
    this.#need = this.#parser.next().value;
  }

  write(chunk: Uint8Array): void {
    this.#queue.push(chunk);
    this.#seen += chunk.length;
    while (this.#queue.length >= this.#need.n) {
      this.#need = this.#parser.next(this.#queue.take(this.#need.n)).value;
    }
  }

  end(): void {
    if (this.#seen === 0) this.#fail("empty object, expected an LZ4 frame");
    if (!this.#need.endOk) this.#fail(`truncated LZ4 data: it ends inside the ${this.#need.what}`);
    if (this.#queue.length > 0) this.#fail("unexpected data after the LZ4 frame");
  }
}

/**
 * A stream that decodes LZ4 frames (several in a row and skippable frames too, like
 * `lz4 -d`). Any fault, including a checksum mismatch found at the end, errors the stream
 * with a {@linkcode CorruptionError} naming `objectName`; output already passed on before
 * that is then unconfirmed, so consumers must treat data as good only once the stream closes.
 */
export function lz4FrameDecoder(objectName: string): TransformStream<Uint8Array, Uint8Array> {
  let reader: FrameReader;
  return new TransformStream({
    start(controller) {
      reader = new FrameReader(objectName, (out) => controller.enqueue(out));
    },
    transform(chunk) {
      reader.write(chunk);
    },
    flush() {
      reader.end();
    },
  });
}

/**
 * {@linkcode lz4FrameDecoder} for bytes already in memory: returns all decoded bytes or throws
 * a {@linkcode CorruptionError} naming `objectName`.
 */
export function decompressFrame(data: Uint8Array, objectName: string): Uint8Array {
  const out: Uint8Array[] = [];
  const reader = new FrameReader(objectName, (piece) => out.push(piece));
  reader.write(data);
  reader.end();
  return concat(out);
}
