/**
 * Resumable S3 downloads: a body that breaks, or ends short of its
 * Content-Length, continues with a range GET from the byte where it stopped,
 * pinned to the first response's ETag so a replaced object is an error.
 *
 * @module
 */

import type { GetObjectCommandOutput } from "@aws-sdk/client-s3";
import { describeError, S3Error } from "./errors.ts";

/** One object to download. */
export interface DownloadSource {
  /** `s3://bucket/key`, for errors. */
  url: string;
  /** Sends a GET of the object, from byte `from` (a range GET pinned to `etag` when `from` > 0). */
  get(from: number, etag?: string): Promise<GetObjectCommandOutput>;
  /** Range-GET resumptions without progress in between before giving up. */
  maxResumes: number;
  /** Called with the size of every chunk delivered. */
  onBytes(n: number): void;
}

/**
 * Opens a download and wraps it in a stream that, when the body breaks or
 * ends short of Content-Length, continues with a range GET from the byte
 * where it stopped (pinned to the ETag, so a replaced object is an error).
 */
export async function resumableDownload(
  src: DownloadSource,
): Promise<ReadableStream<Uint8Array>> {
  const first = await src.get(0);
  const total = first.ContentLength;
  const etag = first.ETag;
  let body = first.Body!.transformToWebStream().getReader();
  let pos = 0;
  let resumes = 0;
  const resume = async (cause: unknown) => {
    if (++resumes > src.maxResumes) {
      const detail = `download broke at byte ${pos}: ${describeError(cause)}`;
      throw new S3Error("GET", src.url, "", detail, { cause });
    }
    body.cancel().catch(() => {});
    await backoff(resumes);
    const next = await src.get(pos, etag);
    // A server that ignores Range would send the whole object again.
    if (!next.ContentRange?.startsWith(`bytes ${pos}-`)) {
      next.Body?.transformToWebStream().cancel();
      throw new S3Error("GET", src.url, "", `range request from byte ${pos} not honoured`);
    }
    body = next.Body!.transformToWebStream().getReader();
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
        if (total === undefined || pos >= total) return ctrl.close();
        await resume(new Error(`body ended after ${pos} of ${total} bytes`));
      }
    },
    cancel: (reason) => body.cancel(reason),
  });
}

/** Waits 100 ms · 2^(attempt-1), with full jitter, before resuming a download. */
function backoff(attempt: number): Promise<void> {
  const ms = Math.random() * 100 * 2 ** (attempt - 1);
  return new Promise((resolve) => setTimeout(resolve, ms));
}
