/**
 * The file replica: a directory in the Litestream v0.3 layout. Objects are
 * written to `<name>.tmp`, fsynced and renamed, so a final name always holds
 * a complete object. A file's mtime is its creation time for restores.
 *
 * @module
 */

import { join } from "node:path";
import { LitestreamError, NotFoundError } from "../../lib/errors.ts";
import {
  createFileSync,
  readDirOrEmpty,
  readDirSyncOrEmpty,
  removeIfExists,
  writeStream,
} from "../../lib/os/fs.ts";
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
import { statNs } from "../../lib/os/mtime_ns.ts";
import { sharedInotify } from "../../lib/os/inotify.ts";
import type { DirWatch } from "../../lib/os/watch.ts";
import { LEASE_DIR, readFileLease, writeFileLease } from "./lease.ts";

/** Options of a file replica. */
export interface FileReplicaOptions {
  /** Mode of files written (v0.3.13 copies the database file's mode). Default 0o600. */
  fileMode?: number;
  /** Mode of directories created (v0.3.13 copies the database directory's mode). Default 0o700. */
  dirMode?: number;
}

/** A replica stored in a local directory. */
export class FileReplicaClient implements ReplicaClient {
  /** Backend type. */
  readonly type = "file";
  readonly #fileMode: number;
  readonly #dirMode: number;

  /** Creates a client for the replica rooted at the absolute directory `root`. */
  constructor(readonly root: string, options: FileReplicaOptions = {}) {
    this.#fileMode = options.fileMode ?? 0o600;
    this.#dirMode = options.dirMode ?? 0o700;
  }

  /** The replica directory. */
  get location(): string {
    return this.root;
  }

