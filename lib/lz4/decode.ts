/**
 * The LZ4 frame readers: a `TransformStream`, a whole-buffer decoder, a block-by-block iterator
 * and a stream decoder into reused buffers, all over the one parser in `parse.ts`. Each holds at
 * most a few blocks in memory whatever the object size.
 *
 * @module
 */

import { chunksOf } from "../os/fs.ts";
import { concat } from "./bytes.ts";
import { blockMaxSize, UNCOMPRESSED, WINDOW } from "./format.ts";
import { hashableBytes } from "./xxh32.ts";
import { checkEnd, failWith, type Need, parseFrames, type Parser, reusable } from "./parse.ts";

/** Holds received chunks until the parser's next need can be served, mostly without copying. */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  /**
   * Reusable area for needs that span chunks: input, so plain memory (each reader of a WAL
   * segment would otherwise reserve a WebAssembly memory's address space).
   */
  #joined = reusable((size) => new Uint8Array(size));
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
    (size) => buf.length >= size ? buf : (buf = hashableBytes(size)),
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
    // One is enough: frames are decoded one object at a time.
    if (targetPool.length < 1) targetPool.push(buf);
  }
}

/**
 * Drops the output area kept for the next {@linkcode decodeFrameBlocks} run (up to a block,
 * 4 MiB): for a long-lived process going idle.
 */
export function releaseDecodeBuffers(): void {
  targetPool.length = 0;
}

/** The largest block of any frame. */
const BLOCK_MAX = blockMaxSize(7);

/** How far a {@linkcode StreamSource} reads beyond what is needed. */
const READ_AHEAD = 64 << 10;

/** A read into a {@linkcode StreamSource}'s spare buffer, after `left` unread bytes copied there. */
interface Ahead {
  read: Promise<ReadableStreamReadResult<Uint8Array>>;
  left: number;
  byteLength: number;
}

/**
 * Reads a byte stream into one reusable buffer and hands out exact-size views of it: with a
 * BYOB reader (a file's stream) the bytes go straight into the buffer, else chunks are copied
 * in (or lent as they are, when one holds a whole need). A view is valid until the next `take`.
 * With a BYOB reader, {@linkcode StreamSource.prefetch} reads on into a second buffer while
 * the views of the first are in use.
 */
