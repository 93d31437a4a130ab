/**
 * The S3 `ReplicaClient`, on `@aws-sdk/client-s3`, with v0.3.13's key layout:
 * `<path>/generations/<gen>/snapshots|wal/<name>`. Import this module
 * dynamically, only when an S3 replica is configured: it loads the SDK.
 *
 * @module
 */

import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  ListObjectsCommand,
  type ListObjectsCommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import { Agent as HttpsAgent } from "node:https";
import { LitestreamError, NotFoundError } from "../../lib/errors.ts";
import { chunksOf } from "../../lib/os/fs.ts";
import { VERSION } from "../../lib/version.ts";
import {
  comparePos,
  isGeneration,
  parseSnapshotName,
  parseWalSegmentName,
  type Pos,
  snapshotName,
  walSegmentName,
} from "../../lib/names.ts";
import type {
  RecordInfo,
  ReplicaClient,
  SnapshotInfo,
  WalSegmentInfo,
} from "../../lib/replica_client.ts";
import { isRecordName, RECORDS_DIR } from "../../lib/core/checksum_record.ts";
import { cleanS3Path, type S3Options, s3OptionsFromConfig, type S3ReplicaConfig } from "./url.ts";

/** Object-store operations, labelled as v0.3.13's `litestream_replica_operation_total`. */
export type S3Operation = "GET" | "PUT" | "LIST" | "DELETE";

/** Request and byte counters of one client; read by metrics and tests. */
export interface S3Counters {
  /** HTTP requests sent (each retry counts), by operation. */
  readonly requests: Record<S3Operation, number>;
  /** Object bytes uploaded (`PUT`) and downloaded (`GET`). */
  readonly bytes: Record<"GET" | "PUT", number>;
}

/** Transfer and resilience knobs; the defaults suit production, tests shrink them. */
export interface S3Tuning {
  /** Multipart part size in bytes (≥ 5 MiB); bodies up to this size go as one PutObject. Default 8 MiB. */
  partSize?: number;
  /** Parts uploaded concurrently; memory use is about (queueSize + 1) × partSize. Default 2. */
  queueSize?: number;
  /** Attempts per request (SDK standard retry: exponential backoff with jitter). Default 5. */
  maxAttempts?: number;
  /** TCP/TLS connect timeout. Default 10 s. */
  connectTimeoutMs?: number;
  /** Inactivity timeout of a request's socket, also while streaming a body. Default 30 s. */
  idleTimeoutMs?: number;
  /** Time limit from sending a request to its response headers (uploads included). Default 5 min. */
  requestTimeoutMs?: number;
  /** Range-GET resumptions of a download without progress in between. Default 5. */
  maxResumes?: number;
}

/** An S3 request failure, naming the object URL and the operation. */
export class S3Error extends LitestreamError {
  /** Creates an error for `operation` on `url` (`s3://bucket/key`) with the S3 error `code`. */
  constructor(
    readonly operation: S3Operation,
    readonly url: string,
    readonly code: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`${url}: ${operation} failed: ${code ? `${code}: ` : ""}${detail}`, options);
  }
}

const DEFAULTS: Required<S3Tuning> = {
  partSize: 8 * 1024 * 1024,
  queueSize: 2,
  maxAttempts: 5,
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  requestTimeoutMs: 300_000,
  maxResumes: 5,
};

/** Maximum keys per DeleteObjects request (an S3 limit). */
const DELETE_BATCH = 1000;

/** SDK command → counted operation. */
const COMMAND_OPERATIONS: Record<string, S3Operation> = {
  GetObjectCommand: "GET",
  GetBucketLocationCommand: "GET",
  PutObjectCommand: "PUT",
  CreateMultipartUploadCommand: "PUT",
  UploadPartCommand: "PUT",
  CompleteMultipartUploadCommand: "PUT",
  ListObjectsCommand: "LIST",
  DeleteObjectsCommand: "DELETE",
  AbortMultipartUploadCommand: "DELETE",
};

