/**
 * Resumable downloads for object stores (S3, Azure Blob Storage, GCS): a body that breaks,
 * stalls, or ends short of its length, continues with a ranged read from the byte where it
 * stopped, pinned to the first response's ETag so a replaced object is an error. An object is
 * read as a stream, or one byte range of it into a caller's buffer (a part of an object fetched
 * in parallel parts). Each backend supplies how to send one read.
 *
 * @module
 */

import { backoff } from "../lib/os/async.ts";

/** One response of a read: its body and what it says about the object. */
export interface DownloadPart {
  body: ReadableStream<Uint8Array>;
  /** Bytes this response's body holds (Content-Length), if known. */
  length?: number;
  etag?: string;
  /** For a ranged read: the first byte the body holds (from Content-Range), if the server said. */
  rangeStart?: number;
}

/** One object, or one byte range of it, to download. */
export interface DownloadSource {
  /**
   * Sends a read from byte `from` of the object (to the end of the range this source covers),
   * pinned to `etag` when given.
   */
  get(from: number, etag?: string): Promise<DownloadPart>;
  /** Ranged resumptions without progress in between before giving up. */
  maxResumes: number;
  /** Called with the size of every chunk delivered. */
  onBytes(n: number): void;
  /** The error to throw when the download cannot go on: `detail` says why. */
  fail(detail: string, options: { cause?: unknown; replaced?: boolean }): Error;
  /** Describes a failure of the body for `fail` (default: its message). */
  describe?(err: unknown): string;
  /** First byte of the range (default 0, the whole object). */
  start?: number;
  /** The ETag the object must have (the parts of one object must come from one version). */
  etag?: string;
  /** The response to the first read, when the caller already sent it. */
  first?: DownloadPart;
  /**
   * A body that delivers nothing for this long is abandoned and the read resumed (a stalled
   * connection would otherwise hang the download for ever). Default: no limit.
   */
  idleTimeoutMs?: number;
}

/**
 * Bytes read from a body at a time into a download's own buffer (fewer for a shorter body):
 * `fetch` bodies read by default allocate 64 KiB a read, even for a 4 KB WAL segment.
 */
const SCRATCH_BYTES = 256 * 1024;

/** Bytes handed to a reader of a download that brings no buffer of its own (a default reader). */
const CHUNK_BYTES = 64 * 1024;

/**
 * Opens a download and wraps it in a stream that, when the body breaks, stalls or ends short of
 * its length, continues with a ranged read from the byte where it stopped (pinned to the ETag,
 * so a replaced object is an error). The stream is a byte stream: a BYOB reader gets the bytes
 * copied into its own buffer.
 */
export async function resumableDownload(
  src: DownloadSource,
): Promise<ReadableStream<Uint8Array>> {
  const download = await Download.open(src);
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: CHUNK_BYTES,
    pull: async (ctrl) => {
      const request = ctrl.byobRequest!;
      const view = request.view!;
      const chunk = await download.next(view.byteLength);
      if (!chunk) {
        ctrl.close();
        request.respond(0);
        return;
      }
      new Uint8Array(view.buffer, view.byteOffset, chunk.length).set(chunk);
      request.respond(chunk.length);
    },
    cancel: () => download.close(),
  });
}

/**
 * Downloads exactly `into.length` bytes from `src.start` into `into`, resuming as
 * `resumableDownload` does; returns the filled array (`into`). More or fewer bytes than that is
 * an error: a response that is not the requested range must never be spliced into an object.
 * Once `signal` is aborted the download stops (its body cancelled) and rejects with its reason.
 */
export async function downloadInto(
  src: DownloadSource,
  into: Uint8Array,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const start = src.start ?? 0;
  const range = `bytes ${start}-${start + into.length - 1}`;
  const download = await Download.open(src);
  const stop = () => download.close();
  signal?.addEventListener("abort", stop);
  try {
    signal?.throwIfAborted();
    for (let n = 0; n < into.length;) {
      const chunk = await download.next(into.length - n);
      if (!chunk) throw src.fail(`${range}: ${n} of the ${into.length} bytes requested`, {});
      into.set(chunk, n);
      n += chunk.length;
    }
    if (await download.next(1)) {
      throw src.fail(`${range}: more than the ${into.length} bytes requested`, {});
    }
    return into;
  } catch (err) {
    signal?.throwIfAborted();
    throw err;
  } finally {
    signal?.removeEventListener("abort", stop);
    await download.close();
  }
}

/**
 * A download in progress: its position, its current body and its resumptions. Bodies that allow
 * it (`fetch` bodies are byte streams) are read into a buffer of the download's own, so no
 * array is allocated per read; a failed read takes only that buffer with it, never bytes
 * already delivered.
 */
class Download {
  readonly #src: DownloadSource;
  readonly #etag: string | undefined;
  /** End of the range (from the first response's length), if known. */
  readonly #end: number | undefined;
  #pos: number;
  #body!: ReadableStreamDefaultReader<Uint8Array> | ReadableStreamBYOBReader;
  #scratch: Uint8Array | undefined;
  /** What a default reader's last chunk held beyond what was asked for. */
  #rest: Uint8Array | undefined;
  #resumes = 0;
  #closed = false;

