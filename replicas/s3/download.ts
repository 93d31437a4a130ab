/**
 * S3 reads for the shared resumable download (`../resumable_download.ts`): the SDK's GetObject
 * responses as its parts, which continues a body that breaks, stalls or ends short with a
 * range GET from the byte where it stopped, pinned to the first response's ETag. The same
 * serves one part of an object fetched in parallel parts.
 *
 * @module
 */

import type { GetObjectCommandOutput } from "@aws-sdk/client-s3";
import { type DownloadPart, type DownloadSource, rangeStart } from "../resumable_download.ts";
import { describeError, S3Error } from "./errors.ts";

export { contentRangeTotal } from "../resumable_download.ts";

/** One object, or one byte range of it, to download. */
export interface S3DownloadSource {
  /** `s3://bucket/key`, for errors. */
  url: string;
  /**
   * Sends a GET from byte `from` of the object (to the end of the range this source covers),
   * pinned to `etag` when given.
   */
  get(from: number, etag?: string): Promise<GetObjectCommandOutput>;
  /** Range-GET resumptions without progress in between before giving up. */
  maxResumes: number;
  /** A body silent for this long is abandoned and resumed. */
  idleTimeoutMs: number;
  /** Called with the size of every chunk delivered. */
  onBytes(n: number): void;
  /** First byte of the range (default 0, the whole object). */
  start?: number;
  /** The ETag the object must have (the parts of one object must come from one version). */
  etag?: string;
  /** The response to the first GET, when the caller already sent it. */
  first?: GetObjectCommandOutput;
}

/** The shared download's view of `src`: errors are `S3Error`s naming the object. */
export function downloadSource(src: S3DownloadSource): DownloadSource {
  const part = (out: GetObjectCommandOutput): DownloadPart => ({
    body: out.Body!.transformToWebStream(),
    length: out.ContentLength,
    etag: out.ETag,
    rangeStart: rangeStart(out.ContentRange),
  });
  return {
    get: async (from, etag) => part(await src.get(from, etag)),
    maxResumes: src.maxResumes,
    idleTimeoutMs: src.idleTimeoutMs,
    onBytes: src.onBytes,
    start: src.start,
    etag: src.etag,
    first: src.first && part(src.first),
    fail: (detail, { cause, replaced }) =>
      new S3Error("GET", src.url, replaced ? "PreconditionFailed" : "", detail, { cause }),
    describe: describeError,
  };
}