/** Hints appended to errors whose fix is in the user's configuration. */
const HINTS: Record<string, string> = {
  NoSuchBucket: "create the bucket or correct its name",
  PreconditionFailed: "the object was replaced during the download",
  InvalidAccessKeyId: "check access-key-id and secret-access-key",
  SignatureDoesNotMatch: "check access-key-id and secret-access-key",
  AccessDenied: "check the credentials' permissions on this bucket",
};

const NO_CREDENTIALS = "no S3 credentials found: set access-key-id and secret-access-key in the " +
  "replica config, or LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY (or the AWS_* " +
  "variables, an AWS profile or an instance role)";

/** Creates the client for a replica config entry (`url` and fields combined as in v0.3.13). */
export function s3ClientFromConfig(cfg: S3ReplicaConfig, tuning?: S3Tuning): S3ReplicaClient {
  return new S3ReplicaClient(s3OptionsFromConfig(cfg), tuning);
}

/** A replica in an S3 bucket (AWS or any S3-compatible server). */
export class S3ReplicaClient implements ReplicaClient {
  /** Backend type as v0.3.13 names it. */
  readonly type = "s3";
  /** `s3://bucket[/path]`. */
  readonly location: string;
  /** Requests and bytes so far; never reset. */
  readonly counters: S3Counters = {
    requests: { GET: 0, PUT: 0, LIST: 0, DELETE: 0 },
    bytes: { GET: 0, PUT: 0 },
  };