  private constructor(src: DownloadSource, first: DownloadPart) {
    this.#src = src;
    this.#pos = src.start ?? 0;
    this.#end = first.length === undefined ? undefined : this.#pos + first.length;
    this.#etag = src.etag ?? first.etag;
    this.#use(first);
  }

  /** Sends the first read (unless the caller did). */
  static async open(src: DownloadSource): Promise<Download> {
    return new Download(src, src.first ?? await src.get(src.start ?? 0, src.etag));
  }

  /** The next bytes (at most `max`), or undefined at the end; valid until the next call. */
  async next(max: number): Promise<Uint8Array | undefined> {
    while (true) {
      let chunk: Uint8Array | undefined;
      try {
        chunk = await this.#read(max);
      } catch (err) {
        if (this.#closed) throw err;
        await this.#resume(err);
        continue;
      }
      if (chunk) {
        this.#pos += chunk.byteLength;
        this.#src.onBytes(chunk.byteLength);
        this.#resumes = 0;
        return chunk;
      }
      if (this.#end === undefined || this.#pos >= this.#end || this.#closed) return undefined;
      await this.#resume(new Error(`body ended at byte ${this.#pos} of ${this.#end}`));
    }
  }

  /** Gives up the current body, and the download: it resumes no more. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#body.cancel().catch(() => {});
  }

  /** One read of the current body (within the idle timeout); undefined at its end. */
  async #read(max: number): Promise<Uint8Array | undefined> {
    if (this.#rest) return this.#cut(this.#rest, max);
    const body = this.#body;
    let read: Promise<ReadableStreamReadResult<Uint8Array>>;
    if (body instanceof ReadableStreamBYOBReader) {
      const left = this.#end === undefined ? SCRATCH_BYTES : this.#end - this.#pos;
      const buf = this.#scratch ?? new Uint8Array(Math.max(1, Math.min(SCRATCH_BYTES, left)));
      // The read takes the buffer over; a failed one keeps it.
      this.#scratch = undefined;
      read = body.read(new Uint8Array(buf.buffer, 0, Math.min(buf.byteLength, max)));
    } else {
      read = body.read();
    }
    const ms = this.#src.idleTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const { value, done } = ms === undefined ? await read : await Promise.race([
        read,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no data for ${ms} ms`)), ms);
        }),
      ]);
      if (value && body instanceof ReadableStreamBYOBReader) {
        this.#scratch = new Uint8Array(value.buffer);
      }
      return done || !value ? undefined : this.#cut(value, max);
    } finally {
      clearTimeout(timer);
      read.catch(() => {}); // a stalled read settles when its body is cancelled
    }
  }

  /** The first `max` bytes of `chunk`; the rest is kept for the next read. */
  #cut(chunk: Uint8Array, max: number): Uint8Array {
    this.#rest = chunk.length > max ? chunk.subarray(max) : undefined;
    return chunk.length > max ? chunk.subarray(0, max) : chunk;
  }

  /** Continues from `#pos` with a ranged read, or throws once resumptions are used up. */
  async #resume(cause: unknown): Promise<void> {
    const src = this.#src;
    if (++this.#resumes > src.maxResumes) {
      const describe = src.describe ?? ((err: unknown) => (err as Error)?.message ?? String(err));
      throw src.fail(`download broke at byte ${this.#pos}: ${describe(cause)}`, { cause });
    }
    this.#body.cancel().catch(() => {});
    await backoff(this.#resumes);
    const next = await src.get(this.#pos, this.#etag);
    if (this.#closed) {
      await next.body.cancel().catch(() => {});
      throw src.fail("the download was given up", { cause });
    }
    this.#use(next);
  }

  /**
   * Continues with the body of `res` after checking it is the object's version (servers that
   * ignore If-Match, as s3rver does, still name the version they send) and starts at `#pos` (a
   * server that ignores the range would send the whole object again).
   */
  #use(res: DownloadPart): void {
    const fail = (detail: string, replaced: boolean) => {
      res.body.cancel().catch(() => {});
      return this.#src.fail(detail, { replaced });
    };
    if (this.#etag && res.etag && res.etag !== this.#etag) {
      throw fail("the object was replaced during the download (ETag changed)", true);
    }
    if ((res.rangeStart ?? 0) !== this.#pos) {
      throw fail(`range request from byte ${this.#pos} not honoured`, false);
    }
    this.#body = byobOrDefault(res.body);
  }
}

/** A BYOB reader of `body` where it is a byte stream (`fetch` bodies are), else a default one. */
function byobOrDefault(
  body: ReadableStream<Uint8Array>,
): ReadableStreamBYOBReader | ReadableStreamDefaultReader<Uint8Array> {
  try {
    return body.getReader({ mode: "byob" });
  } catch {
    return body.getReader();
  }
}

/** The first byte of a `Content-Range: bytes FIRST-LAST/SIZE` header, if it has one. */
export function rangeStart(contentRange: string | undefined): number | undefined {
  const m = /^bytes (\d+)-/.exec(contentRange ?? "");
  return m ? Number(m[1]) : undefined;
}

/** The object's total size from a `Content-Range: bytes a-b/TOTAL` header, if it has one. */
export function contentRangeTotal(contentRange: string | undefined): number | undefined {
  const m = contentRange?.match(/^bytes \d+-\d+\/(\d+)$/);
  return m ? Number(m[1]) : undefined;
}
