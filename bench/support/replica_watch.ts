/**
 * Looking at a replica while a replicator writes it: listing and reading its complete objects
 * (file, S3 or Azure Blob Storage, through one {@link ReplicaLister} interface) and waiting for the first snapshot.
 *
 * @module
 */

import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
import { ContainerClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { Decrypter } from "age-encryption";
import { readDirOrEmpty } from "../../lib/os/fs.ts";
import { waitFor } from "../../tests/support/poll.ts";
import { epochMs } from "./load.ts";
import type { MeasuredProcess } from "./measure.ts";
import type { ReplicaTarget } from "./tools.ts";

/** Lists the complete objects of a replica (file, S3 or GCS) and reads them. */
export interface ReplicaLister {
  /** Names (relative to the replica root) of complete snapshots and WAL segments. */
  list(): Promise<string[]>;
  read(name: string): Promise<Uint8Array>;
  /** Stored size of an object in bytes. */
  size(name: string): Promise<number>;
}

const OBJECT_RE =
  /^generations\/[0-9a-f]{16}\/(snapshots\/[0-9a-f]{8}\.snapshot|wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal)\.lz4$/;
const SEGMENT_NAME_RE = /\/wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/;
const SNAPSHOT_NAME_RE = /\/snapshots\/[0-9a-f]{8}\.snapshot\.lz4$/;

/** True for a WAL segment name of {@link ReplicaLister.list}. */
export const isSegmentName = (name: string): boolean => SEGMENT_NAME_RE.test(name);
/** True for a snapshot name of {@link ReplicaLister.list}. */
export const isSnapshotName = (name: string): boolean => SNAPSHOT_NAME_RE.test(name);

/**
 * A file replica, listed with `Deno.readDir` (tolerating directories that vanish meanwhile).
 * Both tools write `<name>.tmp` and rename it, so a listed final name is complete.
 */
export function fileReplicaLister(root: string): ReplicaLister {
  const entries = async (dir: string) => (await readDirOrEmpty(dir)).map((e) => e.name);
  return {
    async list() {
      const out: string[] = [];
      for (const gen of await entries(`${root}/generations`)) {
        for (const kind of ["snapshots", "wal"]) {
          for (const name of await entries(`${root}/generations/${gen}/${kind}`)) {
            const rel = `generations/${gen}/${kind}/${name}`;
            if (OBJECT_RE.test(rel)) out.push(rel);
          }
        }
      }
      return out;
    },
    read: (name) => Deno.readFile(`${root}/${name}`),
    size: async (name) => (await Deno.stat(`${root}/${name}`)).size,
  };
}

/** `inner`'s objects decrypted with the age `identity` (a replica written with an `age` block). */
export function ageReplicaLister(inner: ReplicaLister, identity: string): ReplicaLister {
  const decrypter = new Decrypter();
  decrypter.addIdentity(identity);
  return {
    list: () => inner.list(),
    read: async (name) => await decrypter.decrypt(await inner.read(name)),
    size: (name) => inner.size(name),
  };
}

/** User agent of the benchmark's own S3 requests, so request counts can leave them out. */
export const BENCH_USER_AGENT = "litestream-bench";

/**
 * A prefix of an S3 bucket, listed and read with `@aws-sdk/client-s3` (objects appear only once
 * their upload completed). Its requests carry {@link BENCH_USER_AGENT}.
 */
export function s3ReplicaLister(target: Extract<ReplicaTarget, { type: "s3" }>): ReplicaLister {
  const client = new S3Client({
    endpoint: target.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey },
    customUserAgent: BENCH_USER_AGENT,
  });
  const prefix = `${target.path.replace(/\/+$/, "")}/`;
  return {
    async list() {
      const out: string[] = [];
      let token: string | undefined;
      do {
        const res = await client.send(
          new ListObjectsV2Command({
            Bucket: target.bucket,
            Prefix: `${prefix}generations/`,
            ContinuationToken: token,
          }),
        );
        for (const o of res.Contents ?? []) {
          const rel = o.Key!.slice(prefix.length);
          if (OBJECT_RE.test(rel)) out.push(rel);
        }
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
      return out;
    },
    async read(name) {
      const res = await client.send(
        new GetObjectCommand({ Bucket: target.bucket, Key: `${prefix}${name}` }),
      );
      return await res.Body!.transformToByteArray();
    },
    async size(name) {
      const res = await client.send(
        new HeadObjectCommand({ Bucket: target.bucket, Key: `${prefix}${name}` }),
      );
      return res.ContentLength!;
    },
  };
}

/**
 * A prefix of an Azure container, listed and read with `@azure/storage-blob` (blobs appear only
 * once committed).
 */
export function absReplicaLister(target: Extract<ReplicaTarget, { type: "abs" }>): ReplicaLister {
  const container = new ContainerClient(
    `${target.endpoint}/${target.container}`,
    new StorageSharedKeyCredential(target.accountName, target.accountKey),
  );
  const prefix = `${target.path.replace(/\/+$/, "")}/`;
  return {
    async list() {
      const out: string[] = [];
      for await (const b of container.listBlobsFlat({ prefix: `${prefix}generations/` })) {
        const rel = b.name.slice(prefix.length);
        if (OBJECT_RE.test(rel)) out.push(rel);
      }
      return out;
    },
    async read(name) {
      const buf = await container.getBlobClient(`${prefix}${name}`).downloadToBuffer();
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    },
    async size(name) {
      return (await container.getBlobClient(`${prefix}${name}`).getProperties()).contentLength!;
    },
  };
}

/**
 * A prefix of a GCS bucket on our test server, listed and read through the JSON API (objects
 * appear only once their upload completed). Its requests carry {@link BENCH_USER_AGENT}.
 */
export function gcsReplicaLister(target: Extract<ReplicaTarget, { type: "gcs" }>): ReplicaLister {
  const prefix = `${target.path.replace(/\/+$/, "")}/`;
  const objects = `${target.endpoint}/storage/v1/b/${encodeURIComponent(target.bucket)}/o`;
  const get = async (url: string) => {
    const res = await fetch(url, { headers: { "User-Agent": BENCH_USER_AGENT } });
    if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status} ${await res.text()}`);
    return res;
  };
  const sizes = new Map<string, number>();
  return {
    async list() {
      const out: string[] = [];
      let token = "";
      do {
        const q = new URLSearchParams({ prefix: `${prefix}generations/` });
        if (token) q.set("pageToken", token);
        const page = await (await get(`${objects}?${q}`)).json();
        for (const o of page.items ?? []) {
          const rel = o.name.slice(prefix.length);
          sizes.set(rel, Number(o.size));
          if (OBJECT_RE.test(rel)) out.push(rel);
        }
        token = page.nextPageToken ?? "";
      } while (token);
      return out;
    },
    async read(name) {
      const res = await get(`${objects}/${encodeURIComponent(prefix + name)}?alt=media`);
      return new Uint8Array(await res.arrayBuffer());
    },
    async size(name) {
      if (!sizes.has(name)) await this.list();
      return sizes.get(name)!;
    },
  };
}

/**
 * Polls `check` every `intervalMs` until it returns a value, while replicator `proc` runs.
 * Throws, quoting the end of the replicator's log, if `proc` exits first or after `timeoutMs`.
 */
export async function waitWhileReplicating<T>(
  what: string,
  proc: MeasuredProcess,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs: number,
): Promise<NonNullable<T>> {
  return await waitFor(
    what,
    async () => {
      if (proc.exited) throw new Error(`replicator exited; log:\n${await proc.log()}`);
      return await check();
    },
    timeoutMs,
    intervalMs,
  ).catch(async (err) => {
    throw new Error(`${(err as Error).message}; log:\n${(await proc.log()).slice(-3000)}`, {
      cause: err,
    });
  });
}

/**
 * Polls `lister` every `intervalMs` until a snapshot is listed; returns the `epochMs()` at which
 * that listing ended. Throws if `proc` exits first or after `timeoutMs`.
 */
export function waitForSnapshot(
  lister: ReplicaLister,
  proc: MeasuredProcess,
  timeoutMs: number,
  intervalMs = 50,
): Promise<number> {
  return waitWhileReplicating(
    "the first snapshot on the replica",
    proc,
    async () => {
      const names = await lister.list();
      const at = epochMs();
      return names.some(isSnapshotName) ? at : undefined;
    },
    timeoutMs,
    intervalMs,
  );
}
