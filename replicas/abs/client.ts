/**
 * The Azure Blob Storage `ReplicaClient`: the store primitives under `../object_store.ts`
 * (which holds v0.3.13's layout), with blob names joined as Go's `path.Join` (a leading `/`
 * kept): name join, listings, reads, deletes and the lease here; SDK set-up in `sdk.ts`, uploads
 * in `upload.ts`, errors in `errors.ts`. Import this module dynamically, only
 * when an `abs` replica is configured: it loads the Azure SDK.
 *
 * @module
 */

import type { ContainerClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { NotFoundError } from "../../lib/errors.ts";
import type { LeaseObject, ReadOptions } from "../../lib/replica_client.ts";
import { type Listing, ObjectStoreClient } from "../object_store.ts";
import { type AbsOptions, absOptionsFromConfig, type AbsReplicaConfig, goPathJoin } from "./url.ts";
import { AbsError, type AbsOperation, callAbs, describeError } from "./errors.ts";
import {
  downloadInto,
  type DownloadPart,
  type DownloadSource,
  resumableDownload,
} from "../resumable_download.ts";
import { rangedStream } from "../ranged_read.ts";
import { type AbsTuning, createContainerClient, createCredential, TUNING_DEFAULTS } from "./sdk.ts";
import { fetchBlob } from "./download.ts";
import { listBlobs, serviceName } from "./listing.ts";
import { uploadBlob } from "./upload.ts";
import { LEASE_KEY, putIfVersion } from "./lease.ts";
import { newStoreCounters, type StoreCounters } from "../counters.ts";

/** Deletes in flight at once (Blob Storage deletes one blob per request). */
const DELETE_CONCURRENCY = 8;

/** Request and byte counters of one client; read by metrics and tests. */
export type AbsCounters = StoreCounters;

/** Creates the client for a replica config entry (`url` and fields combined as in v0.3.13). */
export function absClientFromConfig(cfg: AbsReplicaConfig, tuning?: AbsTuning): AbsReplicaClient {
  return new AbsReplicaClient(absOptionsFromConfig(cfg), tuning);
}

/** Which bytes of a blob to read, and what is known of it already. */
type Range = Pick<DownloadSource, "start" | "etag" | "first"> & { end?: number };

/** A replica in an Azure Blob Storage container (or Azurite, or a sovereign cloud). */
export class AbsReplicaClient extends ObjectStoreClient {
  /** Backend type as v0.3.13 names it. */
  readonly type = "abs";
  /** `abs://account@container[/path]`. */
  readonly location: string;
  /** Operations and bytes so far; never reset. */
  readonly counters: AbsCounters = newStoreCounters();

  readonly #options: AbsOptions;
  /** Key prefix as v0.3.13 joins it; `""` = container root. */
  readonly #path: string;
  readonly #tuning: Required<AbsTuning>;
  #container?: ContainerClient;
  #sharedKey?: StorageSharedKeyCredential;

  /** No request is made until the first operation. */
  constructor(options: AbsOptions, tuning: AbsTuning = {}) {
    super();
    this.#options = options;
    const path = goPathJoin(options.path);
    this.#path = path === "." ? "" : path;
    this.#tuning = { ...TUNING_DEFAULTS, ...tuning };
    this.location = this.url(this.#path);
  }

  /**
   * Streams a snapshot; a broken download resumes with ranged reads. With `parallelism` > 1 a
   * snapshot larger than one part is fetched as ranged parts side by side, all pinned to the
   * first response's ETag, each resumed on its own.
   */
  override async readSnapshot(
    generation: string,
    index: number,
    options: ReadOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const key = this.snapshotKey(generation, index);
    const parallelism = options.parallelism ?? 1;
    const { readPartSize: partSize } = this.#tuning;
    let first;
    try {
      first = await this.#get(key, 0, undefined, parallelism > 1 ? partSize : undefined);
    } catch (err) {
      // An empty blob has no byte 0 to range over.
      if (err instanceof AbsError && err.code === "InvalidRange") return await this.read(key);
      throw err;
    }
    const size = first.size;
    if (parallelism <= 1 || size <= partSize) return await this.read(key, { first: first.part });
    const etag = first.part.etag;
    return rangedStream(size, partSize, parallelism, (start, end, into, signal) =>
      downloadInto(
        this.#source(key, { start, end, etag, first: start === 0 ? first.part : undefined }),
        into,
        signal,
      ));
  }

  /** Reads `<path>/lease.json`; its ETag is the version. */
  async readLease(): Promise<LeaseObject | undefined> {
    const key = this.key(LEASE_KEY);
    try {
      const { part } = await this.#get(key);
      const data = await new Response(part.body).bytes();
      this.counters.bytes.GET += data.length;
      return { data, version: part.etag ?? "" };
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /** Writes `<path>/lease.json` if its version is still `expected` (see `putIfVersion`). */
  async writeLease(data: Uint8Array, expected: string | undefined): Promise<string | undefined> {
    const key = this.key(LEASE_KEY);
    const blob = this.#client().getBlockBlobClient(serviceName(key));
    const version = await putIfVersion(blob, data, expected, (fn) => this.#counted("PUT", key, fn));
    if (version !== undefined) this.counters.bytes.PUT += data.length;
    return version;
  }

  // ---- names ----

  /** Go's `path.Join(path, parts…)`, as v0.3.13 names blobs. */
  protected key(...parts: string[]): string {
    return goPathJoin(this.#path, ...parts);
  }

  /** `abs://account@container/<key>`. */
  protected url(key: string): string {
    const root = `abs://${this.#options.accountName}@${this.#options.container}`;
    return key ? `${root}/${key}` : root;
  }

  // ---- requests ----

  /** Every blob (and, by hierarchy, every virtual directory) under `prefix`, across pages. */
  protected async list(prefix: string, hierarchy = false): Promise<Listing> {
    const ref = {
      containerUrl: this.#client().url,
      container: this.#options.container,
      credential: this.#credential(),
      tuning: this.#tuning,
      url: this.url(prefix),
    };
    return await listBlobs(
      ref,
      serviceName(prefix),
      hierarchy,
      () => this.counters.requests.LIST++,
    );
  }

  /** Uploads `data` to `key` (see `uploadBlob`) and counts its bytes. */
  protected async write(
    key: string,
    data: ReadableStream<Uint8Array>,
  ): Promise<{ size: number; createdAt: Date }> {
    const blob = this.#client().getBlockBlobClient(serviceName(key));
    const { blockSize, queueSize } = this.#tuning;
    const out = await uploadBlob(
      { blob, key, blockSize, queueSize, call: this.#counted },
      data,
    );
    this.counters.bytes.PUT += out.size;
    return out;
  }

  /**
   * Streams the blob at `key`, or its bytes `[start, end)`, resuming a broken body with ranged
   * reads (see `resumableDownload`).
   */
  protected read(key: string, range: Range = {}): Promise<ReadableStream<Uint8Array>> {
    return resumableDownload(this.#source(key, range));
  }

  /** The blob at `key`, or its bytes `[start, end)`, for the shared download. */
  #source(key: string, range: Range): DownloadSource {
    const url = this.url(key);
    return {
      ...range,
      get: async (from, etag) => (await this.#get(key, from, etag, range.end)).part,
      maxResumes: this.#tuning.maxResumes,
      onBytes: (n) => this.counters.bytes.GET += n,
      fail: (detail, { cause, replaced }) =>
        new AbsError("GET", url, replaced ? "ConditionNotMet" : "", detail, { cause }),
      describe: describeError,
      idleTimeoutMs: this.#tuning.tryTimeoutMs,
    };
  }

  /**
   * Reads the blob from byte `from` up to `end` (exclusive; default the end), pinned to `etag`
   * (see `fetchBlob`); `size` is the whole blob's.
   */
  async #get(
    key: string,
    from = 0,
    etag?: string,
    end?: number,
  ): Promise<{ part: DownloadPart; size: number }> {
    const url = this.url(key);
    const blobName = serviceName(key);
    const read = {
      blobUrl: this.#client().getBlobClient(blobName).url,
      container: this.#options.container,
      blobName,
      url,
      from,
      end,
      etag,
    };
    return await this.#counted("GET", key, () => fetchBlob(read, this.#credential(), this.#tuning))
      .catch((err) => {
        if (err instanceof AbsError && err.code === "BlobNotFound") {
          throw new NotFoundError(`${url}: object not found`, { cause: err });
        }
        throw err;
      });
  }

  /** Deletes blobs, several requests in flight; a missing blob is not an error. */
  protected async delete(keys: string[]): Promise<void> {
    const container = keys.length > 0 ? this.#client() : undefined;
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const key = keys[next++];
        await this.#counted(
          "DELETE",
          key,
          () => container!.getBlobClient(serviceName(key)).deleteIfExists(),
        );
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(DELETE_CONCURRENCY, keys.length) }, worker),
    );
  }

  /** Runs one SDK call, turning its failure into an `AbsError` naming the blob and operation. */
  readonly #call = <T>(operation: AbsOperation, key: string, fn: () => Promise<T>): Promise<T> =>
    callAbs(operation, this.url(key), fn);

  /** `#call`, counting the operation (listings count their pages instead). */
  readonly #counted = <T>(
    operation: AbsOperation,
    key: string,
    fn: () => Promise<T>,
  ): Promise<T> => {
    this.counters.requests[operation]++;
    return this.#call(operation, key, fn);
  };

  /** The SDK's container client, created on first use. */
  #client(): ContainerClient {
    return this.#container ??= createContainerClient(
      this.#options,
      this.#tuning,
      this.#credential(),
    );
  }

  #credential(): StorageSharedKeyCredential {
    return this.#sharedKey ??= createCredential(this.#options);
  }
}
