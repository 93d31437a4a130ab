/**
 * An in-memory `ReplicaClient`: a test double for the replica loop and
 * restore, with injectable faults (see `faults.ts`). Objects live in a map
 * under v0.3.13's keys (`generations/<gen>/snapshots|wal|checksums/<name>`),
 * so foreign names can be planted and ignored as the real backends ignore
 * them. Not a user-facing backend: no config or URL reaches it.
 *
 * @module
 */

import { LitestreamError, NotFoundError } from "../../lib/errors.ts";
import { chunksOf } from "../../lib/os/fs.ts";
import { concat } from "../../lib/lz4/bytes.ts";
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
import { Faults, type Operation } from "./faults.ts";

/** One stored object. */
interface StoredObject {
  data: Uint8Array;
  createdAt: Date;
  /** The lease object's version. */
  version?: string;
}

/** Key of the lease object. */
const LEASE_KEY = "lease.json";

/** A replica held in memory, for tests. */
export class MemoryReplicaClient implements ReplicaClient {
  /** Backend type; no config entry has it. */
  readonly type = "memory";
  /** `memory://<name>`. */
  readonly location: string;
  /** Faults to inject and call counts. */
  readonly faults: Faults = new Faults();
  readonly #objects = new Map<string, StoredObject>();
  /** Versions of the lease object: a counter, as a store's ETag would change. */
  #leaseWrites = 0;

  /** Creates an empty replica; `name` only labels it in `location` and errors. */
  constructor(name = "replica") {
    this.location = `memory://${name}`;
  }

  /** Every stored key (relative to the replica root), sorted. */
  keys(): string[] {
    return [...this.#objects.keys()].sort();
  }

  /** Stores `data` under any `key`, bypassing the layout: for planting foreign or damaged objects. */
  putRaw(key: string, data: Uint8Array): void {
    this.#objects.set(key, { data: data.slice(), createdAt: new Date() });
  }

  /** Removes every object, the lease included, as an operator emptying the replica would. */
  clear(): void {
    this.#objects.clear();
  }

  /** Valid generation names that hold at least one object, sorted. */
  async generations(): Promise<string[]> {
    await this.#enter("generations");
    const names = new Set<string>();
    for (const key of this.#objects.keys()) {
      const [top, gen, ...rest] = key.split("/");
      if (top === "generations" && isGeneration(gen) && rest.length > 0) names.add(gen);
    }
    return [...names].sort();
  }

  /** Snapshots of a generation sorted by index. */
  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    await this.#enter("snapshots");
    return this.#list(generation, "snapshots", parseSnapshotName)
      .map(({ parsed: index, size, createdAt }) => ({ generation, index, size, createdAt }))
      .sort((a, b) => a.index - b.index);
  }

  /** WAL segments of a generation sorted by (index, offset). */
  async walSegments(generation: string): Promise<WalSegmentInfo[]> {
    await this.#enter("walSegments");
    return this.#list(generation, "wal", parseWalSegmentName)
      .map(({ parsed, size, createdAt }) => ({ generation, ...parsed, size, createdAt }))
      .sort(comparePos);
  }

  /** Streams a snapshot's bytes (cut short by an armed `truncate`). */
  async readSnapshot(generation: string, index: number): Promise<ReadableStream<Uint8Array>> {
    return ReadableStream.from([
      await this.#read("readSnapshot", this.#snapshotKey(generation, index)),
    ]);
  }

