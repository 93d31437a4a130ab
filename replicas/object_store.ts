/**
 * The part every object-store backend (S3, GCS, Azure Blob Storage) shares: v0.3.13's key
 * layout (`<path>/generations/<gen>/snapshots/<idx>.snapshot.lz4`, `wal/<idx>_<off>.wal.lz4`,
 * checksum records under `RECORDS_DIR`), listings parsed into infos, and the snapshot, segment
 * and record operations in terms of a few store primitives. A backend supplies those (its SDK
 * or HTTP calls, uploads, downloads, errors, counters), its key join and URLs, and the lease.
 *
 * @module
 */

import { LitestreamError } from "../lib/errors.ts";
import {
  comparePos,
  isGeneration,
  parseSnapshotName,
  parseWalSegmentName,
  type Pos,
  snapshotName,
  walSegmentName,
} from "../lib/names.ts";
import type {
  LeaseObject,
  ReadOptions,
  RecordInfo,
  ReplicaClient,
  SnapshotInfo,
  WalSegmentInfo,
} from "../lib/replica_client.ts";
import { isRecordName, RECORDS_DIR } from "../lib/core/checksum_record.ts";

/** One object of a listing. */
export interface ListedObject {
  /** The object's full key. */
  key: string;
  /** Stored size in bytes. */
  size: number;
  /** The backend's time for point-in-time restore (S3 LastModified, GCS/ABS creation time). */
  createdAt: Date;
}

/** A listing: objects and, when delimited by `/`, common prefixes (ending in `/`). */
export interface Listing {
  objects: ListedObject[];
  prefixes: string[];
}

/** An object-store replica: the `ReplicaClient` methods over a backend's store primitives. */
export abstract class ObjectStoreClient implements ReplicaClient {
  /** Backend type as v0.3.13 names it. */
  abstract readonly type: string;
  /** `<scheme>://<bucket>[/path]`. */
  abstract readonly location: string;

  /** The key of `parts` under the replica's path, joined as the backend's v0.3.13 does. */
  protected abstract key(...parts: string[]): string;
  /** The display URL of `key`, for messages. */
  protected abstract url(key: string): string;
  /** Every object under `prefix` across pages; with `delimited`, common prefixes by `/`. */
  protected abstract list(prefix: string, delimited?: boolean): Promise<Listing>;
  /** Streams the object at `key`; throws `NotFoundError` when absent. */
  protected abstract read(key: string): Promise<ReadableStream<Uint8Array>>;
  /** Writes `data` to `key`, visible only when complete. */
  protected abstract write(
    key: string,
    data: ReadableStream<Uint8Array>,
  ): Promise<{ size: number; createdAt: Date }>;
  /** Deletes the objects at `keys`; missing ones are not an error. */
  protected abstract delete(keys: string[]): Promise<void>;

  abstract readLease(): Promise<LeaseObject | undefined>;
  abstract writeLease(data: Uint8Array, expected: string | undefined): Promise<string | undefined>;

  /** Lists `<path>/generations/` delimited and keeps valid generation names. */
  async generations(): Promise<string[]> {
    const { prefixes } = await this.list(this.key("generations") + "/", true);
    return prefixes
      .map((p) => p.slice(0, -1).split("/").pop()!)
      .filter(isGeneration)
      .sort();
  }