  #generationDir(generation: string): string {
    if (!isGeneration(generation)) {
      throw new LitestreamError(`invalid generation name: ${generation}`);
    }
    return join(this.root, "generations", generation);
  }

  /** Path of a snapshot object. */
  snapshotPath(generation: string, index: number): string {
    return join(this.#generationDir(generation), "snapshots", snapshotName(index));
  }

  /** Path of a WAL segment object. */
  walSegmentPath(pos: Pos): string {
    return join(this.#generationDir(pos.generation), "wal", walSegmentName(pos.index, pos.offset));
  }

  describe(kind: "snapshot" | "wal", pos: Pos): string {
    return kind === "snapshot"
      ? this.snapshotPath(pos.generation, pos.index)
      : this.walSegmentPath(pos);
  }

  #recordPath(generation: string, name: string): string {
    return join(this.#generationDir(generation), RECORDS_DIR, name);
  }

  describeRecord(generation: string, name: string): string {
    return this.#recordPath(generation, name);
  }

  async records(generation: string): Promise<RecordInfo[]> {
    const dir = join(this.#generationDir(generation), RECORDS_DIR);
    const list = await listObjects(dir, (name) => isRecordName(name) ? name : undefined);
    return list.map(({ parsed: name, size, createdAt }) => ({ generation, name, size, createdAt }))
      .sort((a, b) => a.name < b.name ? -1 : 1);
  }

  async readRecord(generation: string, name: string): Promise<Uint8Array> {
    return await new Response(await openReadable(this.#recordPath(generation, name))).bytes();
  }

  async writeRecord(generation: string, name: string, data: Uint8Array): Promise<RecordInfo> {
    const st = await this.#writeAtomic(
      this.#recordPath(generation, name),
      ReadableStream.from([data]),
    );
    return { generation, name, size: st.size, createdAt: st.mtime ?? new Date() };
  }

  async deleteRecords(generation: string, names: string[]): Promise<void> {
    for (const name of names) await removeIfExists(this.#recordPath(generation, name));
  }

  /** Reads the newest `<root>/lease/<seq>.json` (see `lease.ts`). */
  readLease(): Promise<LeaseObject | undefined> {
    return Promise.try(() => readFileLease(join(this.root, LEASE_DIR)));
  }

  /** Creates the next lease file with an exclusive `link()`: atomic compare-and-swap. */
  writeLease(data: Uint8Array, expected: string | undefined): Promise<string | undefined> {
    return writeFileLease(join(this.root, LEASE_DIR), data, expected, {
      fileMode: this.#fileMode,
      dirMode: this.#dirMode,
    });
  }

  async generations(): Promise<string[]> {
    const names: string[] = [];
    for (const entry of await readDirOrEmpty(join(this.root, "generations"))) {
      if (entry.isDirectory && isGeneration(entry.name)) names.push(entry.name);
    }
    return names.sort();
  }

  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const list = await listObjects(
      join(this.#generationDir(generation), "snapshots"),
      parseSnapshotName,
    );
    return list.map(({ parsed: index, ...rest }) => ({ generation, index, ...rest })).sort((a, b) =>
      a.index - b.index
    );
  }

  /** Wakes on a segment renamed into place (see `#writeAtomic`); undefined without inotify. */
  watchWal(generation: string): DirWatch | undefined {
    try {
      return sharedInotify.watch(
        join(this.#generationDir(generation), "wal"),
        (name) => parseWalSegmentName(name) !== undefined,
      );
    } catch {
      return undefined; // not Linux, no --allow-ffi, no such directory yet, or no watches left
    }
  }

  async walSegments(
    generation: string,
    from?: { index: number; offset: number },
  ): Promise<WalSegmentInfo[]> {
    // Names before `from` are left out before their files are looked at.
    const list = await listObjects(
      join(this.#generationDir(generation), "wal"),
      (name) => {
        const pos = parseWalSegmentName(name);
        return pos && (!from || comparePos(pos, from) >= 0) ? pos : undefined;
      },
    );
    return list.map(({ parsed, ...rest }) => ({ generation, ...parsed, ...rest }))
      .sort((a, b) => a.index - b.index || a.offset - b.offset);
  }

  readSnapshot(generation: string, index: number): Promise<ReadableStream<Uint8Array>> {
    return openReadable(this.snapshotPath(generation, index));
  }

  readWalSegment(pos: Pos): Promise<ReadableStream<Uint8Array>> {
    return openReadable(this.walSegmentPath(pos));
  }

  async writeSnapshot(
    generation: string,
    index: number,
    data: ReadableStream<Uint8Array>,
  ): Promise<SnapshotInfo> {
    const st = await this.#writeAtomic(this.snapshotPath(generation, index), data);
    return { generation, index, size: st.size, createdAt: st.mtime ?? new Date() };
  }

  async writeWalSegment(pos: Pos, data: ReadableStream<Uint8Array>): Promise<WalSegmentInfo> {
    const st = await this.#writeAtomic(this.walSegmentPath(pos), data);
    return { ...pos, size: st.size, createdAt: st.mtime ?? new Date() };
  }

  async deleteSnapshot(generation: string, index: number): Promise<void> {
    await removeIfExists(this.snapshotPath(generation, index));
  }

  async deleteWalSegments(segments: Pos[]): Promise<void> {
    for (const pos of segments) await removeIfExists(this.walSegmentPath(pos));
  }

  async deleteGeneration(generation: string): Promise<void> {
    await Deno.remove(this.#generationDir(generation), { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
  }

  /**
   * Writes `<path>.tmp`, fsyncs, then renames: a final name never holds a partial object.
   * Sync calls but the fsync: no thread-pool round trip for each small step of a segment.
   */
  async #writeAtomic(path: string, data: ReadableStream<Uint8Array>): Promise<Deno.FileInfo> {
    const tmp = `${path}.tmp`;
    const file = createFileSync(tmp, { fileMode: this.#fileMode, dirMode: this.#dirMode });
    try {
      await writeStream(file, data);
      await file.sync();
      const st = file.statSync();
      file.close();
      Deno.renameSync(tmp, path);
      return st;
    } catch (err) {
      try {
        file.close();
      } catch { /* already closed */ }
      await removeIfExists(tmp);
      throw err;
    }
  }
}

/**
 * The files of `dir` whose names `parse` accepts, with size and creation time (mtime, with
 * nanoseconds where they can be read): one synchronous `stat` each where FFI allows, else
 * `Deno.stat` in parallel.
 */
async function listObjects<P>(
  dir: string,
  parse: (name: string) => P | undefined,
): Promise<{ parsed: P; size: number; createdAt: Date; createdAtNs?: bigint }[]> {
  // Synchronous listing and `stat`s: thousands of WAL segments are listed in a few ms, where
  // an await per entry and per file cost more than the system calls.
  const listed: { parsed: P; size: number; createdAt: Date; createdAtNs?: bigint }[] = [];
  const unstated: { parsed: P; path: string }[] = [];
  for (const e of readDirSyncOrEmpty(dir)) {
    const parsed = e.isFile ? parse(e.name) : undefined;
    if (parsed === undefined) continue;
    // `dir` is already normalized and a listed name holds no slash: no `join` (a thousand
    // normalizations cost a few ms).
    const path = `${dir}/${e.name}`;
    const ns = statNs(path);
    if (!ns) {
      unstated.push({ parsed, path });
      continue;
    }
    const createdAt = new Date(Number(ns.mtimeNs / 1_000_000n));
    listed.push({ parsed, size: ns.size, createdAt, createdAtNs: ns.mtimeNs });
  }
  // Without FFI (or for a file gone since the listing): `Deno.stat`, in parallel.
  for (
    const o of await Promise.all(unstated.map(async ({ parsed, path }) => {
      const st = await statOrUndefined(path);
      return st && { parsed, size: st.size, createdAt: st.mtime ?? new Date(0) };
    }))
  ) {
    if (o) listed.push(o);
  }
  return listed;
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (err) {
    // A listing can race a deletion by retention; the object is simply gone.
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

async function openReadable(path: string): Promise<ReadableStream<Uint8Array>> {
  try {
    return (await Deno.open(path)).readable;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new NotFoundError(`${path}: object not found`);
    throw err;
  }
}
