/**
 * A `node:stream` Duplex over a `Deno.Conn`, given to ssh2 as its `sock`. Deno's `node:net`
 * socket costs about 5 ms of CPU per MB written here (its write path runs through the
 * stream-wrap compatibility layer for each SSH packet), `Deno.Conn` about 0.3 ms: under the
 * write load that was the largest single cost of an SFTP replica.
 *
 * Writes that queue behind one in progress go out together (`_writev`), so a burst of SSH
 * packets is one system call. Reads are pushed as fresh `Buffer`s (ssh2 keeps references into
 * what it parses) and stop while ssh2's side of the stream is full.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";

/**
 * Bytes asked of the connection per read: above SSH's largest packet (35,000 bytes); held per
 * open connection only (an idle replica closes its connection).
 */
const READ_SIZE = 64 << 10;

/** The most bytes gathered into one write: two SSH packets of the largest size. */
const WRITE_BATCH = 64 << 10;

/** A Duplex stream over `conn`; ssh2 treats a passed socket that lacks `connecting` as connected. */
export class ConnStream extends Duplex {
  readonly #conn: Deno.TcpConn;
  #reading = false;
  #scratch: Uint8Array | undefined = new Uint8Array(READ_SIZE);
  /** Where queued writes are gathered, made on the first burst. */
  #batch: Uint8Array | undefined;

  /** Wraps a connected `conn`; closing the stream closes it. */
  constructor(conn: Deno.TcpConn) {
    super({ allowHalfOpen: false });
    this.#conn = conn;
  }

  override _read(): void {
    if (this.#reading) return;
    this.#reading = true;
    this.#pump().catch((err) => this.destroy(err));
  }

  /** Reads until EOF or until `push` says ssh2's side is full. */
  async #pump(): Promise<void> {
    for (let scratch = this.#scratch; scratch; scratch = this.#scratch) {
      const n = await this.#conn.read(scratch);
      if (n === null) {
        this.push(null);
        return;
      }
      if (!this.push(Buffer.from(scratch.subarray(0, n)))) break;
    }
    this.#reading = false;
  }

  override _write(chunk: Buffer, _encoding: string, callback: (err?: Error | null) => void) {
    this.#writeAll(chunk).then(() => callback(), callback);
  }

  override _writev(
    chunks: { chunk: Buffer }[],
    callback: (err?: Error | null) => void,
  ): void {
    this.#writeBatched(chunks).then(() => callback(), callback);
  }

  /**
   * Writes queued chunks through one reused buffer: a burst of small SSH packets is one system
   * call, and no burst-sized buffer is allocated (the 1 GB snapshot benchmark peaked 10–15 MB
   * higher when bursts were concatenated).
   */
  async #writeBatched(chunks: { chunk: Buffer }[]): Promise<void> {
    const batch = this.#batch ??= new Uint8Array(WRITE_BATCH);
    let fill = 0;
    for (const { chunk } of chunks) {
      if (fill + chunk.length > batch.length && fill > 0) {
        await this.#writeAll(batch.subarray(0, fill));
        fill = 0;
      }
      if (chunk.length >= batch.length) {
        await this.#writeAll(chunk);
        continue;
      }
      batch.set(chunk, fill);
      fill += chunk.length;
    }
    if (fill > 0) await this.#writeAll(batch.subarray(0, fill));
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    for (let off = 0; off < bytes.length;) off += await this.#conn.write(bytes.subarray(off));
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#conn.closeWrite().then(() => callback(), () => callback());
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#scratch = undefined;
    this.#batch = undefined;
    try {
      this.#conn.close();
    } catch {
      // Already closed (the peer's EOF after our closeWrite, or a second destroy).
    }
    callback(err);
  }
}

/**
 * Connects to `host:port` (a name, an IPv4 or a bare IPv6 address) within `timeoutMs`.
 * A refusal or timeout rejects with Deno's error, marked as ssh2 marks a socket error
 * (`level: "client-socket"`, or `"client-timeout"`), so the session classifies it alike.
 */
export async function connectStream(
  host: string,
  port: number,
  timeoutMs: number,
): Promise<ConnStream> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const conn = await Deno.connect({ hostname: host, port, signal });
    // SSH requests are small and answered one by one: no waiting to fill a segment.
    conn.setNoDelay(true);
    return new ConnStream(conn);
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable) throw err;
    if (signal.aborted) {
      throw Object.assign(new Error(`Timed out while connecting after ${timeoutMs} ms`), {
        level: "client-timeout",
      });
    }
    throw Object.assign(err as Error, { level: "client-socket" });
  }
}
