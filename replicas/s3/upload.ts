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
import { chunksOf } from "../../lib/os/fs.ts";
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
  const { client, bucket: Bucket, key, partSize, queueSize, call } = target;
  const { UploadId } = await call(
    "PUT",
    key,
    () => client.send(new CreateMultipartUploadCommand({ Bucket, Key: key })),
  );
  const completed: CompletedPart[] = [];
  const inFlight = new Set<Promise<void>>();
  const free: Uint8Array[] = [];
  try {
    let body = first;
    for (let PartNumber = 1;; PartNumber++) {
      const part = body;
      const sent: Promise<void> = call(
        "PUT",
        key,
        () =>
          client.send(
            new UploadPartCommand({ Bucket, Key: key, UploadId, PartNumber, Body: part }),
          ),
      )
        .then((out) => {
          completed.push({ PartNumber, ETag: out.ETag });
          free.push(new Uint8Array(part.buffer));
        }).finally(() => inFlight.delete(sent));
      sent.catch(() => {}); // observed through Promise.race/all below
      inFlight.add(sent);
      if (await source.atEnd()) break;
      while (inFlight.size >= queueSize) await Promise.race(inFlight);
      body = await source.fill(partSize, free.pop() ?? new Uint8Array(partSize));
    }
    await Promise.all(inFlight);
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
    await Promise.allSettled(inFlight);
    await call(
      "DELETE",
      key,
      () => client.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId })),
    )
      .catch(() => {}); // the original failure matters more
    throw err;
  }
}

/** A failure of the data being uploaded, not of S3: `uploadObject` re-throws its cause. */
class SourceError extends Error {}

/**
 * Cuts a byte stream into parts, copying its chunks (lent ones too, see `chunksOf`) into part
 * buffers: a chunk is held only until it is copied.
 */
class PartSource {
  readonly #chunks: AsyncIterator<Uint8Array>;
  #rest: Uint8Array = new Uint8Array(0);
  #done = false;
  /** Bytes handed out in parts so far. */
  size = 0;

  constructor(data: ReadableStream<Uint8Array>) {
    this.#chunks = chunksOf(data)[Symbol.asyncIterator]();
  }

  /**
   * The next up to `max` bytes, fewer only at the end, in `buf` (which must hold `max`
   * bytes) or, without one, in a new array that grows with the data.
   */
  async fill(max: number, buf?: Uint8Array): Promise<Uint8Array> {
    let out = buf ?? new Uint8Array(0);
    let n = 0;
    while (n < max && !await this.atEnd()) {
      const k = Math.min(this.#rest.length, max - n);
      if (out.length < n + k) {
        const grown = new Uint8Array(Math.min(max, Math.max(n + k, 2 * out.length)));
        grown.set(out.subarray(0, n));
        out = grown;
      }
      out.set(this.#rest.subarray(0, k), n);
      this.#rest = this.#rest.subarray(k);
      n += k;
    }
    this.size += n;
    return out.subarray(0, n);
  }

  /** True when no byte is left (reads the next chunk when needed). */
  async atEnd(): Promise<boolean> {
    while (this.#rest.length === 0 && !this.#done) {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await this.#chunks.next();
      } catch (err) {
        throw new SourceError("reading the upload's data failed", { cause: err });
      }
      if (r.done) this.#done = true;
      else this.#rest = r.value;
    }
    return this.#rest.length === 0;
  }
}
