/**
 * Blob reads and listings with Deno's `fetch`, authorised by a short-lived read-only SAS that
 * the Azure SDK signs with the account key. The SDK's own requests go through `node:http`, which
 * under Deno buffers several times more of a body than `fetch` does, and its HTTPS needs
 * `--allow-sys`; `fetch` streams with backpressure. The SDK's listing also turns the XML into
 * models slowly: 0.8 s and about 40 MB of heap for 1,117 blobs, against a few milliseconds here
 * (see `listing.ts`). Failed requests are retried with exponential backoff, as the SDK retries
 * its own; a body that breaks is resumed by `resumableDownload`.
 *
 * @module
 */

import {
  BlobSASPermissions,
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  type StorageSharedKeyCredential,
} from "@azure/storage-blob";
import type { DownloadPart } from "../resumable_download.ts";
import { contentRangeTotal, rangeStart } from "../resumable_download.ts";
import { toAbsError } from "./errors.ts";
import type { AbsTuning } from "./sdk.ts";
import type { AbsOperation } from "./errors.ts";
import { backoff } from "../../lib/os/async.ts";

/** A read of one blob, from `from` to `end` (exclusive; default the end), pinned to `etag`. */
export interface BlobRead {
  /** The blob's URL (escaped, without a query). */
  blobUrl: string;
  container: string;
  /** The blob's name in the service. */
  blobName: string;
  /** `abs://…` URL for errors. */
  url: string;
  from: number;
  end?: number;
  etag?: string;
}

/** Status codes worth another try: timeouts, throttling, server errors. */
const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** How long a read SAS is valid: a read must start within it (its body may take longer). */
const SAS_VALIDITY_MS = 60 * 60_000;

/**
 * A SAS for reading the blob `blobName` of `container`, or for listing the container's blobs
 * without one.
 */
export function readSas(
  credential: StorageSharedKeyCredential,
  container: string,
  blobName?: string,
): string {
  return generateBlobSASQueryParameters({
    containerName: container,
    blobName,
    permissions: blobName ? BlobSASPermissions.parse("r") : ContainerSASPermissions.parse("l"),
    // A few minutes back, for clocks a little ahead of the service's.
    startsOn: new Date(Date.now() - 5 * 60_000),
    expiresOn: new Date(Date.now() + SAS_VALIDITY_MS),
  }, credential).toString();
}

/**
 * GETs `url` (its query authorises it), retrying failed requests with backoff; returns the
 * first successful response, or throws an `AbsError` for `operation` on `errorUrl`.
 */
export async function getWithRetries(
  url: string,
  headers: Record<string, string>,
  tuning: Required<AbsTuning>,
  operation: AbsOperation,
  errorUrl: string,
): Promise<Response> {
  for (let attempt = 1;; attempt++) {
    const last = attempt >= tuning.maxTries;
    let res: Response;
    const abort = new AbortController();
    // Until the headers arrive; the body's pace is the reader's.
    const timer = setTimeout(() => abort.abort(), tuning.tryTimeoutMs);
    try {
      res = await fetch(url, { headers, signal: abort.signal });
    } catch (err) {
      if (last) throw toAbsError(operation, errorUrl, err);
      await backoff(attempt, tuning.retryDelayMs);
      continue;
    } finally {
      clearTimeout(timer);
    }
    if (res.ok) return res;
    await res.body?.cancel();
    if (last || !RETRY_STATUS.has(res.status)) {
      const code = res.headers.get("x-ms-error-code") ?? "";
      throw toAbsError(operation, errorUrl, {
        statusCode: res.status,
        details: { errorCode: code },
        message: `HTTP ${res.status} ${res.statusText}`.trim(),
      });
    }
    await backoff(attempt, tuning.retryDelayMs);
  }
}

/** Reads a blob range; the part's body streams, `size` is the whole blob's. */
export async function fetchBlob(
  read: BlobRead,
  credential: StorageSharedKeyCredential,
  tuning: Required<AbsTuning>,
): Promise<{ part: DownloadPart; size: number }> {
  const sas = readSas(credential, read.container, read.blobName);
  const headers: Record<string, string> = {};
  if (read.from > 0 || read.end !== undefined) {
    headers.range = `bytes=${read.from}-${read.end === undefined ? "" : read.end - 1}`;
  }
  if (read.etag) headers["if-match"] = read.etag;
  const res = await getWithRetries(`${read.blobUrl}?${sas}`, headers, tuning, "GET", read.url);
  const length = Number(res.headers.get("content-length") ?? 0);
  const range = res.headers.get("content-range") ?? undefined;
  return {
    part: {
      body: res.body ?? ReadableStream.from([]),
      length,
      etag: res.headers.get("etag") ?? undefined,
      rangeStart: rangeStart(range) ?? (read.from === 0 ? 0 : undefined),
    },
    size: contentRangeTotal(range) ?? read.from + length,
  };
}