class StreamSource {
  readonly #byob: ReadableStreamBYOBReader | undefined;
  /** Chunks of a stream without BYOB support, lent where its producer lends (see `chunksOf`). */
  readonly #chunks: AsyncIterator<Uint8Array> | undefined;
  #buf: Uint8Array;
  /** The buffer `prefetch` reads into (BYOB reader), allocated on first use. */
  #spare: Uint8Array | undefined;
  #ahead: Ahead | undefined;
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
      this.#chunks = chunksOf(stream)[Symbol.asyncIterator]();
    }
  }

  /** The next `n` bytes, or the number of bytes left when the stream ends before `n`. */
  async take(n: number): Promise<Uint8Array | number> {
    if (this.#ahead) await this.#landAhead(this.#ahead);
    if (this.#start === this.#end && this.#chunk.length >= n) {
      // Nothing buffered comes first and one chunk has them all: a view of the chunk, valid
      // until the next chunk is asked for, which only a later `take` does.
      const view = this.#chunk.subarray(0, n);
      this.#chunk = this.#chunk.subarray(n);
      return view;
    }
    while (this.#end - this.#start < n) {
      if (this.#done) return this.#end - this.#start;
      if (this.#buf.length - this.#start < n || this.#end === this.#buf.length) this.#compact(n);
      await this.#fill(n);
    }
    const view = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    return view;
  }

  /** The 32-bit little-endian integer in the next 4 unread bytes, if they are at hand. */
  peek32(): number | undefined {
    if (this.#end - this.#start < 4) return undefined;
    return new DataView(this.#buf.buffer, this.#buf.byteOffset).getUint32(this.#start, true);
  }

  /**
   * Starts reading towards `n` unread bytes into the spare buffer, after a copy of the unread
   * ones, so that the next `take`s need not wait; views handed out stay valid (the read cannot
   * detach their buffer). With a BYOB reader only: other streams' chunks are at hand already.
   */
  prefetch(n: number): void {
    const left = this.#end - this.#start;
    if (!this.#byob || this.#ahead || this.#done || left >= n) return;
    let spare = this.#spare;
    if (!spare || spare.length < n) spare = new Uint8Array(Math.max(n, this.#buf.length));
    this.#spare = undefined; // the read takes its buffer
    spare.set(this.#buf.subarray(this.#start, this.#end));
    const { buffer, byteLength } = spare;
    const read = this.#byob.read(new Uint8Array(buffer, left, n - left));
    read.catch(() => {}); // observed by the next `take` (or given up by `cancel`)
    this.#ahead = { read, left, byteLength };
  }

  /** Makes the prefetched bytes the unread ones; the old buffer becomes the spare. */
  async #landAhead(ahead: Ahead): Promise<void> {
    this.#ahead = undefined;
    const { value, done } = await ahead.read;
    if (!value) throw new TypeError("the stream was cancelled while reading ahead");
    this.#spare = this.#buf;
    this.#buf = new Uint8Array(value.buffer, 0, ahead.byteLength);
    this.#start = 0;
    this.#end = ahead.left + value.length;
    this.seen += value.length;
    if (done) this.#done = true;
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
      // Read what is missing plus a little, so the next small needs (a block's size, which
      // `prefetch` is told) are at hand but little is left over to move to the front.
      const { buffer, byteLength } = this.#buf;
      const want = n - (this.#end - this.#start) + READ_AHEAD;
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
      const { value, done } = await this.#chunks!.next();
      if (done) {
        this.#done = true;
        return;
      }
      this.#chunk = value;
      this.seen += value.length;
    }
    // Only what is missing: the rest of the chunk may serve the next needs in place.
    const k = Math.min(this.#chunk.length, n - (this.#end - this.#start));
    this.#buf.set(this.#chunk.subarray(0, k), this.#end);
    this.#chunk = this.#chunk.subarray(k);
    this.#end += k;
  }

  async cancel(): Promise<void> {
    if (this.#byob) {
      await this.#byob.cancel().catch(() => {});
      await this.#ahead?.read.catch(() => {});
    } else await this.#chunks!.return?.().catch(() => {});
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
  const source = new StreamSource(stream, BLOCK_MAX + 2 * WINDOW);
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
      if (need.block) {
        // The next block's size word usually follows: read that block (and the size word
        // after it) while this one decodes.
        const word = source.peek32() ?? 0;
        const size = word & ~UNCOMPRESSED;
        if (word && size <= BLOCK_MAX) source.prefetch(4 + size + 4);
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

/**
 * The decoded blocks of the LZ4 frames in `stream` (see {@linkcode decodeFrameStream}), each lent until
 * the next is asked for: a large snapshot moves through two reused buffers instead of a fresh
 * array per block. Leaving early cancels the decoding and its stream.
 */
export async function* lentFrameBlocks(
  stream: ReadableStream<Uint8Array>,
  name: string,
): AsyncGenerator<Uint8Array> {
  // The decoder pushes a block and waits on `asked` before reusing its buffer; the consumer
  // pulls, and asking for the next block releases the previous one.
  let offered = Promise.withResolvers<Uint8Array | undefined>();
  let asked = Promise.withResolvers<void>();
  const decoding = decodeFrameStream(stream, name, (block) => {
    offered.resolve(block);
    return asked.promise;
  });
  decoding.then(() => offered.resolve(undefined), (err) => offered.reject(err));
  let release = asked;
  try {
    for (;;) {
      const block = await offered.promise;
      if (block === undefined) return;
      offered = Promise.withResolvers();
      release = asked;
      asked = Promise.withResolvers();
      yield block;
      release.resolve();
    }
  } finally {
    // Left early: the decoder's pending write fails, which cancels its stream.
    const gone = new Error("the snapshot's reader went away");
    offered.promise.catch(() => {});
    for (const p of [release, asked]) {
      p.promise.catch(() => {});
      p.reject(gone);
    }
    await decoding.catch(() => {});
  }
}