  readonly #bucket: string;
  /** Cleaned key prefix; `""` = bucket root. */
  readonly #path: string;
  readonly #options: S3Options;
  readonly #tuning: Required<S3Tuning>;
  #client?: Promise<S3Client>;

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
    this.#bucket = options.bucket;
    this.#path = cleanS3Path(options.path);
    this.#options = options;
    this.#tuning = { ...DEFAULTS, ...tuning };
    this.location = this.#url(this.#path);
  }

  /** Lists `<path>/generations/` with a delimiter and keeps valid generation names. */
  async generations(): Promise<string[]> {
    const { prefixes } = await this.#list(this.#key("generations") + "/", "/");
    return prefixes
      .map((p) => p.slice(0, -1).split("/").pop()!)
      .filter(isGeneration)
      .sort();
  }

  /** Snapshots of a generation sorted by index, with LastModified as `createdAt`. */
  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const dir = this.#dir(generation, "snapshots");
    const { objects } = await this.#list(dir, "/");
    const out: SnapshotInfo[] = [];
    for (const obj of objects) {
      const index = parseSnapshotName(obj.key.slice(dir.length));
      if (index !== undefined) {
        out.push({ generation, index, size: obj.size, createdAt: obj.modified });
      }
    }
    return out.sort((a, b) => a.index - b.index);
  }

  /** WAL segments of a generation sorted by (index, offset). */
  async walSegments(generation: string): Promise<WalSegmentInfo[]> {
    const dir = this.#dir(generation, "wal");
    const { objects } = await this.#list(dir, "/");
    const out: WalSegmentInfo[] = [];
    for (const obj of objects) {
      const pos = parseWalSegmentName(obj.key.slice(dir.length));
      if (pos) out.push({ generation, ...pos, size: obj.size, createdAt: obj.modified });
    }
    return out.sort(comparePos);
  }

  /** Streams a snapshot; a broken download resumes with a range GET. */
  async readSnapshot(generation: string, index: number): Promise<ReadableStream<Uint8Array>> {
    return await this.#read(this.#snapshotKey(generation, index));
  }

  /** Streams a WAL segment; a broken download resumes with a range GET. */
  async readWalSegment(pos: Pos): Promise<ReadableStream<Uint8Array>> {
    return await this.#read(this.#segmentKey(pos));
  }

  /** Uploads a snapshot (multipart when larger than one part); S3 makes it visible only when complete. */
  async writeSnapshot(
    generation: string,
    index: number,
    data: ReadableStream<Uint8Array>,
  ): Promise<SnapshotInfo> {
    const { size, createdAt } = await this.#write(this.#snapshotKey(generation, index), data);
    return { generation, index, size, createdAt };
  }

  /** Uploads a WAL segment. */
  async writeWalSegment(pos: Pos, data: ReadableStream<Uint8Array>): Promise<WalSegmentInfo> {
    const { size, createdAt } = await this.#write(this.#segmentKey(pos), data);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size, createdAt };
  }

  /** Deletes one snapshot; a missing one is not an error. */
  async deleteSnapshot(generation: string, index: number): Promise<void> {
    await this.#delete([this.#snapshotKey(generation, index)]);
  }

  /** Deletes WAL segments in batches of up to 1000 keys. */
  async deleteWalSegments(segments: Pos[]): Promise<void> {
    await this.#delete(segments.map((pos) => this.#segmentKey(pos)));
  }

  /** Deletes every object under `<path>/generations/<gen>/`. */
  async deleteGeneration(generation: string): Promise<void> {
    const { objects } = await this.#list(this.#key("generations", this.#gen(generation)) + "/");
    await this.#delete(objects.map((o) => o.key));
  }

  /** `s3://bucket/<key>` of a snapshot or WAL segment. */
  describe(kind: "snapshot" | "wal", pos: Pos): string {
    return this.#url(
      kind === "snapshot" ? this.#snapshotKey(pos.generation, pos.index) : this.#segmentKey(pos),
    );
  }

  /** `s3://bucket/<key>` of a checksum record. */
  describeRecord(generation: string, name: string): string {
    return this.#url(this.#recordKey(generation, name));
  }

  /** Checksum records of a generation, sorted by name. */
  async records(generation: string): Promise<RecordInfo[]> {
    const dir = this.#key("generations", this.#gen(generation), RECORDS_DIR) + "/";
    const { objects } = await this.#list(dir, "/");
    return objects
      .map((o) => ({
        generation,
        name: o.key.slice(dir.length),
        size: o.size,
        createdAt: o.modified,
      }))
      .filter((r) => isRecordName(r.name))
      .sort((a, b) => a.name < b.name ? -1 : 1);
  }

  /** Reads one checksum record. */
  async readRecord(generation: string, name: string): Promise<Uint8Array> {
    return await new Response(await this.#read(this.#recordKey(generation, name))).bytes();
  }

  /** Uploads one checksum record. */
  async writeRecord(generation: string, name: string, data: Uint8Array): Promise<RecordInfo> {
    const { size, createdAt } = await this.#write(
      this.#recordKey(generation, name),
      ReadableStream.from([data]),
    );
    return { generation, name, size, createdAt };
  }

  /** Deletes checksum records. */
  async deleteRecords(generation: string, names: string[]): Promise<void> {
    await this.#delete(names.map((n) => this.#recordKey(generation, n)));
  }

  /** Closes idle connections; the client reconnects if used again. */
  async close(): Promise<void> {
    const client = await this.#client?.catch(() => undefined);
    this.#client = undefined;
    client?.destroy();
  }

  // ---- keys ----

  #key(...parts: string[]): string {
    return [this.#path, ...parts].filter((p) => p !== "").join("/");
  }

  #gen(generation: string): string {
    if (!isGeneration(generation)) {
      throw new LitestreamError(`invalid generation name: ${generation}`);
    }
    return generation;
  }

  #dir(generation: string, kind: "snapshots" | "wal"): string {
    return this.#key("generations", this.#gen(generation), kind) + "/";
  }

  #snapshotKey(generation: string, index: number): string {
    return this.#dir(generation, "snapshots") + snapshotName(index);
  }

  #recordKey(generation: string, name: string): string {
    return this.#key("generations", this.#gen(generation), RECORDS_DIR, name);
  }

  #segmentKey(pos: Pos): string {
    return this.#dir(pos.generation, "wal") + walSegmentName(pos.index, pos.offset);
  }

  #url(key: string): string {
    return key ? `s3://${this.#bucket}/${key}` : `s3://${this.#bucket}`;
  }

  // ---- requests ----

  /**
   * All objects (and common prefixes, with a delimiter) under `prefix`, across
   * pages. ListObjects v1 as in v0.3.13: every S3-compatible server has it
   * (s3rver's v2 continuation tokens need DES, which Deno's crypto lacks).
   */
  async #list(prefix: string, delimiter?: string) {
    const client = await this.#sdk();
    const objects: { key: string; size: number; modified: Date }[] = [];
    const prefixes: string[] = [];
    let marker: string | undefined;
    do {
      const page: ListObjectsCommandOutput = await this.#call("LIST", prefix, () =>
        client.send(
          new ListObjectsCommand({
            Bucket: this.#bucket,
            Prefix: prefix,
            Delimiter: delimiter,
            Marker: marker,
          }),
        ));
      const keys = (page.Contents ?? []).map((o) => o.Key!);
      for (const o of page.Contents ?? []) {
        objects.push({ key: o.Key!, size: o.Size ?? 0, modified: o.LastModified ?? new Date(0) });
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

  /**
   * Uploads `data`: one PutObject when it fits in a part, else a multipart
   * upload with at most `queueSize` parts in flight, each sent from a reused
   * part buffer (about (queueSize + 1) × partSize in all), and aborted on
   * failure. The SDK retries each request. `createdAt` is the start time, as
   * in v0.3.13; LastModified from a later listing is what restore uses.
   */
  async #write(
    key: string,
    data: ReadableStream<Uint8Array>,
  ): Promise<{ size: number; createdAt: Date }> {
    const client = await this.#sdk();
    const createdAt = new Date();
    const { partSize, queueSize } = this.#tuning;
    const source = new PartSource(data);
    const Bucket = this.#bucket;
    try {
      const first = await source.fill(partSize);
      if (await source.atEnd()) {
        await this.#call(
          "PUT",
          key,
          () => client.send(new PutObjectCommand({ Bucket, Key: key, Body: first })),
        );
      } else {
        await this.#multipart(client, key, first, source, partSize, queueSize);
      }
    } catch (err) {
      // A failure to produce the data is not an S3 failure: re-thrown as is.
      throw err instanceof SourceError ? err.cause : err;
    }
    this.counters.bytes.PUT += source.size;
    return { size: source.size, createdAt };
  }

  /** Uploads `first` (a full part) and the rest of `source` as a multipart upload. */
  async #multipart(
    client: S3Client,
    key: string,
    first: Uint8Array,
    source: PartSource,
    partSize: number,
    queueSize: number,
  ): Promise<void> {
    const Bucket = this.#bucket;
    const { UploadId } = await this.#call(
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
        const sent: Promise<void> = this.#call(
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
      await this.#call("PUT", key, () =>
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
      await this.#call(
        "DELETE",
        key,
        () => client.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId })),
      )
        .catch(() => {}); // the original failure matters more
      throw err;
    }
  }

  /**
   * Opens a download and wraps it in a stream that, when the body breaks or
   * ends short of Content-Length, continues with a range GET from the byte
   * where it stopped (pinned to the ETag, so a replaced object is an error).
   */
  async #read(key: string): Promise<ReadableStream<Uint8Array>> {
    const first = await this.#get(key);
    const total = first.ContentLength;
    const etag = first.ETag;
    let body = first.Body!.transformToWebStream().getReader();
    let pos = 0;
    let resumes = 0;
    const resume = async (cause: unknown) => {
      if (++resumes > this.#tuning.maxResumes) {
        const detail = `download broke at byte ${pos}: ${describeError(cause)}`;
        throw new S3Error("GET", this.#url(key), "", detail, { cause });
      }
      body.cancel().catch(() => {});
      await backoff(resumes);
      const next = await this.#get(key, pos, etag);
      // A server that ignores Range would send the whole object again.
      if (!next.ContentRange?.startsWith(`bytes ${pos}-`)) {
        next.Body?.transformToWebStream().cancel();
        throw new S3Error("GET", this.#url(key), "", `range request from byte ${pos} not honoured`);
      }
      body = next.Body!.transformToWebStream().getReader();
    };
    return new ReadableStream<Uint8Array>({
      pull: async (ctrl) => {
        while (true) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await body.read();
          } catch (err) {
            await resume(err);
            continue;
          }
          if (!chunk.done) {
            pos += chunk.value.byteLength;
            this.counters.bytes.GET += chunk.value.byteLength;
            resumes = 0;
            return ctrl.enqueue(chunk.value);
          }
          if (total === undefined || pos >= total) return ctrl.close();
          await resume(new Error(`body ended after ${pos} of ${total} bytes`));
        }
      },
      cancel: (reason) => body.cancel(reason),
    });
  }

  async #get(key: string, from = 0, etag?: string): Promise<GetObjectCommandOutput> {
    const client = await this.#sdk();
    const input = {
      Bucket: this.#bucket,
      Key: key,
      ...(from > 0 ? { Range: `bytes=${from}-`, IfMatch: etag } : {}),
    };
    try {
      return await this.#call("GET", key, () => client.send(new GetObjectCommand(input)));
    } catch (err) {
      if (err instanceof S3Error && err.code === "NoSuchKey") {
        throw new NotFoundError(`${this.#url(key)}: object not found`, { cause: err });
      }
      throw err;
    }
  }

  async #delete(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    const client = await this.#sdk();
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
          this.#url(e.Key ?? ""),
          e.Code ?? "",
          `${e.Message ?? "failed"}${more}`,
        );
      }
    }
  }

  /** Runs one SDK call, turning its failure into an `S3Error` that names the object and operation. */
  async #call<T>(operation: S3Operation, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof LitestreamError) throw err;
      const e = err as {
        name?: string;
        code?: string;
        $metadata?: { httpStatusCode?: number; attempts?: number };
      };
      if (e.name === "CredentialsProviderError") {
        throw new LitestreamError(`${this.location}: ${NO_CREDENTIALS}`, { cause: err });
      }
      const code = e.code ?? (e.name && e.name !== "Error" ? e.name : "");
      const attempts = e.$metadata?.attempts ?? 1;
      const hint = HINTS[code]
        ? ` (${HINTS[code]})`
        : /CERT|UNABLE_TO_VERIFY/.test(code)
        ? " (the endpoint's TLS certificate is not trusted; skip-verify: true accepts it)"
        : "";
      const tries = attempts > 1 ? ` (after ${attempts} attempts)` : "";
      throw new S3Error(operation, this.#url(key), code, `${describeError(err)}${hint}${tries}`, {
        cause: err,
      });
    }
  }

  // ---- SDK client ----

  /** The SDK client, created on first use (looking up the bucket's region if needed). */
  #sdk(): Promise<S3Client> {
    this.#client ??= this.#createClient().catch((err) => {
      this.#client = undefined; // Retry the set-up on the next call.
      throw err;
    });
    return this.#client;
  }

  async #createClient(): Promise<S3Client> {
    const { region, endpoint } = this.#options;
    if (region) return this.#newClient(region);
    if (endpoint) return this.#newClient("us-east-1");
    const probe = this.#newClient("us-east-1");
    try {
      const out = await this.#call(
        "GET",
        "",
        () => probe.send(new GetBucketLocationCommand({ Bucket: this.#bucket })),
      ).catch((err) => {
        throw new LitestreamError(`${err.message}; set "region" in the replica config`, {
          cause: err,
        });
      });
      // An empty constraint means us-east-1; "EU" is the legacy name of eu-west-1.
      const c = out.LocationConstraint ?? "";
      return this.#newClient(c === "" ? "us-east-1" : c === "EU" ? "eu-west-1" : c);
    } finally {
      probe.destroy();
    }
  }

  #newClient(region: string): S3Client {
    const { endpoint, skipVerify } = this.#options;
    const t = this.#tuning;
    const config: S3ClientConfig = {
      region,
      endpoint: endpoint || undefined,
      forcePathStyle: this.#options.forcePathStyle ?? !!endpoint,
      credentials: staticCredentials(this.#options),
      maxAttempts: t.maxAttempts,
      retryMode: "standard",
      // The default user agent reads os.release(), which needs --allow-sys (not granted on Deno Deploy).
      defaultUserAgentProvider: () => Promise.resolve([["litestream-deno", VERSION]]),
      requestHandler: {
        connectionTimeout: t.connectTimeoutMs,
        socketTimeout: t.idleTimeoutMs,
        requestTimeout: t.requestTimeoutMs,
        throwOnRequestTimeout: true,
        // Deno's fetch cannot skip certificate checks; its node:https can.
        ...(skipVerify
          ? { httpsAgent: new HttpsAgent({ keepAlive: true, rejectUnauthorized: false }) }
          : {}),
      },
    };
    const custom = !!endpoint && !isAwsEndpoint(endpoint);
    if (custom) {
      // Most S3-compatible servers reject or mangle the SDK's default CRC
      // checksums and aws-chunked bodies; send checksums only where the API demands one.
      config.requestChecksumCalculation = "WHEN_REQUIRED";
      config.responseChecksumValidation = "WHEN_REQUIRED";
    }
    const client = new S3Client(config);
    client.middlewareStack.add(
      (next, context) => (args) => {
        const op = COMMAND_OPERATIONS[context.commandName ?? ""];
        if (op) this.counters.requests[op]++;
        return next(args);
      },
      // Below the retry middleware, so every attempt counts.
      { step: "finalizeRequest", priority: "low", name: "litestreamRequestCounter" },
    );
    if (custom) {
      client.middlewareStack.add(
        (next, context) => (args) => {
          if (context.commandName === "DeleteObjectsCommand") useContentMd5(args.request);
          return next(args);
        },
        // "low" runs after the SDK's flexibleChecksumsMiddleware (build step, normal priority).
        { step: "build", priority: "low", name: "litestreamContentMd5" },
      );
    }
    return client;
  }
}

