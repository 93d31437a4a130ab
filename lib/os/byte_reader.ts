/**
 * Exact-size reads over a web `ReadableStream`, for parsers that consume
 * fixed-size records (frames, pages) from chunks of arbitrary size.
 *
 * @module
 */

/**
 * Reads exact byte counts from a stream, or from an iterator of chunks (each chunk may be a
 * view that is valid only until the next `next()`), copying only when a record spans chunks.
 */
export class ByteReader {
  readonly #reader:
    | ReadableStreamDefaultReader<Uint8Array>
    | Iterator<Uint8Array>
    | AsyncIterator<Uint8Array>;
  #chunk: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #done = false;

  /** Wraps `source`; the reader owns it until `cancel()` or the end. */
  constructor(
    source: ReadableStream<Uint8Array> | Iterator<Uint8Array> | AsyncIterator<Uint8Array>,
  ) {
    this.#reader = source instanceof ReadableStream ? source.getReader() : source;
  }

  /**
   * Reads exactly `n` bytes. Returns `undefined` at a clean end of stream and
   * `{ partial }` with the byte count when the stream ends inside the record.
   * The returned bytes may alias an internal chunk: use them before the next read.
   */
  async read(n: number): Promise<Uint8Array | undefined | { partial: number }> {
    if (this.#chunk.length - this.#pos >= n) {
      const out = this.#chunk.subarray(this.#pos, this.#pos + n);
      this.#pos += n;
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      if (this.#pos >= this.#chunk.length) {
        if (this.#done) break;
        const { value, done } = this.#reader instanceof ReadableStreamDefaultReader
          ? await this.#reader.read()
          : await this.#reader.next();
        if (done) {
          this.#done = true;
          break;
        }
        this.#chunk = value;
        this.#pos = 0;
        continue;
      }
      const take = Math.min(n - filled, this.#chunk.length - this.#pos);
      out.set(this.#chunk.subarray(this.#pos, this.#pos + take), filled);
      this.#pos += take;
      filled += take;
    }
    if (filled === n) return out;
    return filled === 0 ? undefined : { partial: filled };
  }

  /** Stops reading and releases the underlying stream. */
  async cancel(): Promise<void> {
    if (this.#reader instanceof ReadableStreamDefaultReader) {
      await this.#reader.cancel().catch(() => {});
    } else if (!this.#done) {
      try {
        await this.#reader.return?.();
      } catch {
        // Cancelling only releases the source.
      }
    }
  }
}
