/**
 * The S3 `ReplicaClient`: the store primitives under `../object_store.ts` (which holds
 * v0.3.13's key layout). Key join (empty parts dropped, no leading `/`), listings, ranged
 * snapshot reads, batched deletes and the lease here; SDK set-up in `sdk.ts`, uploads in
 * `upload.ts`, resumable downloads in `download.ts`, errors in `errors.ts`. Import this module
 * dynamically, only when an S3 replica is configured: it loads the SDK.
 *
 * @module
 */

import {
  DeleteObjectsCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  ListObjectsCommand,
  type ListObjectsCommandOutput,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { LitestreamError, NotFoundError } from "../../lib/errors.ts";
import type { LeaseObject, ReadOptions } from "../../lib/replica_client.ts";
import { type Listing, ObjectStoreClient } from "../object_store.ts";
import { cleanS3Path, type S3Options, s3OptionsFromConfig, type S3ReplicaConfig } from "./url.ts";
import { callS3, S3Error, type S3Operation } from "./errors.ts";
import { type S3Counters, type S3Tuning, type SdkClients, TUNING_DEFAULTS } from "./sdk.ts";
import { newStoreCounters } from "../counters.ts";
import { leaseSdkClient, type SdkLease } from "./shared_sdk.ts";
import { uploadObject } from "./upload.ts";
import { contentRangeTotal, downloadSource, type S3DownloadSource } from "./download.ts";
import { downloadInto, resumableDownload } from "../resumable_download.ts";
import { rangedStream } from "../ranged_read.ts";

/** Key of the lease object under the replica's path (outside `generations/`: v0.3.13 never lists it). */
const LEASE_KEY = "lease.json";

/** Error codes of a conditional write whose condition failed (412, or 409 for a concurrent one). */
const CONDITION_FAILED = new Set(["PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"]);

/** Maximum keys per DeleteObjects request (an S3 limit). */
const DELETE_BATCH = 1000;

/** Which bytes of an object to read, and what is known of it already. */
type Range = Pick<S3DownloadSource, "start" | "etag" | "first"> & { end?: number };

/** Creates the client for a replica config entry (`url` and fields combined as in v0.3.13). */
export function s3ClientFromConfig(cfg: S3ReplicaConfig, tuning?: S3Tuning): S3ReplicaClient {
  return new S3ReplicaClient(s3OptionsFromConfig(cfg), tuning);
}

/** A replica in an S3 bucket (AWS or any S3-compatible server). */
export class S3ReplicaClient extends ObjectStoreClient {
  /** Backend type as v0.3.13 names it. */
  readonly type = "s3";
  /** `s3://bucket[/path]`. */
  readonly location: string;
  /** Requests and bytes so far; never reset. */
  readonly counters: S3Counters = newStoreCounters();

  readonly #bucket: string;
  /** Cleaned key prefix; `""` = bucket root. */
  readonly #path: string;
  readonly #options: S3Options;
  readonly #tuning: Required<S3Tuning>;
  #client?: Promise<SdkClients>;
  #sdkLease?: SdkLease;

  /** Validates `options` (throws `LitestreamError`); no request is made until the first operation. */
  constructor(options: S3Options, tuning: S3Tuning = {}) {
    if (!options.bucket) throw new LitestreamError("bucket required for s3 replica");
    if (!options.accessKeyId !== !options.secretAccessKey) {
      throw new LitestreamError(
        `s3://${options.bucket}: access-key-id and secret-access-key must be set together`,
      );
    }
    if (options.endpoint && !/^https?:\/\/[^/]/i.test(options.endpoint)) {
      throw new LitestreamError(
        `s3://${options.bucket}: invalid endpoint "${options.endpoint}": expected a URL such as https://host:port`,
      );
    }
    super();
    this.#bucket = options.bucket;
    this.#path = cleanS3Path(options.path);
    this.#options = options;
    this.#tuning = { ...TUNING_DEFAULTS, ...tuning };
    this.location = this.url(this.#path);
  }

  /**
   * Streams a snapshot; a broken download resumes with a range GET. With `parallelism` > 1
   * a snapshot larger than one part is fetched as ranged parts side by side, all pinned to
   * the first response's ETag, each resumed on its own.
   */
  override async readSnapshot(
    generation: string,
    index: number,
    options: ReadOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const key = this.snapshotKey(generation, index);
    const parallelism = options.parallelism ?? 1;
    if (parallelism <= 1) return await this.read(key);
    const { readPartSize: partSize } = this.#tuning;
    let first: GetObjectCommandOutput;
    try {
      first = await this.#get(key, 0, undefined, partSize);
    } catch (err) {
      // An empty object has no byte 0 to range over.
      if (err instanceof S3Error && err.code === "InvalidRange") return await this.read(key);
      throw err;
    }
    const size = contentRangeTotal(first.ContentRange);
    if (size === undefined) {
      options.onSingleStream?.(`${this.url(key)}: the server ignored Range; one stream`);
      return await this.read(key, { first });
    }
    if (size <= partSize) return await this.read(key, { first });
    const etag = first.ETag;
    return rangedStream(size, partSize, parallelism, (start, end, into, signal) =>
      downloadInto(
        this.#source(key, { start, end, etag, first: start === 0 ? first : undefined }),
        into,
        signal,
      ));
  }

  /** Reads `<path>/lease.json` and its ETag. */
  async readLease(): Promise<LeaseObject | undefined> {
    const key = this.key(LEASE_KEY);
    try {
      const out = await this.#get(key);
      const data = await out.Body!.transformToByteArray();
      this.counters.bytes.GET += data.length;
      return { data, version: out.ETag ?? "" };
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /**
   * Writes `<path>/lease.json` with `If-Match: <expected>` (or `If-None-Match: *`), after
   * reading it to compare: a store that ignores those headers (s3rver) still fails a stale
   * write, outside a short race window; AWS S3, moto, MinIO, R2 and Tigris honour them.
   */
  async writeLease(data: Uint8Array, expected: string | undefined): Promise<string | undefined> {
    if ((await this.readLease())?.version !== expected) return undefined;
    const key = this.key(LEASE_KEY);
    const { client } = await this.#sdk();
    const condition = expected === undefined ? { IfNoneMatch: "*" } : { IfMatch: expected };
    try {
      const out = await this.#call("PUT", key, () =>
        client.send(
          new PutObjectCommand({ Bucket: this.#bucket, Key: key, Body: data, ...condition }),
        ));
      this.counters.bytes.PUT += data.length;
      return out.ETag ?? "";
    } catch (err) {
      if (err instanceof S3Error && CONDITION_FAILED.has(err.code)) return undefined;
      throw err;
    }
  }

  /** Gives up the SDK client (shared, see `shared_sdk.ts`); it is taken again if used again. */
  async close(): Promise<void> {
    await this.#client?.catch(() => undefined);
    this.#client = undefined;
    this.#sdkLease?.release();
    this.#sdkLease = undefined;
  }

  // ---- keys ----

  /** Parts joined by `/`, empty ones dropped (the cleaned path has no leading `/`). */
  protected key(...parts: string[]): string {
    return [this.#path, ...parts].filter((p) => p !== "").join("/");
  }

  /** `s3://bucket/<key>`. */
  protected url(key: string): string {
    return key ? `s3://${this.#bucket}/${key}` : `s3://${this.#bucket}`;
  }

  // ---- requests ----

  /**
   * All objects (and common prefixes, with a delimiter) under `prefix`, across
   * pages. ListObjects v1 as in v0.3.13: every S3-compatible server has it
   * (s3rver's v2 continuation tokens need DES, which Deno's crypto lacks).
   */
  protected async list(prefix: string, delimited = false): Promise<Listing> {
    // Through fetch, as reads: node:https would need --allow-sys for the root certificates.
    const { reader } = await this.#sdk();
    const objects: Listing["objects"] = [];
    const prefixes: string[] = [];
    let marker: string | undefined;
    do {
      const page: ListObjectsCommandOutput = await this.#call("LIST", prefix, () =>
        reader.send(
          new ListObjectsCommand({
            Bucket: this.#bucket,
            Prefix: prefix,
            Delimiter: delimited ? "/" : undefined,
            Marker: marker,
          }),
        ));
      const keys = (page.Contents ?? []).map((o) => o.Key!);
      for (const o of page.Contents ?? []) {
        objects.push({ key: o.Key!, size: o.Size ?? 0, createdAt: o.LastModified ?? new Date(0) });
      }
      const common = (page.CommonPrefixes ?? []).map((p) => p.Prefix!);
      prefixes.push(...common);
      // NextMarker comes only with a delimiter; otherwise the last key is the marker.
      marker = page.IsTruncated
        ? page.NextMarker ?? [keys.at(-1) ?? "", common.at(-1) ?? ""].sort().pop()
        : undefined;
    } while (marker);
    return { objects, prefixes };
  }

  /** Uploads `data` to `key` (see `uploadObject`) and counts its bytes. */
  protected async write(
    key: string,
    data: ReadableStream<Uint8Array>,
  ): Promise<{ size: number; createdAt: Date }> {
    const { client } = await this.#sdk();
    const { partSize, queueSize } = this.#tuning;
    const out = await uploadObject(
      { client, bucket: this.#bucket, key, partSize, queueSize, call: this.#call },
      data,
    );
    this.counters.bytes.PUT += out.size;
    return out;
  }

  /**
   * Streams the object at `key`, or its bytes `[start, end)`, resuming a broken body with
   * range GETs (see `resumableDownload`).
   */
  protected read(key: string, range: Range = {}): Promise<ReadableStream<Uint8Array>> {
    return resumableDownload(this.#source(key, range));
  }

  /** The object at `key`, or its bytes `[start, end)`, for the shared download. */
  #source(key: string, range: Range) {
    return downloadSource({
      ...range,
      url: this.url(key),
      get: (from, etag) => this.#get(key, from, etag, range.end),
      maxResumes: this.#tuning.maxResumes,
      idleTimeoutMs: this.#tuning.idleTimeoutMs,
      onBytes: (n) => this.counters.bytes.GET += n,
    });
  }

  /** GETs the object from byte `from` up to `end` (exclusive; default the end), pinned to `etag`. */
  async #get(key: string, from = 0, etag?: string, end?: number): Promise<GetObjectCommandOutput> {
    const { reader } = await this.#sdk();
    const input = {
      Bucket: this.#bucket,
      Key: key,
      ...(from > 0 || end !== undefined ? { Range: `bytes=${from}-${end ? end - 1 : ""}` } : {}),
      ...(etag ? { IfMatch: etag } : {}),
    };
    try {
      return await this.#call("GET", key, () => reader.send(new GetObjectCommand(input)));
    } catch (err) {
      if (err instanceof S3Error && err.code === "NoSuchKey") {
        throw new NotFoundError(`${this.url(key)}: object not found`, { cause: err });
      }
      throw err;
    }
  }

  /** Deletes in batches of up to 1000 keys. */
  protected async delete(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    const { client } = await this.#sdk();
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const out = await this.#call("DELETE", batch[0], () =>
        client.send(
          new DeleteObjectsCommand({
            Bucket: this.#bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        ));
      const failed = out.Errors ?? [];
      if (failed.length > 0) {
        const e = failed[0];
        const more = failed.length > 1 ? ` (and ${failed.length - 1} more keys)` : "";
        throw new S3Error(
          "DELETE",
          this.url(e.Key ?? ""),
          e.Code ?? "",
          `${e.Message ?? "failed"}${more}`,
        );
      }
    }
  }

  /** Runs one SDK call, turning its failure into an `S3Error` that names the object and operation. */
  readonly #call = <T>(operation: S3Operation, key: string, fn: () => Promise<T>): Promise<T> =>
    callS3(operation, this.url(key), this.location, fn);

  // ---- SDK client ----

  /**
   * The SDK clients, taken on first use (created, looking up the bucket's region if needed, by
   * the first replica client of this store: see `shared_sdk.ts`).
   */
  #sdk(): Promise<SdkClients> {
    if (this.#client) return this.#client;
    const lease = this.#sdkLease = leaseSdkClient(
      this.#options,
      this.#tuning,
      this.counters,
      this.location,
    );
    this.#client = lease.client.catch((err) => {
      // Retry the set-up on the next call.
      this.#client = undefined;
      this.#sdkLease = undefined;
      lease.release();
      throw err;
    });
    return this.#client;
  }
}
