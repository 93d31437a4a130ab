/**
 * The GCS `ReplicaClient`, on the JSON API with `fetch`, in v0.3.13's
 * layout: `<path>/generations/<gen>/snapshots|wal/<name>` (names built as Go's
 * `path.Join`, see `gcsPrefix`). Keys, listings and deletes here; requests,
 * retries and errors in `http.ts`, credentials in `auth.ts`, uploads in
 * `upload.ts`, reads in `download.ts` (resumed by the shared
 * `../resumable_download.ts`, pinned to the object's generation); the lease
 * object (`lease.json`) is a conditional write on its generation.
 *
 * @module
 */

import { LitestreamError, NotFoundError } from "../../lib/errors.ts";
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
  LeaseObject,
  RecordInfo,
  ReplicaClient,
  SnapshotInfo,
  WalSegmentInfo,
} from "../../lib/replica_client.ts";
import { isRecordName, RECORDS_DIR } from "../../lib/core/checksum_record.ts";
import { resumableDownload } from "../resumable_download.ts";
import { getObject } from "./download.ts";
import { type CredentialEnv, defaultCredentials } from "./auth.ts";
import {
  emulatorEndpoint,
  errorDetail,
  type GcsCounters,
  GcsError,
  GcsHttp,
  type GcsTuning,
  NO_BUCKET_HINT,
  TUNING_DEFAULTS,
} from "./http.ts";
import { putIfGeneration, uploadObject } from "./upload.ts";
import { type GcsOptions, gcsOptionsFromConfig, gcsPrefix, type GcsReplicaConfig } from "./url.ts";

/** Google's endpoint. */
const GOOGLE_ENDPOINT = "https://storage.googleapis.com";
/** The lease object under the replica's path (outside `generations/`: v0.3.13 never lists it). */
const LEASE_NAME = "lease.json";
/** Deletes in flight at once. */
const DELETE_CONCURRENCY = 8;

/** Where requests go and how they are authorised; by default from the environment. */
export interface GcsConnection {
  /** Endpoint URL; default `STORAGE_EMULATOR_HOST` (then without credentials), else Google's. */
  endpoint?: string;
  /** Send no credentials (an emulator); default: only when `STORAGE_EMULATOR_HOST` is set. */
  anonymous?: boolean;
  /** Where credentials are looked up (tests replace it). */
  env?: CredentialEnv;
}

/** Creates the client for a replica config entry (`url`, or `bucket` and `path`, as v0.3.13). */
export function gcsClientFromConfig(cfg: GcsReplicaConfig, tuning?: GcsTuning): GcsReplicaClient {
  return new GcsReplicaClient(gcsOptionsFromConfig(cfg), tuning);
}

/** A replica in a Google Cloud Storage bucket. */
export class GcsReplicaClient implements ReplicaClient {
  /** Backend type as v0.3.13 names it. */
  readonly type = "gcs";
  /** `gcs://bucket[/path]`. */
  readonly location: string;
  /** Requests and bytes so far; never reset. */
  readonly counters: GcsCounters = {
    requests: { GET: 0, PUT: 0, LIST: 0, DELETE: 0 },
    bytes: { GET: 0, PUT: 0 },
  };

  readonly #bucket: string;
  /** Object-name prefix; `""` = bucket root. */
  readonly #prefix: string;
  readonly #http: GcsHttp;

