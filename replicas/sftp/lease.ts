/**
 * The SFTP replica's lease object, laid out as the file replica's (`file/lease.ts`):
 * `<root>/lease/<seq %016x>.json`, the newest file being the lease and its sequence number
 * the version. A write creates the next file by `hardlink@openssh.com` from a complete,
 * fsynced temporary file; the server's link() fails when that name exists, which makes the
 * compare-and-swap atomic. (A server without the extension gets an exclusive create of the
 * final name instead: atomic too, but a reader may then meet a file still being written.)
 * v0.3.13 never looks outside `generations/`.
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

/** Where the lease files of a replica live, and how to name them in errors. */
export interface LeaseDir {
  session: SftpSession;
  /** `<root>/lease`. */
  dir: string;
  /** The URL of a path, for errors. */
  url(path: string): string;
}

/** The sequence numbers present in the lease directory, ascending. */
async function sequence(sftp: SFTPWrapper, d: LeaseDir): Promise<number[]> {
  try {
    const entries = await request<{ filename: string; attrs: Stats }[]>(
      sftp,
      "LIST",
      d.url(d.dir),
      (cb) => sftp.readdir(d.dir, cb),
    );
    return entries.flatMap((e) => {
      const seq = e.attrs.isFile() ? leaseSequence(e.filename) : undefined;
      return seq === undefined ? [] : [seq];
    }).sort((a, b) => a - b);
  } catch (err) {
    if (isNoSuchFile(err)) return [];
    throw err;
  }
}

const fileOf = (d: LeaseDir, seq: number) => posix.join(d.dir, leaseFileName(seq));

/** Reads the newest lease file; undefined when there is none. */
export async function readSftpLease(d: LeaseDir): Promise<LeaseObject | undefined> {
  // A writer may remove the file between the listing and the read: list again.
  for (let attempt = 0; attempt < 5; attempt++) {
    const seq = (await d.session.use((sftp) => sequence(sftp, d))).at(-1);
    if (seq === undefined) return undefined;
    const path = fileOf(d, seq);
    try {
      const data = await new Response(await download(d.session, path, d.url(path))).bytes();
      return { data, version: String(seq) };
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  throw new LitestreamError(`${d.url(d.dir)}: lease files keep changing`);
}

/**
 * Writes the lease as the file after `expected` (the first when undefined), if no other
 * writer created it first; returns its version, or undefined when the condition failed.
 * Not retried on a broken connection: the link may have happened (the lease logic reads
 * the lease back and finds its own).
 */
export function writeSftpLease(
  d: LeaseDir,
  data: Uint8Array,
  expected: string | undefined,
): Promise<string | undefined> {
  const next = expected === undefined ? 1 : Number(expected) + 1;
  if (!Number.isSafeInteger(next) || next < 1) return Promise.resolve(undefined);
  return d.session.use(async (sftp) => {
    const target = fileOf(d, next);
    const url = d.url(target);
    await mkdirAll(sftp, d.dir, url);
    if (!await create(sftp, target, url, data)) return undefined;
    // `next` may be free only because it was removed after newer writes: newer ones win.
    const seqs = await sequence(sftp, d);
    if (seqs.at(-1)! > next) {
      await unlink(sftp, target, url);
      return undefined;
    }
    for (const seq of seqs) if (seq < next) await unlink(sftp, fileOf(d, seq), d.url(d.dir));
    return String(next);
  }, false);
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
