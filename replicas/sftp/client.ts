/**
 * The SFTP `ReplicaClient`: v0.3.13's layout under the replica root on the
 * server (`<path>/generations/<gen>/snapshots|wal/<name>`, a relative root in
 * the login directory), listings from directory reads with the files'
 * modification times (seconds, as the protocol gives them). Connection and
 * retries in `session.ts`, transfers in `transfer.ts`. Import this module
 * dynamically, only when an SFTP replica is configured: it loads ssh2.
 *
 * @module
 */

// @deno-types="./ssh2.d.ts"
import type { FileEntryWithStats, SFTPWrapper } from "ssh2";
import { posix } from "node:path";
import { LitestreamError } from "../../lib/errors.ts";
import { Logger } from "../../lib/log.ts";
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
import { sftpLocation, type SftpOptions, sftpOptions, type SftpReplicaConfig } from "./config.ts";
import { loginKey, type SessionTuning, SftpSession } from "./session.ts";
import { download, isNoSuchFile, request, unlink, upload } from "./transfer.ts";
import { SftpLease } from "./lease.ts";
import { LEASE_DIR } from "../file/lease.ts";
import { newStoreCounters, type StoreCounters } from "../counters.ts";

/** Deletes in flight at once (each is one request on the shared channel). */
const DELETE_WINDOW = 32;

/** Creates the client for a replica config entry (`url` and keys combined as in v0.3.13). */
export function sftpClientFromConfig(
  cfg: SftpReplicaConfig,
  log: Logger = new Logger(),
  tuning?: SessionTuning,
): SftpReplicaClient {
  return new SftpReplicaClient(sftpOptions(cfg), log, tuning);
}

/** A replica in a directory on an SFTP server. */
export class SftpReplicaClient implements ReplicaClient {
  /** Backend type as v0.3.13 names it. */
  readonly type = "sftp";
  /** `sftp://user@host:port/path` (never the password). */
  readonly location: string;
  /** Its login (see `loginKey`): another password or key to the same server is another store. */
  readonly store: string;
  /** The connection, opened on first use and closed when idle. */
  readonly session: SftpSession;
  /** The lease files, `<root>/lease/` (see `lease.ts`). */
  readonly #lease: SftpLease;
  /** Operations and bytes so far, as v0.3.13 counts them (`litestream_replica_operation_*`). */
  readonly counters: StoreCounters = newStoreCounters();
  readonly #root: string;

  /** A client for `options`; no connection is made until the first operation. */
  constructor(options: SftpOptions, log: Logger = new Logger(), tuning?: SessionTuning) {
    this.location = sftpLocation(options);
    this.store = loginKey(options);
    this.#root = options.path;
    this.session = new SftpSession(
      options,
      this.location,
      log.with({ replica: this.location }),
      tuning,
    );
    this.#lease = new SftpLease(this.session, this.#path(LEASE_DIR), (p) => this.#url(p));
  }

  /** Closes the connection now (it reopens if the client is used again). */
  close(): Promise<void> {
    return this.session.close();
  }

  // ---- paths ----

