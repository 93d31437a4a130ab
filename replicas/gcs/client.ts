/**
 * The GCS `ReplicaClient`, on the JSON API with `fetch`: the store primitives under
 * `../object_store.ts` (which holds v0.3.13's layout), with names built as Go's `path.Join`
 * (see `gcsPrefix`; a leading `/` kept). Name join, listings and deletes here; requests,
 * retries and errors in `http.ts`, credentials in `auth.ts`, uploads in
 * `upload.ts`, reads in `download.ts` (resumed by the shared
 * `../resumable_download.ts`, pinned to the object's generation); the lease
 * object (`lease.json`) is a conditional write on its generation.
 *
 * @module
 */

import { LitestreamError, NotFoundError } from "../../lib/errors.ts";
import type { LeaseObject } from "../../lib/replica_client.ts";
import { type Listing, ObjectStoreClient } from "../object_store.ts";
import { resumableDownload } from "../resumable_download.ts";
import { getObject } from "./download.ts";
import { type CredentialEnv, defaultCredentials, processEnv, type TokenSource } from "./auth.ts";
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
import { newStoreCounters } from "../counters.ts";

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
  /** Where `STORAGE_EMULATOR_HOST` and credentials are looked up; default this process's. */
  env?: CredentialEnv;
  /** Credentials to use instead of looking them up (the Deploy validator's, from its environment). */
  credentials?: TokenSource;
}

/** Creates the client for a replica config entry (`url`, or `bucket` and `path`, as v0.3.13). */
export function gcsClientFromConfig(cfg: GcsReplicaConfig, tuning?: GcsTuning): GcsReplicaClient {
  return new GcsReplicaClient(gcsOptionsFromConfig(cfg), tuning);
}

/**
 * A replica in a Google Cloud Storage bucket. Snapshots are read in one stream whatever
 * `ReadOptions.parallelism` asks: parallel ranged parts cost Deno's `fetch` 40–75 MB more
 * (1–4 MiB parts, 4–8 at once), which a restore's 150 MB budget does not allow.
 */
export class GcsReplicaClient extends ObjectStoreClient {
  /** Backend type as v0.3.13 names it. */
  readonly type = "gcs";
  /** `gcs://bucket[/path]`. */
  readonly location: string;
  /** Requests and bytes so far; never reset. */
  readonly counters: GcsCounters = newStoreCounters();

  readonly #bucket: string;
  /** Object-name prefix; `""` = bucket root. */
  readonly #prefix: string;
  readonly #http: GcsHttp;

