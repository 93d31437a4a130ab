/**
 * The file replica's lease object, with a compare-and-swap a file system can do atomically:
 * each write creates the next file of a sequence, `<root>/lease/<seq %016x>.json`, by
 * `link()` from a complete temporary file, which fails when that name exists. The newest
 * file is the lease; its sequence number is the version. Older files are removed after a
 * write. v0.3.13 never looks outside `generations/`.
 *
 * The holder reads the lease before an upload, so with many databases it is on the path of
 * every commit: sync calls but the fsync, as for the objects (see `client.ts`).
 *
 * @module
 */

import { join } from "node:path";
import { LitestreamError } from "../../lib/errors.ts";
import type { LeaseObject } from "../../lib/replica_client.ts";
import {
  createFileSync,
  readDirSyncOrEmpty,
  removeIfExistsSync,
  writeAllSync,
} from "../../lib/os/fs.ts";

/** The lease directory under the replica root. */
export const LEASE_DIR = "lease";

const NAME_RE = /^([0-9a-f]{16})\.json$/;

/** The name of lease file number `seq` (`<seq %016x>.json`); the SFTP replica uses it too. */
export function leaseFileName(seq: number): string {
  return `${seq.toString(16).padStart(16, "0")}.json`;
}

/** The sequence number of a lease file's name; undefined for any other name. */
export function leaseSequence(name: string): number | undefined {
  const m = NAME_RE.exec(name);
  return m ? parseInt(m[1], 16) : undefined;
}

/** The sequence numbers present in `dir`, ascending. */
function sequence(dir: string): number[] {
  return readDirSyncOrEmpty(dir).flatMap((e) => {
    const seq = e.isFile ? leaseSequence(e.name) : undefined;
    return seq === undefined ? [] : [seq];
  }).sort((a, b) => a - b);
}

function fileOf(dir: string, seq: number): string {
  return join(dir, leaseFileName(seq));
}

/** Reads the newest lease file of `dir`; undefined when there is none. */
export function readFileLease(dir: string): LeaseObject | undefined {
  // A writer may remove the file between the listing and the read: list again.
  for (let attempt = 0; attempt < 5; attempt++) {
    const seq = sequence(dir).at(-1);
    if (seq === undefined) return undefined;
    try {
      return { data: Deno.readFileSync(fileOf(dir, seq)), version: String(seq) };
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  throw new LitestreamError(`${dir}: lease files keep changing`);
}

/**
 * Writes the lease as the file after `expected` (the first when undefined), if no other
 * writer created it first; returns its version, or undefined when the condition failed.
 */
export async function writeFileLease(
  dir: string,
  data: Uint8Array,
  expected: string | undefined,
  modes: { fileMode: number; dirMode: number },
): Promise<string | undefined> {
  const next = expected === undefined ? 1 : Number(expected) + 1;
  if (!Number.isSafeInteger(next) || next < 1) return undefined;
  const tmp = join(dir, `.tmp-${crypto.randomUUID()}`);
  const target = fileOf(dir, next);
  try {
    const f = createFileSync(tmp, modes);
    try {
      writeAllSync(f, data);
      await f.sync();
    } finally {
      f.close();
    }
    try {
      Deno.linkSync(tmp, target);
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) return undefined;
      throw err;
    }
  } finally {
    removeIfExistsSync(tmp);
  }
  // `next` may be free only because it was removed after newer writes: newer ones win.
  const seqs = sequence(dir);
  if (seqs.at(-1)! > next) {
    removeIfExistsSync(target);
    return undefined;
  }
  for (const seq of seqs) if (seq < next) removeIfExistsSync(fileOf(dir, seq));
  return String(next);
}
