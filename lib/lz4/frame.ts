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
import {
  BlockFormatError,
  compressBlock,
  compressBlockInto,
  decompressBlockInto,
  initCompressor,
} from "./block.ts";
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

/** What the parser waits for: `n` bytes of `what`; `endOk` when input may cleanly end instead. */
interface Need {
  n: number;
  what: string;
  endOk?: boolean;
}

/**
 * A parser coroutine: yields what it needs next and is resumed with exactly those bytes. The
 * bytes it is resumed with need to stay valid only until it yields again.
 */
type Parser = Generator<Need, never, Uint8Array>;

/**
 * Where the parser decodes a block: returns an array of at least `size` bytes. The parser
 * emits views of it, so a block's output area must not be handed out again while its view is
 * in use.
 */
type Target = (size: number) => Uint8Array;

/** A growable reusable output area: returns the same array until a larger one is asked for. */
function reusable(): Target {
  let buf = new Uint8Array(0);
  return (size) => buf.length >= size ? buf : (buf = new Uint8Array(size));
}

/** The previous `WINDOW` bytes of output, the dictionary of the next linked block. */
function slideWindow(window: Uint8Array, out: Uint8Array): Uint8Array {
  if (out.length >= WINDOW) return out.slice(out.length - WINDOW);
  const keep = Math.min(window.length, WINDOW - out.length);
  return concat([window.subarray(window.length - keep), out]);
}

/**
 * Parses a sequence of LZ4 and skippable frames, emitting decoded bytes as they come: `emit`
 * receives a view of an array from `target`, valid until the parser decodes its next block.
 */
function* parseFrames(
  fail: (detail: string) => never,
  emit: (out: Uint8Array) => void,
  target: Target,
): Parser {
  for (let first = true;; first = false) {
    const magic = read32(yield { n: 4, what: "frame magic number", endOk: !first }, 0);
    if (((magic & SKIPPABLE_MASK) >>> 0) === SKIPPABLE_MAGIC) {
      let left = read32(yield { n: 4, what: "skippable frame size" }, 0) >>> 0;
      for (let n; left > 0; left -= n) {
        yield { n: n = Math.min(left, SKIP_STEP), what: "skippable frame" };
      }
    } else if (magic >>> 0 === FRAME_MAGIC) {
      yield* parseFrame(fail, emit, target);
    } else {
      fail(first ? "not an LZ4 frame (bad magic number)" : "unexpected data after the LZ4 frame");
    }
  }
}