  /** Streams a WAL segment's bytes (cut short by an armed `truncate`). */
  async readWalSegment(pos: Pos): Promise<ReadableStream<Uint8Array>> {
    return ReadableStream.from([await this.#read("readWalSegment", this.#segmentKey(pos))]);
  }

  /** Stores a snapshot once its stream has ended. */
  async writeSnapshot(
    generation: string,
    index: number,
    data: ReadableStream<Uint8Array>,
  ): Promise<SnapshotInfo> {
    const stored = await this.#write("writeSnapshot", this.#snapshotKey(generation, index), data);
    return { generation, index, size: stored.data.length, createdAt: stored.createdAt };
  }

  /** Stores a WAL segment once its stream has ended. */
  async writeWalSegment(pos: Pos, data: ReadableStream<Uint8Array>): Promise<WalSegmentInfo> {
    const stored = await this.#write("writeWalSegment", this.#segmentKey(pos), data);
    const { generation, index, offset } = pos;
    return { generation, index, offset, size: stored.data.length, createdAt: stored.createdAt };
  }

  /** Deletes one snapshot; a missing one is not an error. */
  async deleteSnapshot(generation: string, index: number): Promise<void> {
    const key = this.#snapshotKey(generation, index);
    await this.#enter("deleteSnapshot");
    this.#objects.delete(key);
  }

  /** Deletes WAL segments; missing ones are not an error. */
  async deleteWalSegments(segments: Pos[]): Promise<void> {
    const keys = segments.map((pos) => this.#segmentKey(pos));
    await this.#enter("deleteWalSegments");
    for (const key of keys) this.#objects.delete(key);
  }

  /** Deletes every object of a generation. */
  async deleteGeneration(generation: string): Promise<void> {
    const prefix = `${this.#generationKey(generation)}/`;
    await this.#enter("deleteGeneration");
    for (const key of this.keys()) if (key.startsWith(prefix)) this.#objects.delete(key);
  }

  /** Checksum records of a generation, sorted by name. */
  async records(generation: string): Promise<RecordInfo[]> {
    await this.#enter("records");
    return this.#list(generation, RECORDS_DIR, (n) => isRecordName(n) ? n : undefined)
      .map(({ parsed: name, size, createdAt }) => ({ generation, name, size, createdAt }))
      .sort((a, b) => a.name < b.name ? -1 : 1);
  }

  /** Reads one checksum record (cut short by an armed `truncate`). */
  async readRecord(generation: string, name: string): Promise<Uint8Array> {
    return await this.#read("readRecord", this.#recordKey(generation, name));
  }

  /** Stores one checksum record. */
  async writeRecord(generation: string, name: string, data: Uint8Array): Promise<RecordInfo> {
    const key = this.#recordKey(generation, name);
    const stored = await this.#write("writeRecord", key, ReadableStream.from([data]));
    return { generation, name, size: stored.data.length, createdAt: stored.createdAt };
  }

  /** Deletes checksum records; missing ones are not an error. */
  async deleteRecords(generation: string, names: string[]): Promise<void> {
    const keys = names.map((name) => this.#recordKey(generation, name));
    await this.#enter("deleteRecords");
    for (const key of keys) this.#objects.delete(key);
  }

  /** Reads the lease object (`lease.json` at the root); its version is the key's write count. */
  async readLease(): Promise<LeaseObject | undefined> {
    await this.#enter("readLease");
    const obj = this.#objects.get(LEASE_KEY);
    return obj && { data: obj.data.slice(), version: this.#leaseVersion(obj) };
  }

  /** Compare-and-swap of the lease object: atomic, as a store with conditional writes. */
  async writeLease(data: Uint8Array, expected: string | undefined): Promise<string | undefined> {
    await this.#enter("writeLease");
    const obj = this.#objects.get(LEASE_KEY);
    if ((obj ? this.#leaseVersion(obj) : undefined) !== expected) return undefined;
    const version = `v${++this.#leaseWrites}`;
    this.#objects.set(LEASE_KEY, { data: data.slice(), createdAt: new Date(), version });
    return version;
  }

  #leaseVersion(obj: StoredObject): string {
    return obj.version ?? "planted";
  }

  /** `memory://<name>/<key>` of a snapshot or WAL segment. */
  describe(kind: "snapshot" | "wal", pos: Pos): string {
    const key = kind === "snapshot"
      ? this.#snapshotKey(pos.generation, pos.index)
      : this.#segmentKey(pos);
    return `${this.location}/${key}`;
  }

  /** `memory://<name>/<key>` of a checksum record. */
  describeRecord(generation: string, name: string): string {
    return `${this.location}/${this.#recordKey(generation, name)}`;
  }

  // ---- keys and objects ----

  #generationKey(generation: string): string {
    if (!isGeneration(generation)) {
      throw new LitestreamError(`invalid generation name: ${generation}`);
    }
    return `generations/${generation}`;
  }

  #snapshotKey(generation: string, index: number): string {
    return `${this.#generationKey(generation)}/snapshots/${snapshotName(index)}`;
  }

  #segmentKey(pos: Pos): string {
    return `${this.#generationKey(pos.generation)}/wal/${walSegmentName(pos.index, pos.offset)}`;
  }

  #recordKey(generation: string, name: string): string {
    return `${this.#generationKey(generation)}/${RECORDS_DIR}/${name}`;
  }

  /** Objects directly in `generations/<gen>/<dir>/` whose names `parse` accepts. */
  #list<P>(generation: string, dir: string, parse: (name: string) => P | undefined) {
    const prefix = `${this.#generationKey(generation)}/${dir}/`;
    return [...this.#objects].flatMap(([key, obj]) => {
      const parsed = key.startsWith(prefix) ? parse(key.slice(prefix.length)) : undefined;
      return parsed === undefined
        ? []
        : [{ parsed, size: obj.data.length, createdAt: obj.createdAt }];
    });
  }

  async #enter(op: Operation): Promise<{ keepBytes?: number }> {
    const { fail, keepBytes } = await this.faults.enter(op);
    if (fail !== undefined) throw fail;
    return { keepBytes };
  }

  async #read(op: Operation, key: string): Promise<Uint8Array> {
    const { keepBytes } = await this.#enter(op);
    const obj = this.#objects.get(key);
    if (!obj) throw new NotFoundError(`${this.location}/${key}: object not found`);
    return obj.data.slice(0, keepBytes ?? obj.data.length);
  }

  /** Reads `data` to its end (copying lent chunks), then stores it unless a failure is armed. */
  async #write(op: Operation, key: string, data: ReadableStream<Uint8Array>) {
    const { fail } = await this.faults.enter(op);
    const chunks: Uint8Array[] = [];
    for await (const chunk of chunksOf(data)) chunks.push(chunk.slice());
    if (fail !== undefined) throw fail;
    const stored = { data: concat(chunks), createdAt: new Date() };
    this.#objects.set(key, stored);
    return stored;
  }
}