  /** Validates `options`; no request is made (and no credential read) until the first operation. */
  constructor(options: GcsOptions, tuning: GcsTuning = {}, conn: GcsConnection = {}) {
    super();
    if (!options.bucket) throw new LitestreamError("bucket required for gcs replica");
    this.#bucket = options.bucket;
    this.#prefix = gcsPrefix(options.path);
    this.location = this.url(this.#prefix);
    const t = { ...TUNING_DEFAULTS, ...tuning };
    if (!(t.chunkSize > 0 && t.chunkSize % (256 * 1024) === 0)) {
      throw new LitestreamError(`${this.location}: chunk size must be a multiple of 256 KiB`);
    }
    const env = conn.env ?? processEnv;
    const emulator = env.get("STORAGE_EMULATOR_HOST");
    const endpoint = conn.endpoint ?? (emulator ? emulatorEndpoint(emulator) : GOOGLE_ENDPOINT);
    const anonymous = conn.anonymous ?? (!conn.endpoint && !!emulator);
    const auth = anonymous ? undefined : conn.credentials ?? defaultCredentials(this.location, env);
    this.#http = new GcsHttp(endpoint.replace(/\/+$/, ""), auth, this.counters, t);
  }

  /** Reads `<path>/lease.json` and its generation. */
  async readLease(): Promise<LeaseObject | undefined> {
    const name = this.key(LEASE_NAME);
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
    const name = this.key(LEASE_NAME);
    const target = { http: this.#http, bucket: this.#bucket, name, url: this.url(name) };
    return await putIfGeneration(target, data, expected ?? "0");
  }

  // ---- names ----

  /** Go's `path.Join(prefix, parts…)`. */
  protected key(...parts: string[]): string {
    if (this.#prefix === "" || this.#prefix === "/") return this.#prefix + parts.join("/");
    return [this.#prefix, ...parts].join("/");
  }

  /** `gcs://bucket/<name>`, without the name's leading `/`. */
  protected url(name: string): string {
    return name ? `gcs://${this.#bucket}/${name.replace(/^\//, "")}` : `gcs://${this.#bucket}`;
  }

  #objectPath(name: string): string {
    return `/storage/v1/b/${encodeURIComponent(this.#bucket)}/o/${encodeURIComponent(name)}`;
  }

  // ---- requests ----

  /** All objects (and, with a delimiter, common prefixes) under `prefix`, across pages. */
  protected async list(prefix: string, delimited = false): Promise<Listing> {
    const objects: Listing["objects"] = [];
    const prefixes: string[] = [];
    let pageToken = "";
    do {
      const q = new URLSearchParams({ prefix, maxResults: "1000" });
      if (delimited) q.set("delimiter", "/");
      if (pageToken) q.set("pageToken", pageToken);
      q.set("fields", "items(name,size,timeCreated),prefixes,nextPageToken");
      const res = await this.#http.send({
        operation: "LIST",
        object: this.url(prefix),
        method: "GET",
        url: `/storage/v1/b/${encodeURIComponent(this.#bucket)}/o?${q}`,
      });
      const page = await res.json() as {
        items?: { name: string; size: string; timeCreated: string }[];
        prefixes?: string[];
        nextPageToken?: string;
      };
      for (const o of page.items ?? []) {
        objects.push({ key: o.name, size: Number(o.size), createdAt: new Date(o.timeCreated) });
      }
      prefixes.push(...page.prefixes ?? []);
      pageToken = page.nextPageToken ?? "";
    } while (pageToken);
    return { objects, prefixes };
  }

  /** Uploads `data` (resumable, chunk by chunk, past one chunk). */
  protected write(name: string, data: ReadableStream<Uint8Array>) {
    return uploadObject(
      { http: this.#http, bucket: this.#bucket, name, url: this.url(name) },
      data,
    );
  }

  /**
   * Streams the object `name`; a body that breaks or stalls resumes with a ranged read pinned
   * to the object's generation (a replaced object is an error).
   */
  protected read(name: string): Promise<ReadableStream<Uint8Array>> {
    const ref = this.#ref(name);
    return resumableDownload({
      get: async (from, generation) => (await getObject(ref, from, generation)).part,
      maxResumes: this.#http.tuning.maxResumes,
      idleTimeoutMs: this.#http.tuning.idleTimeoutMs,
      onBytes: (n) => this.counters.bytes.GET += n,
      fail: (detail, { cause, replaced }) =>
        new GcsError("GET", ref.url, replaced ? 412 : 0, detail, { cause }),
    });
  }

  #ref(name: string) {
    return { http: this.#http, path: this.#objectPath(name), url: this.url(name) };
  }

  /** Deletes objects, a few requests at a time; a missing object is not an error. */
  protected async delete(names: string[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < names.length) {
        const name = names[next++];
        const res = await this.#http.send({
          operation: "DELETE",
          object: this.url(name),
          method: "DELETE",
          url: this.#objectPath(name),
          accept: [404],
        });
        // A missing object is fine; a missing bucket is not.
        const detail = res.status === 404 ? await errorDetail(res) : await res.body?.cancel();
        if (typeof detail === "string" && /bucket/i.test(detail)) {
          throw new GcsError("DELETE", this.url(name), 404, `${detail}${NO_BUCKET_HINT}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, names.length) }, worker));
  }
}
