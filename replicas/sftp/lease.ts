/**
 * The SFTP replica's lease object, laid out as the file replica's (`file/lease.ts`):
 * `<root>/lease/<seq %016x>.json`, the newest file being the lease and its sequence number
 * the version. A write creates the next file by `hardlink@openssh.com` from a complete,
 * fsynced temporary file; the server's link() fails when that name exists, which makes the
 * compare-and-swap atomic. (A server without the extension gets an exclusive create of the
 * final name instead: atomic too, but a reader may then meet a file still being written.)
 * v0.3.13 never looks outside `generations/`. A reader that listed the newest file checks it
 * again in one round trip (see {@linkcode SftpLease}).
 *
 * @module
 */

// @deno-types="./ssh2.d.ts"
import type { SFTPWrapper, Stats } from "ssh2";
import { posix } from "node:path";
import type { Buffer } from "node:buffer";
import { LitestreamError, NotFoundError } from "../../lib/errors.ts";
import type { LeaseObject } from "../../lib/replica_client.ts";
import { leaseFileName, leaseSequence } from "../file/lease.ts";
import type { SftpSession } from "./session.ts";
import { download, isNoSuchFile, mkdirAll, request, unlink, upload } from "./transfer.ts";

/** A lease file's sequence number and attributes, from a directory listing. */
interface Listed {
  seq: number;
  size: number;
  mtime: number;
}

/** The newest lease file as this client last listed it, with its content. */
interface Seen extends Listed {
  data: Uint8Array;
}

/**
 * The lease files of one replica, `<root>/lease/`. Reads list the directory and download the
 * newest file, except when the file this client last listed is still the newest and unchanged:
 * then one round trip of two LSTATs (the next sequence number absent, this one's size and
 * modification time as listed) answers with the content already read. A replicator reads its
 * lease before every upload, and a listing and download take eight round trips (0.4 s of lag
 * at a 50 ms round trip).
 */
export class SftpLease {
  #seen: Seen | undefined;

  /**
   * The lease files in `dir` (`<root>/lease`) on `session`'s server; `url` names a path in
   * errors.
   */
  constructor(
    readonly session: SftpSession,
    readonly dir: string,
    readonly url: (path: string) => string,
  ) {}

