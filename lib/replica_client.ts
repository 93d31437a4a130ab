/**
 * The `ReplicaClient` interface: the storage operations one replica backend
 * (a directory, an S3 bucket) must provide. Clients move opaque object bytes
 * (an LZ4 frame); compression and the replication logic live above them.
 *
 * @module
 */

import type { Pos } from "./names.ts";
import type { DirWatch } from "./os/watch.ts";

/** A snapshot object in a replica. */
export interface SnapshotInfo {
  generation: string;
  index: number;
  /** Stored (compressed) size in bytes. */
  size: number;
  /** File mtime or S3 LastModified: the time used for point-in-time restore. */
  createdAt: Date;
  /** The same time in nanoseconds, where the backend has them (file mtimes on Linux). */
  createdAtNs?: bigint;
}

/** A WAL segment object in a replica. */
export interface WalSegmentInfo extends Pos {
  /** Stored (compressed) size in bytes. */
  size: number;
  /** File mtime or S3 LastModified: the time used for point-in-time restore. */
  createdAt: Date;
  /** The same time in nanoseconds, where the backend has them (file mtimes on Linux). */
  createdAtNs?: bigint;
}

/** A checksum record object (see `lib/checksum_record.ts`). */
export interface RecordInfo {
  generation: string;
  name: string;
  size: number;
  createdAt: Date;
}

/** How to read a large object. */
export interface ReadOptions {
  /**
   * Parts of the object fetched at once with ranged reads, where the backend supports them
   * (default 1: one stream). Memory grows with it: about (parallelism + 1) × the part size.
   */
  parallelism?: number;
  /** Told why a read fell back to one stream (the store ignores ranges), for a debug log. */
  onSingleStream?: (reason: string) => void;
}

/** The replica's lease object as stored (see `lib/core/lease.ts`): its bytes and its version. */
export interface LeaseObject {
  /** The object's bytes (a small JSON document; backends store them as given). */
  data: Uint8Array;
  /**
   * Opaque; different after every successful `writeLease` (an S3 ETag, a file replica's
   * sequence number). Only compared for equality and passed back to `writeLease`.
   */
  version: string;
}

/** Storage operations of one replica backend, in the Litestream v0.3 key layout. */
export interface ReplicaClient {
  /** Backend type as v0.3.13 names it: `file` or `s3`. */
  readonly type: string;
  /** Human-readable location for logs and errors, e.g. a path or `s3://bucket/prefix`. */
  readonly location: string;
  /**
   * Optional: what the replicas that succeed and fail together have in common, where the
   * location's scheme and host (or a directory) do not say it all: an SFTP login, whose
   * password or key another replica of that server and user may not share.
   */
  readonly store?: string;

  /** Valid generation names, sorted; foreign names are ignored. */
  generations(): Promise<string[]>;
  /** Snapshots of a generation sorted by index; a missing generation lists as empty. */
  snapshots(generation: string): Promise<SnapshotInfo[]>;
  /**
   * WAL segments of a generation sorted by (index, offset); a missing generation lists as empty.
   * With `from`, segments before that position may be left out (a backend that can skip them
   * cheaply does: a follower lists only what it has not applied).
   */
  walSegments(
    generation: string,
    from?: { index: number; offset: number },
  ): Promise<WalSegmentInfo[]>;
  /**
   * Optional: a watch that wakes when WAL segments of `generation` may have been added, so a
   * follower looks at once instead of at its next poll (undefined when it cannot be had now).
   * Only backends that learn of new objects for free have it (a local directory: inotify).
   */
  watchWal?(generation: string): DirWatch | undefined;

  /**
   * Streams a snapshot object's stored bytes; throws `NotFoundError` when absent. Backends
   * with ranged reads fetch parts in parallel per `options`, delivered in order.
   */
  readSnapshot(
    generation: string,
    index: number,
    options?: ReadOptions,
  ): Promise<ReadableStream<Uint8Array>>;
  /** Streams a WAL segment object's stored bytes; throws `NotFoundError` when absent. */
  readWalSegment(pos: Pos): Promise<ReadableStream<Uint8Array>>;

  /** Writes a snapshot atomically: it is visible under its final name only once complete. */
  writeSnapshot(
    generation: string,
    index: number,
    data: ReadableStream<Uint8Array>,
  ): Promise<SnapshotInfo>;
  /** Writes a WAL segment atomically. */
  writeWalSegment(pos: Pos, data: ReadableStream<Uint8Array>): Promise<WalSegmentInfo>;

  /** Deletes one snapshot; a missing one is not an error. */
  deleteSnapshot(generation: string, index: number): Promise<void>;
  /** Deletes WAL segments; missing ones are not an error. */
  deleteWalSegments(segments: Pos[]): Promise<void>;
  /** Deletes a whole generation with all its objects. */
  deleteGeneration(generation: string): Promise<void>;

  /** Checksum records of a generation, sorted by name; foreign names ignored. */
  records(generation: string): Promise<RecordInfo[]>;
  /** Reads one checksum record. */
  readRecord(generation: string, name: string): Promise<Uint8Array>;
  /** Writes one checksum record atomically. */
  writeRecord(generation: string, name: string, data: Uint8Array): Promise<RecordInfo>;
  /** Deletes checksum records; missing ones are not an error. */
  deleteRecords(generation: string, names: string[]): Promise<void>;

  /**
   * Reads the replica's lease object, or `undefined` when there is none. It lives at the
   * replica root outside `generations/` (`<root>/lease.json`; a file replica keeps
   * `<root>/lease/<sequence>.json`), where v0.3.13 never looks. A store that refuses access
   * to it (as to its writes) rejects with `Deno.errors.PermissionDenied`, an error whose `code`
   * is `AccessDenied`, or one whose `accessDenied` is true: the lease is then turned off.
   */
  readLease(): Promise<LeaseObject | undefined>;
  /**
   * Compare-and-swap of the lease object: stores `data` only if the current version is
   * `expected` (`undefined`: only if there is no lease object). Returns the new version, or
   * `undefined` when the condition failed (another writer got there first); never overwrites
   * a version it was not given. Atomic where the store has conditional writes (S3 `If-Match` /
   * `If-None-Match: *`, GCS `ifGenerationMatch`, Azure `If-Match` / `If-None-Match: *`,
   * exclusive create on a file system). A store without them reads the current version right
   * before writing and returns `undefined` on a mismatch: a writer racing inside that window
   * can go unnoticed here, and the lease logic finds it at its next read (each lease names
   * its writer). Other failures throw as any write does.
   */
  writeLease(data: Uint8Array, expected: string | undefined): Promise<string | undefined>;

  /** A short display of the object's key, for error messages. */
  describe(kind: "snapshot" | "wal", pos: Pos): string;
  /** Display of a checksum record's key, for error messages. */
  describeRecord(generation: string, name: string): string;
}
