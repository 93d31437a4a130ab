/**
 * Resumable S3 downloads: a body that breaks, or ends short of its
 * Content-Length, continues with a range GET from the byte where it stopped,
 * pinned to the first response's ETag so a replaced object is an error. The
 * same serves one part of an object fetched in parallel parts.
 *
 * @module
 */

import type { GetObjectCommandOutput } from "@aws-sdk/client-s3";
import { describeError, S3Error } from "./errors.ts";
import { backoff } from "../../lib/os/async.ts";

/** One object, or one byte range of it, to download. */
export interface DownloadSource {
  /** `s3://bucket/key`, for errors. */
  url: string;
  /**
   * Sends a GET from byte `from` of the object (to the end of the range this source covers),
   * pinned to `etag` when given.
   */
  get(from: number, etag?: string): Promise<GetObjectCommandOutput>;
  /** Range-GET resumptions without progress in between before giving up. */
  maxResumes: number;
  /** Called with the size of every chunk delivered. */
  onBytes(n: number): void;
  /** First byte of the range (default 0, the whole object). */
  start?: number;
  /** The ETag the object must have (the parts of one object must come from one version). */
  etag?: string;
  /** The response to the first GET, when the caller already sent it. */
  first?: GetObjectCommandOutput;
}

/**
 * Opens a download and wraps it in a stream that, when the body breaks or
 * ends short of Content-Length, continues with a range GET from the byte
 * where it stopped (pinned to the ETag, so a replaced object is an error).
 */
export async function resumableDownload(
  src: DownloadSource,
): Promise<ReadableStream<Uint8Array>> {
  let pos = src.start ?? 0;
  const first = src.first ?? await src.get(pos, src.etag);
  const end = first.ContentLength === undefined ? undefined : pos + first.ContentLength;
  const etag = src.etag ?? first.ETag;
  // Servers that ignore If-Match (s3rver does) still name the version they send.
  const sameObject = (res: GetObjectCommandOutput) => {
    if (etag && res.ETag && res.ETag !== etag) {
      res.Body?.transformToWebStream().cancel();
      throw new S3Error(
        "GET",
        src.url,
        "PreconditionFailed",
        "the object was replaced during the download (ETag changed)",
      );
    }
  };
  sameObject(first);
  let body = first.Body!.transformToWebStream().getReader();
  let resumes = 0;
  const resume = async (cause: unknown) => {
    if (++resumes > src.maxResumes) {
      const detail = `download broke at byte ${pos}: ${describeError(cause)}`;
      throw new S3Error("GET", src.url, "", detail, { cause });
    }
    body.cancel().catch(() => {});
    await backoff(resumes);
    const next = await src.get(pos, etag);
    sameObject(next);
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
        if (end === undefined || pos >= end) return ctrl.close();
        await resume(new Error(`body ended at byte ${pos} of ${end}`));
      }
    },
    cancel: (reason) => body.cancel(reason),
  });
}

/** The object's total size from a `Content-Range: bytes a-b/TOTAL` header, if it has one. */
export function contentRangeTotal(contentRange: string | undefined): number | undefined {
  const m = contentRange?.match(/^bytes \d+-\d+\/(\d+)$/);
  return m ? Number(m[1]) : undefined;
}