  /** Reads the newest lease file; undefined when there is none. */
  async read(): Promise<LeaseObject | undefined> {
    const seen = this.#seen;
    if (seen && await this.session.use((sftp) => this.#unchanged(sftp, seen))) {
      return { data: seen.data, version: String(seen.seq) };
    }
    this.#seen = undefined;
    // A writer may remove the file between the listing and the read: list again.
    for (let attempt = 0; attempt < 5; attempt++) {
      const newest = (await this.session.use((sftp) => this.#list(sftp))).at(-1);
      if (newest === undefined) return undefined;
      const path = this.#fileOf(newest.seq);
      try {
        const data = await new Response(await download(this.session, path, this.url(path)))
          .bytes();
        this.#remember(newest, data);
        return { data, version: String(newest.seq) };
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
    }
    throw new LitestreamError(`${this.url(this.dir)}: lease files keep changing`);
  }

  /**
   * Writes the lease as the file after `expected` (the first when undefined), if no other
   * writer created it first; returns its version, or undefined when the condition failed.
   * Not retried on a broken connection: the link may have happened (the lease logic reads
   * the lease back and finds its own).
   */
  write(data: Uint8Array, expected: string | undefined): Promise<string | undefined> {
    const next = expected === undefined ? 1 : Number(expected) + 1;
    if (!Number.isSafeInteger(next) || next < 1) return Promise.resolve(undefined);
    return this.session.use(async (sftp) => {
      const target = this.#fileOf(next);
      const url = this.url(target);
      await mkdirAll(sftp, this.dir, url);
      if (!await create(sftp, target, url, data)) return undefined;
      // `next` may be free only because it was removed after newer writes: newer ones win.
      const listed = await this.#list(sftp);
      const newest = listed.at(-1);
      if (newest && newest.seq > next) {
        await unlink(sftp, target, url);
        return undefined;
      }
      for (const { seq } of listed) {
        if (seq < next) await unlink(sftp, this.#fileOf(seq), this.url(this.dir));
      }
      this.#seen = undefined;
      if (newest?.seq === next) this.#remember(newest, data);
      return String(next);
    }, false);
  }

  /**
   * Whether `seen` is still the newest lease file, as listed: no file after it, and its size
   * and modification time unchanged (a file is never rewritten, but a removed lease directory
   * may be written again from the first number). The two LSTATs go out together.
   */
  async #unchanged(sftp: SFTPWrapper, seen: Seen): Promise<boolean> {
    const [next, current] = await Promise.all([
      this.#lstat(sftp, this.#fileOf(seen.seq + 1)),
      this.#lstat(sftp, this.#fileOf(seen.seq)),
    ]);
    return !next && current?.size === seen.size && current.mtime === seen.mtime;
  }

  /** The attributes of `path`; undefined when it does not exist. */
  async #lstat(sftp: SFTPWrapper, path: string): Promise<Stats | undefined> {
    try {
      return await request<Stats>(sftp, "GET", this.url(path), (cb) => sftp.lstat(path, cb));
    } catch (err) {
      if (isNoSuchFile(err)) return undefined;
      throw err;
    }
  }

  /** Keeps `listed` and its content for the next read, when the content is all of it. */
  #remember(listed: Listed, data: Uint8Array): void {
    // Without the hardlink extension a lease file is created empty and filled after.
    this.#seen = data.length === listed.size && data.length > 0 ? { ...listed, data } : undefined;
  }

  /** The lease files present, ascending. */
  async #list(sftp: SFTPWrapper): Promise<Listed[]> {
    try {
      const entries = await request<{ filename: string; attrs: Stats }[]>(
        sftp,
        "LIST",
        this.url(this.dir),
        (cb) => sftp.readdir(this.dir, cb),
      );
      return entries.flatMap(({ filename, attrs }) => {
        const seq = attrs.isFile() ? leaseSequence(filename) : undefined;
        return seq === undefined ? [] : [{ seq, size: attrs.size, mtime: attrs.mtime }];
      }).sort((a, b) => a.seq - b.seq);
    } catch (err) {
      if (isNoSuchFile(err)) return [];
      throw err;
    }
  }

  #fileOf(seq: number): string {
    return posix.join(this.dir, leaseFileName(seq));
  }
}

/** Creates `target` holding `data` unless it exists; false when it does. */
async function create(
  sftp: SFTPWrapper,
  target: string,
  url: string,
  data: Uint8Array,
): Promise<boolean> {
  const exists = async (err: unknown) => {
    const st = await request<Stats>(sftp, "PUT", url, (cb) => sftp.stat(target, cb))
      .catch((e) => isNoSuchFile(e) ? undefined : Promise.reject(e));
    if (st) return false;
    throw err;
  };
  const tmp = posix.join(posix.dirname(target), `.tmp-${crypto.randomUUID()}`);
  await upload(sftp, tmp, url, ReadableStream.from([data]));
  try {
    await request(sftp, "PUT", url, (cb) => sftp.ext_openssh_hardlink(tmp, target, cb));
    return true;
  } catch (err) {
    if (!/does not support/.test((err as Error).message)) return await exists(err);
  } finally {
    await unlink(sftp, tmp, url);
  }
  // No hardlink extension: claim the final name with an exclusive create, then fill it.
  try {
    const handle = await request<Buffer>(sftp, "PUT", url, (cb) => sftp.open(target, "wx", cb));
    await request(sftp, "PUT", url, (cb) => sftp.close(handle, cb));
  } catch (err) {
    return await exists(err);
  }
  await upload(sftp, target, url, ReadableStream.from([data]));
  return true;
}