/** A failure of the data being uploaded, not of S3: `#write` re-throws its cause. */
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

/**
 * Replaces the SDK's CRC32 checksum headers on DeleteObjects with the classic
 * `Content-MD5` that v0.3.13 (SDK v1) sent: servers that predate flexible
 * checksums require it, and some reject the `x-amz-checksum-*` headers.
 */
function useContentMd5(request: unknown): void {
  const req = request as { headers?: Record<string, string>; body?: unknown };
  if (!req.headers || (typeof req.body !== "string" && !(req.body instanceof Uint8Array))) return;
  for (const name of Object.keys(req.headers)) {
    if (/^x-amz-(checksum-|sdk-checksum-algorithm$)/i.test(name)) delete req.headers[name];
  }
  req.headers["content-md5"] = createHash("md5").update(req.body).digest("base64");
}

/**
 * Explicit keys; else `LITESTREAM_*` keys when the `AWS_*` ones are unset (as
 * v0.3.13's CLI maps them); else `undefined`: the SDK's default chain (env,
 * profile, container, instance metadata with a 1 s timeout and no retries).
 */
function staticCredentials(o: S3Options): S3ClientConfig["credentials"] {
  if (o.accessKeyId && o.secretAccessKey) {
    return { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey };
  }
  const env = (name: string) => Deno.env.get(name) || undefined;
  const id = env("AWS_ACCESS_KEY_ID") ?? env("LITESTREAM_ACCESS_KEY_ID");
  const secret = env("AWS_SECRET_ACCESS_KEY") ?? env("LITESTREAM_SECRET_ACCESS_KEY");
  if (!id || !secret) return undefined;
  return { accessKeyId: id, secretAccessKey: secret, sessionToken: env("AWS_SESSION_TOKEN") };
}

function isAwsEndpoint(endpoint: string): boolean {
  return /(^|\.)amazonaws\.com(\.cn)?$/.test(new URL(endpoint).hostname);
}

/** The useful part of an SDK or network error, on one line. */
function describeError(err: unknown): string {
  const e = err as { message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  let msg = (e.message ?? String(err)).split("\n")[0];
  // The SDK's message for a bodiless error response is just its name.
  if (!msg || msg === "UnknownError") msg = `HTTP ${e.$metadata?.httpStatusCode ?? "error"}`;
  return msg;
}

/** Waits 100 ms · 2^(attempt-1), with full jitter, before resuming a download. */
function backoff(attempt: number): Promise<void> {
  const ms = Math.random() * 100 * 2 ** (attempt - 1);
  return new Promise((resolve) => setTimeout(resolve, ms));
}
