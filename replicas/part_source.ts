/**
 * Cutting an upload's byte stream into parts (S3 multipart parts, Azure
 * blocks): the chunks are copied into part buffers, which the caller may
 * reuse, so an upload holds only the parts in flight.
 *
 * @module
 */

import { chunksOf } from "../lib/os/fs.ts";

/** A failure of the data being uploaded, not of the store: uploaders re-throw its cause. */
export class SourceError extends Error {}

/**
 * Cuts a byte stream into parts, copying its chunks (lent ones too, see `chunksOf`) into part
 * buffers: a chunk is held only until it is copied.
 */
export class PartSource {
  readonly #chunks: AsyncIterator<Uint8Array>;
  #rest: Uint8Array = new Uint8Array(0);
  #done = false;
  /** Bytes handed out in parts so far. */
  size = 0;

  /** Parts will be cut from `data`. */
  constructor(data: ReadableStream<Uint8Array>) {
    this.#chunks = chunksOf(data)[Symbol.asyncIterator]();
  }

  /**
   * The next up to `max` bytes, fewer only at the end, in `buf` (which must hold `max`
   * bytes) or, without one, in a new array that grows with the data.
   */
  async fill(max: number, buf?: Uint8Array): Promise<Uint8Array> {
    let out = buf ?? new Uint8Array(0);
    let n = 0;
    while (n < max && !await this.atEnd()) {
      const k = Math.min(this.#rest.length, max - n);
      if (out.length < n + k) {
        const grown = new Uint8Array(Math.min(max, Math.max(n + k, 2 * out.length)));
        grown.set(out.subarray(0, n));
        out = grown;
      }
      out.set(this.#rest.subarray(0, k), n);
      this.#rest = this.#rest.subarray(k);
      n += k;
    }
    this.size += n;
    return out.subarray(0, n);
  }

  /** True when no byte is left (reads the next chunk when needed). */
  async atEnd(): Promise<boolean> {
    while (this.#rest.length === 0 && !this.#done) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await this.#chunks.next();
      } catch (err) {
        throw new SourceError("reading the upload's data failed", { cause: err });
      }
      if (r.done) this.#done = true;
      else this.#rest = r.value;
    }
    return this.#rest.length === 0;
  }
}

/**
 * Sends `first` (a full part) and the rest of `source` as parts numbered from 1 through
 * `send`, at most `queueSize` in flight, each from a reused part buffer (about
 * (queueSize + 1) × partSize in all). Resolves when every part is sent; on a failure it
 * waits for the parts in flight and rejects with the first failure.
 */
export async function sendParts(
  source: PartSource,
  first: Uint8Array,
  { partSize, queueSize }: { partSize: number; queueSize: number },
  send: (partNumber: number, body: Uint8Array) => Promise<void>,
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  const free: Uint8Array[] = [];
  try {
    let body = first;
    for (let partNumber = 1;; partNumber++) {
      const part = body;
      const sent: Promise<void> = send(partNumber, part)
        .then(() => {
          free.push(new Uint8Array(part.buffer));
        }).finally(() => inFlight.delete(sent));
      sent.catch(() => {}); // observed through Promise.race/all below
      inFlight.add(sent);
      if (await source.atEnd()) break;
      while (inFlight.size >= queueSize) await Promise.race(inFlight);
      body = await source.fill(partSize, free.pop() ?? new Uint8Array(partSize));
    }
    await Promise.all(inFlight);
  } catch (err) {
    await Promise.allSettled(inFlight);
    throw err;
  }
}