  #path(...parts: string[]): string {
    return this.#root ? posix.join(this.#root, ...parts) : posix.join(...parts);
  }

  #gen(generation: string): string {
    if (!isGeneration(generation)) {
      throw new LitestreamError(`invalid generation name: ${generation}`);
    }
    return this.#path("generations", generation);
  }

  #snapshotPath(generation: string, index: number): string {
    return posix.join(this.#gen(generation), "snapshots", snapshotName(index));
  }

  #segmentPath(pos: Pos): string {
    return posix.join(this.#gen(pos.generation), "wal", walSegmentName(pos.index, pos.offset));
  }

  #recordPath(generation: string, name: string): string {
    return posix.join(this.#gen(generation), RECORDS_DIR, name);
  }

  /** The URL of a path under the root, for errors. */
  #url(path: string): string {
    const rel = this.#root ? posix.relative(this.#root, path) : path;
    return `${this.location}/${rel}`;
  }

  describe(kind: "snapshot" | "wal", pos: Pos): string {
    return this.#url(
      kind === "snapshot" ? this.#snapshotPath(pos.generation, pos.index) : this.#segmentPath(pos),
    );
  }

  describeRecord(generation: string, name: string): string {
    return this.#url(this.#recordPath(generation, name));
  }

  // ---- listings ----

  /** Entries of `dir`; a missing directory lists as empty. */
  #readdir(dir: string): Promise<FileEntryWithStats[]> {
    this.counters.requests.LIST++;
    return this.session.use(async (sftp) => {
      try {
        return await request<FileEntryWithStats[]>(
          sftp,
          "LIST",
          this.#url(dir),
          (cb) => sftp.readdir(dir, cb),
        );
      } catch (err) {
        if (isNoSuchFile(err)) return [];
        throw err;
      }
    });
  }

  /** Regular files of `dir` whose names `parse` accepts, with size and mtime. */
  async #files<P>(dir: string, parse: (name: string) => P | undefined) {
    return (await this.#readdir(dir)).flatMap((e) => {
      const parsed = e.attrs.isFile() ? parse(e.filename) : undefined;
      return parsed === undefined
        ? []
        : [{ parsed, size: e.attrs.size, createdAt: new Date(e.attrs.mtime * 1000) }];
    });
  }

  async generations(): Promise<string[]> {
    return (await this.#readdir(this.#path("generations")))
      .filter((e) => e.attrs.isDirectory() && isGeneration(e.filename))
      .map((e) => e.filename)
      .sort();
  }

  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const list = await this.#files(
      posix.join(this.#gen(generation), "snapshots"),
      parseSnapshotName,
    );
    return list.map(({ parsed: index, ...rest }) => ({ generation, index, ...rest }))
      .sort((a, b) => a.index - b.index);
  }

  async walSegments(generation: string): Promise<WalSegmentInfo[]> {
    const list = await this.#files(posix.join(this.#gen(generation), "wal"), parseWalSegmentName);
    return list.map(({ parsed, ...rest }) => ({ generation, ...parsed, ...rest })).sort(comparePos);
  }

  async records(generation: string): Promise<RecordInfo[]> {
    const list = await this.#files(
      posix.join(this.#gen(generation), RECORDS_DIR),
      (n) => isRecordName(n) ? n : undefined,
    );
    return list.map(({ parsed: name, ...rest }) => ({ generation, name, ...rest }))
      .sort((a, b) => a.name < b.name ? -1 : 1);
  }

  // ---- reads ----

  readSnapshot(generation: string, index: number): Promise<ReadableStream<Uint8Array>> {
    return this.#read(this.#snapshotPath(generation, index));
  }

  readWalSegment(pos: Pos): Promise<ReadableStream<Uint8Array>> {
    return this.#read(this.#segmentPath(pos));
  }

  async readRecord(generation: string, name: string): Promise<Uint8Array> {
    return await new Response(await this.#read(this.#recordPath(generation, name))).bytes();
  }

  #read(path: string): Promise<ReadableStream<Uint8Array>> {
    this.counters.requests.GET++;
    return download(this.session, path, this.#url(path), (n) => this.counters.bytes.GET += n);
  }

  // ---- writes ----

  /** Uploads to a temporary name and renames; not retried here (the stream is spent). */
  async #write(path: string, data: ReadableStream<Uint8Array>) {
    const w = await this.session.use((sftp) => upload(sftp, path, this.#url(path), data), false);
    this.counters.requests.PUT++;
    this.counters.bytes.PUT += w.size;
    return w;
  }

  async writeSnapshot(
    generation: string,
    index: number,
    data: ReadableStream<Uint8Array>,
  ): Promise<SnapshotInfo> {
    const w = await this.#write(this.#snapshotPath(generation, index), data);
    return { generation, index, ...w };
  }

  async writeWalSegment(pos: Pos, data: ReadableStream<Uint8Array>): Promise<WalSegmentInfo> {
    const w = await this.#write(this.#segmentPath(pos), data);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, ...w };
  }

  async writeRecord(generation: string, name: string, data: Uint8Array): Promise<RecordInfo> {
    const w = await this.#write(this.#recordPath(generation, name), ReadableStream.from([data]));
    return { generation, name, ...w };
  }

  // ---- lease ----

  /** Reads the newest `<root>/lease/<seq>.json`. */
  readLease(): Promise<LeaseObject | undefined> {
    return this.#lease.read();
  }

  /** Creates the next lease file by a server-side hardlink: atomic compare-and-swap. */
  writeLease(data: Uint8Array, expected: string | undefined): Promise<string | undefined> {
    return this.#lease.write(data, expected);
  }

  // ---- deletes ----

  /** Removes files, DELETE_WINDOW at a time; missing ones are not an error. */
  #unlink(paths: string[]): Promise<void> {
    if (paths.length === 0) return Promise.resolve();
    return this.session.use(async (sftp) => {
      for (let i = 0; i < paths.length; i += DELETE_WINDOW) {
        await Promise.all(
          paths.slice(i, i + DELETE_WINDOW).map((p) => this.#unlinkOne(sftp, p)),
        );
      }
    });
  }

  async deleteSnapshot(generation: string, index: number): Promise<void> {
    await this.#unlink([this.#snapshotPath(generation, index)]);
  }

  async deleteWalSegments(segments: Pos[]): Promise<void> {
    await this.#unlink(segments.map((pos) => this.#segmentPath(pos)));
  }

  async deleteRecords(generation: string, names: string[]): Promise<void> {
    await this.#unlink(names.map((n) => this.#recordPath(generation, n)));
  }

  /** Removes the generation's directory tree (leftover temporary files included), as v0.3.13. */
  async deleteGeneration(generation: string): Promise<void> {
    const dir = this.#gen(generation);
    await this.session.use((sftp) => this.#removeTree(sftp, dir));
  }

  #unlinkOne(sftp: SFTPWrapper, path: string): Promise<void> {
    this.counters.requests.DELETE++;
    return unlink(sftp, path, this.#url(path));
  }

  async #removeTree(sftp: SFTPWrapper, dir: string): Promise<void> {
    this.counters.requests.LIST++;
    let entries: FileEntryWithStats[];
    try {
      entries = await request(sftp, "DELETE", this.#url(dir), (cb) => sftp.readdir(dir, cb));
    } catch (err) {
      if (isNoSuchFile(err)) return;
      throw err;
    }
    const files = entries.filter((e) => !e.attrs.isDirectory()).map((e) =>
      posix.join(dir, e.filename)
    );
    for (let i = 0; i < files.length; i += DELETE_WINDOW) {
      await Promise.all(
        files.slice(i, i + DELETE_WINDOW).map((p) => this.#unlinkOne(sftp, p)),
      );
    }
    for (const e of entries.filter((e) => e.attrs.isDirectory())) {
      await this.#removeTree(sftp, posix.join(dir, e.filename));
    }
    await request(sftp, "DELETE", this.#url(dir), (cb) => sftp.rmdir(dir, cb)).catch((err) => {
      if (!isNoSuchFile(err)) throw err;
    });
  }
}
