/**
 * Blob reads with Deno's `fetch`, authorised by a short-lived read-only SAS that the Azure SDK
 * signs with the account key. The SDK's own reads go through `node:http`, which under Deno
 * buffers several times more of a body than `fetch` does, and its HTTPS needs `--allow-sys`;
 * `fetch` streams with backpressure. Failed requests are retried with exponential backoff, as
 * the SDK retries its own; a body that breaks is resumed by `resumableDownload`.
 *
 * @module
 */

import {
  BlobSASPermissions,
  generateBlobSASQueryParameters,
  type StorageSharedKeyCredential,
} from "@azure/storage-blob";
import type { DownloadPart } from "../resumable_download.ts";
import { contentRangeTotal, rangeStart } from "../resumable_download.ts";
import { toAbsError } from "./errors.ts";
import type { AbsTuning } from "./sdk.ts";
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

/** Reads a blob range; the part's body streams, `size` is the whole blob's. */
export async function fetchBlob(
  read: BlobRead,
  credential: StorageSharedKeyCredential,
  tuning: Required<AbsTuning>,
): Promise<{ part: DownloadPart; size: number }> {
  const sas = generateBlobSASQueryParameters({
    containerName: read.container,
    blobName: read.blobName,
    permissions: BlobSASPermissions.parse("r"),
    // A few minutes back, for clocks a little ahead of the service's.
    startsOn: new Date(Date.now() - 5 * 60_000),
    expiresOn: new Date(Date.now() + SAS_VALIDITY_MS),
  }, credential).toString();
  const headers: Record<string, string> = {};
  if (read.from > 0 || read.end !== undefined) {
    headers.range = `bytes=${read.from}-${read.end === undefined ? "" : read.end - 1}`;
  }
  if (read.etag) headers["if-match"] = read.etag;
  for (let attempt = 1;; attempt++) {
    const last = attempt >= tuning.maxTries;
    let res: Response;
    const abort = new AbortController();
    // Until the headers arrive; the body's pace is the reader's.
    const timer = setTimeout(() => abort.abort(), tuning.tryTimeoutMs);
    try {
      res = await fetch(`${read.blobUrl}?${sas}`, { headers, signal: abort.signal });
    } catch (err) {
      if (last) throw toAbsError("GET", read.url, err);
      await backoff(attempt, tuning.retryDelayMs);
      continue;
    } finally {
      clearTimeout(timer);
    }
    if (res.ok) {
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
    await res.body?.cancel();
    if (last || !RETRY_STATUS.has(res.status)) {
      const code = res.headers.get("x-ms-error-code") ?? "";
      throw toAbsError("GET", read.url, {
        statusCode: res.status,
        details: { errorCode: code },
        message: `HTTP ${res.status} ${res.statusText}`.trim(),
      });
    }
    await backoff(attempt, tuning.retryDelayMs);
  }
}
