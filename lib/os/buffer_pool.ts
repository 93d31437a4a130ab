/**
 * A few large byte buffers kept for reuse. A process that reads objects of a megabyte or two
 * every second into fresh arrays leaves them to V8, which frees an array that lived across a
 * few awaits only at its next full collection: tens of MB of dead buffers sit in the RSS
 * meanwhile. Reused buffers keep the footprint at what is in use.
 *
 * @module
 */

/** New buffers are sized up to a multiple of this, so slightly larger objects still fit. */
const GRAIN = 256 << 10;

/** Free buffers for reuse, at most `maxBuffers` of them and `maxBytes` together. */
export class BufferPool {
  #free: ArrayBuffer[] = [];

  constructor(readonly maxBuffers: number, readonly maxBytes: number) {}

  /** Bytes held by the free buffers. */
  get bytes(): number {
    return this.#free.reduce((a, b) => a + b.byteLength, 0);
  }

  /** An array of at least `size` bytes over a whole buffer (old contents: not zeroed). */
  take(size: number): Uint8Array<ArrayBuffer> {
    let best = -1;
    for (let i = 0; i < this.#free.length; i++) {
      const n = this.#free[i].byteLength;
      if (n >= size && (best < 0 || n < this.#free[best].byteLength)) best = i;
    }
    if (best >= 0) return new Uint8Array(this.#free.splice(best, 1)[0]);
    return new Uint8Array(Math.ceil(Math.max(1, size) / GRAIN) * GRAIN);
  }

  /** Gives back a buffer no longer used; the largest that fit the limits are kept. */
  give(buffer: ArrayBufferLike): void {
    if (
      !(buffer instanceof ArrayBuffer) || buffer.detached || buffer.byteLength === 0 ||
      this.#free.includes(buffer)
    ) return;
    const all = [...this.#free, buffer].sort((a, b) => b.byteLength - a.byteLength);
    this.#free = [];
    let total = 0;
    for (const b of all) {
      if (this.#free.length < this.maxBuffers && total + b.byteLength <= this.maxBytes) {
        this.#free.push(b);
        total += b.byteLength;
      }
    }
  }

  /** Drops every free buffer (for an idle spell). */
  clear(): void {
    this.#free = [];
  }
}