  /** Validates `options`; no request is made (and no credential read) until the first operation. */
  constructor(options: GcsOptions, tuning: GcsTuning = {}, conn: GcsConnection = {}) {
    if (!options.bucket) throw new LitestreamError("bucket required for gcs replica");
    this.#bucket = options.bucket;
    this.#prefix = gcsPrefix(options.path);
    this.location = this.#url(this.#prefix);
    const t = { ...TUNING_DEFAULTS, ...tuning };
    if (!(t.chunkSize > 0 && t.chunkSize % (256 * 1024) === 0)) {
      throw new LitestreamError(`${this.location}: chunk size must be a multiple of 256 KiB`);
    }
    const emulator = Deno.env.get("STORAGE_EMULATOR_HOST");
    const endpoint = conn.endpoint ?? (emulator ? emulatorEndpoint(emulator) : GOOGLE_ENDPOINT);
    const anonymous = conn.anonymous ?? (!conn.endpoint && !!emulator);
    const auth = anonymous ? undefined : defaultCredentials(this.location, conn.env);
    this.#http = new GcsHttp(endpoint.replace(/\/+$/, ""), auth, this.counters, t);
  }

  /** Lists `<path>/generations/` with a delimiter and keeps valid generation names. */
  async generations(): Promise<string[]> {
    const { prefixes } = await this.#list(this.#key("generations") + "/", "/");
    return prefixes
      .map((p) => p.slice(0, -1).split("/").pop()!)
      .filter(isGeneration)
      .sort();
  }

  /** Snapshots of a generation sorted by index, with the objects' creation time. */
  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const dir = this.#dir(generation, "snapshots");
    const { objects } = await this.#list(dir, "/");
    const out: SnapshotInfo[] = [];
    for (const obj of objects) {
      const index = parseSnapshotName(obj.name.slice(dir.length));
      if (index !== undefined) {
        out.push({ generation, index, size: obj.size, createdAt: obj.created });
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
      const pos = parseWalSegmentName(obj.name.slice(dir.length));
      if (pos) out.push({ generation, ...pos, size: obj.size, createdAt: obj.created });
    }
    return out.sort(comparePos);
  }

  /**
   * Streams a snapshot; a broken or stalled download resumes with a ranged read. One stream
   * whatever `ReadOptions.parallelism` asks: parallel ranged parts cost Deno's `fetch` 40–75 MB
   * more (1–4 MiB parts, 4–8 at once), which a restore's 150 MB budget does not allow.
   */
  readSnapshot(generation: string, index: number): Promise<ReadableStream<Uint8Array>> {
    return this.#read(this.#snapshotKey(generation, index));
  }

  /** Streams a WAL segment; a broken download resumes with a ranged read. */
  readWalSegment(pos: Pos): Promise<ReadableStream<Uint8Array>> {
    return this.#read(this.#segmentKey(pos));
  }

  /** Uploads a snapshot (resumable, chunk by chunk, past one chunk); visible only when complete. */
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

  /** Deletes WAL segments (several requests in flight). */
  async deleteWalSegments(segments: Pos[]): Promise<void> {
    await this.#delete(segments.map((pos) => this.#segmentKey(pos)));
  }

  /** Deletes every object under `<path>/generations/<gen>/`. */
  async deleteGeneration(generation: string): Promise<void> {
    const { objects } = await this.#list(this.#key("generations", this.#gen(generation)) + "/");
    await this.#delete(objects.map((o) => o.name));
  }

