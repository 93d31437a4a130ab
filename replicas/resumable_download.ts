/**
 * Resumable downloads for object stores (S3, Azure Blob Storage): a body that breaks, or ends
 * short of its length, continues with a ranged read from the byte where it stopped, pinned to
 * the first response's ETag so a replaced object is an error. The same serves one part of an
 * object fetched in parallel parts. Each backend supplies how to send one read.
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
}

/**
 * Opens a download and wraps it in a stream that, when the body breaks or ends short of its
 * length, continues with a ranged read from the byte where it stopped (pinned to the ETag, so a
 * replaced object is an error).
 */
export async function resumableDownload(
  src: DownloadSource,
): Promise<ReadableStream<Uint8Array>> {
  let pos = src.start ?? 0;
  const first = src.first ?? await src.get(pos, src.etag);
  const end = first.length === undefined ? undefined : pos + first.length;
  const etag = src.etag ?? first.etag;
  const describe = src.describe ?? ((err: unknown) => (err as Error)?.message ?? String(err));
  // Servers that ignore If-Match (s3rver does) still name the version they send.
  const sameObject = (res: DownloadPart) => {
    if (etag && res.etag && res.etag !== etag) {
      res.body.cancel().catch(() => {});
      throw src.fail("the object was replaced during the download (ETag changed)", {
        replaced: true,
      });
    }
  };
  sameObject(first);
  let body = first.body.getReader();
  let resumes = 0;
  const resume = async (cause: unknown) => {
    if (++resumes > src.maxResumes) {
      throw src.fail(`download broke at byte ${pos}: ${describe(cause)}`, { cause });
    }
    body.cancel().catch(() => {});
    await backoff(resumes);
    const next = await src.get(pos, etag);
    sameObject(next);
    // A server that ignores the range would send the whole object again.
    if (next.rangeStart !== pos) {
      next.body.cancel().catch(() => {});
      throw src.fail(`range request from byte ${pos} not honoured`, {});
    }
    body = next.body.getReader();
  };
  return new ReadableStream<Uint8Array>({
    pull: async (ctrl) => {
      while (true) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await body.read();
        } catch (err) {
          await resume(err);
          continue;
        }
        if (!chunk.done) {
          pos += chunk.value.byteLength;
          src.onBytes(chunk.value.byteLength);
          resumes = 0;
          return ctrl.enqueue(chunk.value);
        }
        if (end === undefined || pos >= end) return ctrl.close();
        await resume(new Error(`body ended at byte ${pos} of ${end}`));
      }
    },
    cancel: (reason) => body.cancel(reason),
  });
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
