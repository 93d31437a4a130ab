/**
 * Resumable S3 downloads: the SDK's GetObject responses fed to the shared
 * `resumableDownload` (`../resumable_download.ts`), which continues a body
 * that breaks or ends short with a range GET from the byte where it stopped,
 * pinned to the first response's ETag. The same serves one part of an object
 * fetched in parallel parts.
 *
 * @module
 */

import type { GetObjectCommandOutput } from "@aws-sdk/client-s3";
import {
  type DownloadPart,
  rangeStart,
  resumableDownload as resumable,
} from "../resumable_download.ts";
import { describeError, S3Error } from "./errors.ts";

export { contentRangeTotal } from "../resumable_download.ts";

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
export function resumableDownload(src: DownloadSource): Promise<ReadableStream<Uint8Array>> {
  const part = (out: GetObjectCommandOutput): DownloadPart => ({
    body: out.Body!.transformToWebStream(),
    length: out.ContentLength,
    etag: out.ETag,
    rangeStart: rangeStart(out.ContentRange),
  });
  return resumable({
    get: async (from, etag) => part(await src.get(from, etag)),
    maxResumes: src.maxResumes,
    onBytes: src.onBytes,
    start: src.start,
    etag: src.etag,
    first: src.first && part(src.first),
    fail: (detail, { cause, replaced }) =>
      new S3Error("GET", src.url, replaced ? "PreconditionFailed" : "", detail, { cause }),
    describe: describeError,
  });
}