  /** `gcs://bucket/<name>` of a snapshot or WAL segment. */
  describe(kind: "snapshot" | "wal", pos: Pos): string {
    return this.#url(
      kind === "snapshot" ? this.#snapshotKey(pos.generation, pos.index) : this.#segmentKey(pos),
    );
  }

  /** `gcs://bucket/<name>` of a checksum record. */
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
        name: o.name.slice(dir.length),
        size: o.size,
        createdAt: o.created,
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

  /** Reads `<path>/lease.json` and its generation. */
  async readLease(): Promise<LeaseObject | undefined> {
    const name = this.#key(LEASE_NAME);
    let read;
    try {
      read = await getObject(this.#ref(name), 0);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
    const data = await new Response(read.part.body).bytes();
    this.counters.bytes.GET += data.length;
    return { data, version: read.part.etag ?? "" };
  }

  /**
   * Writes `<path>/lease.json` only if its generation is `expected` (`ifGenerationMatch`, 0:
   * only if absent), atomically on GCS.
   */
  async writeLease(data: Uint8Array, expected: string | undefined): Promise<string | undefined> {
    // A generation is a number: anything else can match no object.
    if (expected !== undefined && !/^\d+$/.test(expected)) return undefined;
    const name = this.#key(LEASE_NAME);
    const target = { http: this.#http, bucket: this.#bucket, name, url: this.#url(name) };
    return await putIfGeneration(target, data, expected ?? "0");
  }

  // ---- names ----

  /** Go's `path.Join(prefix, parts…)`. */
  #key(...parts: string[]): string {
    if (this.#prefix === "" || this.#prefix === "/") return this.#prefix + parts.join("/");
    return [this.#prefix, ...parts].join("/");
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

  #url(name: string): string {
    return name ? `gcs://${this.#bucket}/${name.replace(/^\//, "")}` : `gcs://${this.#bucket}`;
  }

  #objectPath(name: string): string {
    return `/storage/v1/b/${encodeURIComponent(this.#bucket)}/o/${encodeURIComponent(name)}`;
  }

  // ---- requests ----

  /** All objects (and, with a delimiter, common prefixes) under `prefix`, across pages. */
  async #list(prefix: string, delimiter?: string) {
    const objects: { name: string; size: number; created: Date }[] = [];
    const prefixes: string[] = [];
    let pageToken = "";
    do {
      const q = new URLSearchParams({ prefix, maxResults: "1000" });
      if (delimiter) q.set("delimiter", delimiter);
      if (pageToken) q.set("pageToken", pageToken);
      q.set("fields", "items(name,size,timeCreated),prefixes,nextPageToken");
      const res = await this.#http.send({
        operation: "LIST",
        object: this.#url(prefix),
        method: "GET",
        url: `/storage/v1/b/${encodeURIComponent(this.#bucket)}/o?${q}`,
      });
      const page = await res.json() as {
        items?: { name: string; size: string; timeCreated: string }[];
        prefixes?: string[];
        nextPageToken?: string;
      };
      for (const o of page.items ?? []) {
        objects.push({ name: o.name, size: Number(o.size), created: new Date(o.timeCreated) });
      }
      prefixes.push(...page.prefixes ?? []);
      pageToken = page.nextPageToken ?? "";
    } while (pageToken);
    return { objects, prefixes };
  }

  #write(name: string, data: ReadableStream<Uint8Array>) {
    return uploadObject(
      { http: this.#http, bucket: this.#bucket, name, url: this.#url(name) },
      data,
    );
  }

  /**
   * Streams the object `name`; a body that breaks or stalls resumes with a ranged read pinned
   * to the object's generation (a replaced object is an error).
   */
  #read(name: string): Promise<ReadableStream<Uint8Array>> {
    const ref = this.#ref(name);
    return resumableDownload({
      get: async (from, generation) => (await getObject(ref, from, generation)).part,
      maxResumes: this.#http.tuning.maxResumes,
      onBytes: (n) => this.counters.bytes.GET += n,
      fail: (detail, { cause, replaced }) =>
        new GcsError("GET", ref.url, replaced ? 412 : 0, detail, { cause }),
    });
  }

  #ref(name: string) {
    return { http: this.#http, path: this.#objectPath(name), url: this.#url(name) };
  }

  /** Deletes objects, a few requests at a time; a missing object is not an error. */
  async #delete(names: string[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < names.length) {
        const name = names[next++];
        const res = await this.#http.send({
          operation: "DELETE",
          object: this.#url(name),
          method: "DELETE",
          url: this.#objectPath(name),
          accept: [404],
        });
        // A missing object is fine; a missing bucket is not.
        const detail = res.status === 404 ? await errorDetail(res) : await res.body?.cancel();
        if (typeof detail === "string" && /bucket/i.test(detail)) {
          throw new GcsError("DELETE", this.#url(name), 404, `${detail}${NO_BUCKET_HINT}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, names.length) }, worker));
  }
}
