/**
 * S3 uploads of a byte stream of unknown length: one PutObject when it fits
 * in a part, else a multipart upload with a bounded number of parts in
 * flight, sent from reused part buffers and aborted on failure.
 *
 * @module
 */

import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { PartSource, sendParts, SourceError } from "../part_source.ts";
import type { S3Call } from "./errors.ts";

/** Where an upload goes and how it is cut. */
export interface UploadTarget {
  client: S3Client;
  bucket: string;
  key: string;
  /** Part size in bytes (≥ 5 MiB). */
  partSize: number;
  /** Parts in flight at most. */
  queueSize: number;
  /** Sends each request, naming the object in its errors. */
  call: S3Call;
}

/**
 * Uploads `data` to `target.key`: one PutObject when it fits in a part, else
 * a multipart upload with at most `queueSize` parts in flight, each sent from
 * a reused part buffer (about (queueSize + 1) × partSize in all), and aborted
 * on failure. The SDK retries each request. `createdAt` is the start time, as
 * in v0.3.13; LastModified from a later listing is what restore uses.
 */
export async function uploadObject(
  target: UploadTarget,
  data: ReadableStream<Uint8Array>,
): Promise<{ size: number; createdAt: Date }> {
  const { client, bucket: Bucket, key, partSize, call } = target;
  const createdAt = new Date();
  const source = new PartSource(data);
  try {
    const first = await source.fill(partSize);
    if (await source.atEnd()) {
      await call(
        "PUT",
        key,
        () => client.send(new PutObjectCommand({ Bucket, Key: key, Body: first })),
      );
    } else {
      await multipart(target, first, source);
    }
  } catch (err) {
    // A failure to produce the data is not an S3 failure: re-thrown as is.
    throw err instanceof SourceError ? err.cause : err;
  }
  return { size: source.size, createdAt };
}

/** Uploads `first` (a full part) and the rest of `source` as a multipart upload. */
async function multipart(target: UploadTarget, first: Uint8Array, source: PartSource) {
  const { client, bucket: Bucket, key, call } = target;
  const { UploadId } = await call(
    "PUT",
    key,
    () => client.send(new CreateMultipartUploadCommand({ Bucket, Key: key })),
  );
  const completed: CompletedPart[] = [];
  try {
    await sendParts(source, first, target, async (PartNumber, Body) => {
      const out = await call(
        "PUT",
        key,
        () => client.send(new UploadPartCommand({ Bucket, Key: key, UploadId, PartNumber, Body })),
      );
      completed.push({ PartNumber, ETag: out.ETag });
    });
    completed.sort((a, b) => a.PartNumber! - b.PartNumber!);
    await call("PUT", key, () =>
      client.send(
        new CompleteMultipartUploadCommand({
          Bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: completed },
        }),
      ));
  } catch (err) {
    await call(
      "DELETE",
      key,
      () => client.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId })),
    )
      .catch(() => {}); // the original failure matters more
    throw err;
  }
}
