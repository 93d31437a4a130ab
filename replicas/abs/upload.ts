/**
 * Blob uploads of a byte stream of unknown length: one Put Blob when it fits
 * in a block, else staged blocks (a bounded number in flight, sent from reused
 * buffers) committed with one Put Block List. Staged blocks are invisible
 * until the commit, so a broken upload never shows under the blob's name (the
 * service drops uncommitted blocks after a week).
 *
 * @module
 */

import type { BlockBlobClient } from "@azure/storage-blob";
import { Buffer } from "node:buffer";
import { PartSource, sendParts, SourceError } from "../part_source.ts";
import type { AbsCall } from "./errors.ts";

/** Where an upload goes and how it is cut. */
export interface UploadTarget {
  blob: BlockBlobClient;
  /** The blob name, for errors. */
  key: string;
  /** Block size in bytes; bodies up to this size go as one Put Blob. */
  blockSize: number;
  /** Blocks in flight at most. */
  queueSize: number;
  /** Sends each request, naming the blob in its errors. */
  call: AbsCall;
}

/** v0.3.13 stores every object as `application/octet-stream`. */
const HEADERS = { blobHTTPHeaders: { blobContentType: "application/octet-stream" } };

/**
 * Uploads `data` to `target.blob`: one Put Blob when it fits in a block, else
 * staged blocks with at most `queueSize` in flight (about (queueSize + 1) ×
 * blockSize of memory) and one Put Block List. The SDK retries each request.
 * `createdAt` is the start time, as in v0.3.13.
 */
export async function uploadBlob(
  target: UploadTarget,
  data: ReadableStream<Uint8Array>,
): Promise<{ size: number; createdAt: Date }> {
  const { blob, key, blockSize, call } = target;
  const createdAt = new Date();
  const source = new PartSource(data);
  try {
    const first = await source.fill(blockSize);
    if (await source.atEnd()) {
      await call("PUT", key, () => blob.upload(asBuffer(first), first.length, HEADERS));
    } else {
      await stagedBlocks(target, first, source);
    }
  } catch (err) {
    // A failure to produce the data is not a storage failure: re-thrown as is.
    throw err instanceof SourceError ? err.cause : err;
  }
  return { size: source.size, createdAt };
}

/** Stages `first` and the rest of `source` as blocks, then commits their list. */
async function stagedBlocks(target: UploadTarget, first: Uint8Array, source: PartSource) {
  const { blob, key, call, blockSize, queueSize } = target;
  // Block IDs must have one length within a blob; a fresh prefix keeps them
  // apart from the blocks of an earlier, abandoned upload of the same name.
  const prefix = crypto.randomUUID();
  const id = (n: number) => btoa(`${prefix}-${String(n).padStart(6, "0")}`);
  let count = 0;
  await sendParts(source, first, { partSize: blockSize, queueSize }, async (n, body) => {
    count = Math.max(count, n);
    await call("PUT", key, () => blob.stageBlock(id(n), asBuffer(body), body.length));
  });
  const ids = Array.from({ length: count }, (_, i) => id(i + 1));
  await call("PUT", key, () => blob.commitBlockList(ids, HEADERS));
}

/** A Buffer view of `bytes` (no copy): the SDK's Node HTTP client sends Buffers. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