/** Parses one LZ4 frame after its magic number, up to and including its content checksum. */
function* parseFrame(
  fail: (detail: string) => never,
  emit: (out: Uint8Array) => void,
  target: Target,
): Generator<Need, void, Uint8Array> {
  // Copied: the bytes the parser is resumed with are valid only until its next yield.
  const desc = (yield { n: 2, what: "frame descriptor" }).slice();
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
    if (word & UNCOMPRESSED) {
      out = target(size).subarray(0, size);
      out.set(data);
    } else {
      const buf = target(window.length + blockMax);
      buf.set(window, 0);
      try {
        out = buf.subarray(window.length, decompressBlockInto(data, buf, window.length, blockMax));
      } catch (e) {
        if (e instanceof BlockFormatError) fail(`block ${k}: ${e.message}`);
        throw e;
      }
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

/** The checks at the end of the input: nothing may be cut off, nothing may follow. */
function checkEnd(fail: (detail: string) => never, seen: number, need: Need, left: number): void {
  if (seen === 0) fail("empty object, expected an LZ4 frame");
  if (!need.endOk) fail(`truncated LZ4 data: it ends inside the ${need.what}`);
  if (left > 0) fail("unexpected data after the LZ4 frame");
}

function failWith(objectName: string): (detail: string) => never {
  return (detail) => {
    throw new CorruptionError(objectName, detail);
  };
}

/** Holds received chunks until the parser's next need can be served, mostly without copying. */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  /** Reusable area for needs that span chunks. */
  #joined = reusable();
  length = 0;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.length += chunk.length;
  }

  /**
   * Removes and returns the next `n` bytes (`n` ≤ `length`): a view of a chunk if one chunk
   * has them, else a view of a reusable area, valid until the next call.
   */
  take(n: number): Uint8Array {
    this.length -= n;
    if (n === 0) return new Uint8Array(0);
    if (this.#chunks[0].length - this.#head >= n) return this.#consume(n);
    const out = this.#joined(n).subarray(0, n);
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

/** Output area shared by every {@linkcode FrameReader}: they copy what they emit at once. */
const sharedTarget = reusable();

/**
 * Feeds bytes in any chunking to {@linkcode parseFrames}; `end` checks nothing is cut off.
 * `emit` receives copies.
 */
class FrameReader {
  readonly #queue = new ByteQueue();
  readonly #parser: Parser;
  readonly #fail: (detail: string) => never;
  #need: Need;
  #seen = 0;

  constructor(objectName: string, emit: (out: Uint8Array) => void) {
    this.#fail = failWith(objectName);
    this.#parser = parseFrames(this.#fail, (out) => emit(out.slice()), sharedTarget);
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
    checkEnd(this.#fail, this.#seen, this.#need, this.#queue.length);
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

/** Output areas of finished {@linkcode decodeFrameBlocks} runs, reused by the next ones. */
const targetPool: Uint8Array[] = [];

/**
 * Decodes the LZ4 frames in `data` block by block, for bytes already in memory: yields each
 * decoded block as a view that is valid only until the generator is resumed, so a large
 * object never has to be decoded whole. Throws a {@linkcode CorruptionError} naming
 * `objectName` (a checksum mismatch only when the last block was taken, like a stream).
 */
export function* decodeFrameBlocks(data: Uint8Array, objectName: string): Generator<Uint8Array> {
  const fail = failWith(objectName);
  let buf = targetPool.pop() ?? new Uint8Array(0);
  let out: Uint8Array | undefined;
  const parser = parseFrames(
    fail,
    (o) => out = o,
    (size) => buf.length >= size ? buf : (buf = new Uint8Array(size)),
  );
  try {
    let need = parser.next().value;
    let pos = 0;
    while (data.length - pos >= need.n) {
      need = parser.next(data.subarray(pos, pos += need.n)).value;
      if (out) {
        const block = out;
        out = undefined;
        yield block;
      }
    }
    checkEnd(fail, data.length, need, data.length - pos);
  } finally {
    if (targetPool.length < 2) targetPool.push(buf);
  }
}

/** How far a {@linkcode StreamSource} reads beyond what is needed. */
const READ_AHEAD = 64 << 10;

/**
 * Reads a byte stream into one reusable buffer and hands out exact-size views of it: with a
 * BYOB reader (a file's stream) the bytes go straight into the buffer, else chunks are copied
 * in. A view is valid until the next `take`.
 */
class StreamSource {
  readonly #byob: ReadableStreamBYOBReader | undefined;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #done = false;
  /** A received chunk not yet copied in whole (default reader). */
  #chunk: Uint8Array = new Uint8Array(0);
  /** Bytes received so far. */
  seen = 0;

  constructor(stream: ReadableStream<Uint8Array>, capacity: number) {
    this.#buf = new Uint8Array(capacity);
    try {
      this.#byob = stream.getReader({ mode: "byob" });
    } catch {
      this.#reader = stream.getReader();
    }
  }

  /** The next `n` bytes, or the number of bytes left when the stream ends before `n`. */
  async take(n: number): Promise<Uint8Array | number> {
    while (this.#end - this.#start < n) {
      if (this.#done) return this.#end - this.#start;
      if (this.#buf.length - this.#start < n || this.#end === this.#buf.length) this.#compact(n);
      await this.#fill(n);
    }
    const view = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    return view;
  }

  /** Moves the unread bytes to the front, growing the buffer when `n` would not fit. */
  #compact(n: number): void {
    const left = this.#end - this.#start;
    if (this.#buf.length < n) {
      const grown = new Uint8Array(n);
      grown.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = grown;
    } else {
      this.#buf.copyWithin(0, this.#start, this.#end);
    }
    this.#start = 0;
    this.#end = left;
  }

  /** Reads more bytes into the free end of the buffer, towards `n` unread bytes. */
  async #fill(n: number): Promise<void> {
    if (this.#byob) {
      // Read what is missing plus a little, so the next small needs (a block's size) are at
      // hand but little is left over to move to the front.
      const { buffer, byteLength } = this.#buf;
      const want = Math.max(n - (this.#end - this.#start), READ_AHEAD);
      const { value, done } = await this.#byob.read(
        new Uint8Array(buffer, this.#end, Math.min(want, byteLength - this.#end)),
      );
      // The read transferred the buffer: take it back.
      if (value) {
        this.#buf = new Uint8Array(value.buffer, 0, byteLength);
        this.#end += value.length;
        this.seen += value.length;
      }
      if (done) this.#done = true;
      return;
    }
    if (this.#chunk.length === 0) {
      const { value, done } = await this.#reader!.read();
      if (done) {
        this.#done = true;
        return;
      }
      this.#chunk = value;
      this.seen += value.length;
    }
    const k = Math.min(this.#chunk.length, this.#buf.length - this.#end);
    this.#buf.set(this.#chunk.subarray(0, k), this.#end);
    this.#chunk = this.#chunk.subarray(k);
    this.#end += k;
  }

  async cancel(): Promise<void> {
    await (this.#byob ?? this.#reader)!.cancel().catch(() => {});
  }
}

/**
 * Decodes the LZ4 frames of `stream` (any variant {@linkcode lz4FrameDecoder} accepts) with a
 * fixed amount of memory, for large objects: each decoded block goes to `write` as a view that
 * stays valid until the promise `write` returns settles. The next block is read and decoded
 * while the previous one is written (two output areas take turns). Resolves once every block
 * was written and the frames checked; throws a {@linkcode CorruptionError} naming `objectName`
 * (blocks before the fault may have been written by then).
 */
export async function decodeFrameStream(
  stream: ReadableStream<Uint8Array>,
  objectName: string,
  write: (block: Uint8Array) => Promise<void>,
): Promise<void> {
  const fail = failWith(objectName);
  const source = new StreamSource(stream, blockMaxSize(7) + 2 * WINDOW);
  const targets = [reusable(), reusable()];
  let turn = 0;
  let out: Uint8Array | undefined;
  const parser = parseFrames(fail, (o) => out = o, (size) => targets[turn](size));
  let writing: Promise<void> | undefined;
  try {
    let need = parser.next().value;
    for (;;) {
      const bytes = await source.take(need.n);
      if (typeof bytes === "number") {
        checkEnd(fail, source.seen, need, bytes);
        break;
      }
      need = parser.next(bytes).value;
      if (out) {
        const block = out;
        out = undefined;
        await writing;
        writing = write(block);
        writing.catch(() => {}); // observed by the next await
        turn ^= 1;
      }
    }
    await writing;
  } catch (err) {
    await writing?.catch(() => {});
    throw err;
  } finally {
    await source.cancel();
  }
}
