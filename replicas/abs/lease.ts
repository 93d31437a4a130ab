/**
 * The replica's lease blob (`<path>/lease.json`, outside `generations/`, where v0.3.13 never
 * looks): a compare-and-swap by conditional Put Blob, which Blob Storage and Azurite apply
 * atomically.
 *
 * @module
 */

import type { BlockBlobClient } from "@azure/storage-blob";
import { AbsError } from "./errors.ts";
import { asBuffer } from "./upload.ts";

/** Name of the lease blob under the replica's path. */
export const LEASE_KEY = "lease.json";

/** Error codes of a conditional write whose condition failed. */
const CONDITION_FAILED = new Set(["ConditionNotMet", "BlobAlreadyExists", "BlobNotFound"]);

/**
 * Puts `data` in `blob` with `If-Match: <expected>` (or `If-None-Match: *` when `expected` is
 * undefined); returns the new ETag, or undefined when the condition failed. `send` runs the
 * request (naming the blob in its errors).
 */
export async function putIfVersion(
  blob: BlockBlobClient,
  data: Uint8Array,
  expected: string | undefined,
  send: <T>(fn: () => Promise<T>) => Promise<T>,
): Promise<string | undefined> {
  const conditions = expected === undefined ? { ifNoneMatch: "*" } : { ifMatch: expected };
  try {
    const out = await send(() =>
      blob.upload(asBuffer(data), data.length, {
        conditions,
        blobHTTPHeaders: { blobContentType: "application/json" },
      })
    );
    return out.etag ?? "";
  } catch (err) {
    if (err instanceof AbsError && CONDITION_FAILED.has(err.code)) return undefined;
    throw err;
  }
}