  /** Snapshots of a generation sorted by index. */
  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const dir = this.#dir(generation, "snapshots");
    const { objects } = await this.list(dir, true);
    const out: SnapshotInfo[] = [];
    for (const obj of objects) {
      const index = parseSnapshotName(obj.key.slice(dir.length));
      if (index !== undefined) {
        out.push({ generation, index, size: obj.size, createdAt: obj.createdAt });
      }
    }
    return out.sort((a, b) => a.index - b.index);
  }

  /** WAL segments of a generation sorted by (index, offset). */
  async walSegments(generation: string): Promise<WalSegmentInfo[]> {
    const dir = this.#dir(generation, "wal");
    const { objects } = await this.list(dir, true);
    const out: WalSegmentInfo[] = [];
    for (const obj of objects) {
      const pos = parseWalSegmentName(obj.key.slice(dir.length));
      if (pos) out.push({ generation, ...pos, size: obj.size, createdAt: obj.createdAt });
    }
    return out.sort(comparePos);
  }

  /** Streams a snapshot in one stream (backends with ranged reads override it). */
  async readSnapshot(
    generation: string,
    index: number,
    _options?: ReadOptions,
  ): Promise<ReadableStream<Uint8Array>> {
    return await this.read(this.snapshotKey(generation, index));
  }

  /** Streams a WAL segment. */
  async readWalSegment(pos: Pos): Promise<ReadableStream<Uint8Array>> {
    return await this.read(this.segmentKey(pos));
  }

  /** Uploads a snapshot. */
  async writeSnapshot(
    generation: string,
    index: number,
    data: ReadableStream<Uint8Array>,
  ): Promise<SnapshotInfo> {
    const { size, createdAt } = await this.write(this.snapshotKey(generation, index), data);
    return { generation, index, size, createdAt };
  }

  /** Uploads a WAL segment. */
  async writeWalSegment(pos: Pos, data: ReadableStream<Uint8Array>): Promise<WalSegmentInfo> {
    const { size, createdAt } = await this.write(this.segmentKey(pos), data);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size, createdAt };
  }

  /** Deletes one snapshot; a missing one is not an error. */
  async deleteSnapshot(generation: string, index: number): Promise<void> {
    await this.delete([this.snapshotKey(generation, index)]);
  }

  /** Deletes WAL segments; missing ones are not an error. */
  async deleteWalSegments(segments: Pos[]): Promise<void> {
    await this.delete(segments.map((pos) => this.segmentKey(pos)));
  }

  /** Deletes every object under `<path>/generations/<gen>/`. */
  async deleteGeneration(generation: string): Promise<void> {
    const { objects } = await this.list(this.key("generations", this.#gen(generation)) + "/");
    await this.delete(objects.map((o) => o.key));
  }

  /** The URL of a snapshot or WAL segment. */
  describe(kind: "snapshot" | "wal", pos: Pos): string {
    return this.url(
      kind === "snapshot" ? this.snapshotKey(pos.generation, pos.index) : this.segmentKey(pos),
    );
  }

  /** The URL of a checksum record. */
  describeRecord(generation: string, name: string): string {
    return this.url(this.#recordKey(generation, name));
  }

  /** Checksum records of a generation, sorted by name. */
  async records(generation: string): Promise<RecordInfo[]> {
    const dir = this.key("generations", this.#gen(generation), RECORDS_DIR) + "/";
    const { objects } = await this.list(dir, true);
    return objects
      .map((o) => ({
        generation,
        name: o.key.slice(dir.length),
        size: o.size,
        createdAt: o.createdAt,
      }))
      .filter((r) => isRecordName(r.name))
      .sort((a, b) => a.name < b.name ? -1 : 1);
  }

  /** Reads one checksum record. */
  async readRecord(generation: string, name: string): Promise<Uint8Array> {
    return await new Response(await this.read(this.#recordKey(generation, name))).bytes();
  }

  /** Uploads one checksum record. */
  async writeRecord(generation: string, name: string, data: Uint8Array): Promise<RecordInfo> {
    const { size, createdAt } = await this.write(
      this.#recordKey(generation, name),
      ReadableStream.from([data]),
    );
    return { generation, name, size, createdAt };
  }

  /** Deletes checksum records. */
  async deleteRecords(generation: string, names: string[]): Promise<void> {
    await this.delete(names.map((n) => this.#recordKey(generation, n)));
  }

  /** The key of a snapshot. */
  protected snapshotKey(generation: string, index: number): string {
    return this.#dir(generation, "snapshots") + snapshotName(index);
  }

  /** The key of a WAL segment. */
  protected segmentKey(pos: Pos): string {
    return this.#dir(pos.generation, "wal") + walSegmentName(pos.index, pos.offset);
  }

  #recordKey(generation: string, name: string): string {
    return this.key("generations", this.#gen(generation), RECORDS_DIR, name);
  }

  #dir(generation: string, kind: "snapshots" | "wal"): string {
    return this.key("generations", this.#gen(generation), kind) + "/";
  }

  #gen(generation: string): string {
    if (!isGeneration(generation)) {
      throw new LitestreamError(`invalid generation name: ${generation}`);
    }
    return generation;
  }
}
