/**
 * Shadow WAL files: Litestream's private copy of each WAL incarnation (one
 * file per index), holding the real WAL's header and only whole, verified,
 * committed frames. Copies are two-pass (verify, then copy while verifying
 * again) so a shadow never holds an uncommitted frame, even after a crash.
 *
 * Every call but fsync is synchronous: these files carry no SQLite lock (its
 * locks are on the database file and the `-shm`, never opened here), and a
 * commit to each of a thousand databases spent more CPU dispatching small
 * async calls to the thread pool than doing them. Long runs give the event
 * loop turns (see `Pacer`).
 *
 * @module
 */

import { Pacer } from "../os/async.ts";
import { lendingStream, readAtSync, writeAllSync } from "../os/fs.ts";
import { LitestreamError } from "../errors.ts";
import {
  type Checksum,
  decodeFrameHeader,
  decodeWalHeader,
  frameSize,
  verifyFrame,
  WAL_HEADER_SIZE,
  type WalHeader,
} from "../sqlite/wal.ts";

/** Frames read per chunk while scanning a WAL. */
const FRAMES_PER_CHUNK = 256;

/** Read buffers of finished scans and reads, reused by the next ones (they may overlap). */
const spare: Uint8Array[] = [];

/** A buffer of at least `size` bytes from {@linkcode spare}, or a new one. */
function borrow(size: number): Uint8Array {
  const i = spare.findIndex((b) => b.length >= size);
  return i >= 0 ? spare.splice(i, 1)[0] : new Uint8Array(size);
}

function giveBack(buf: Uint8Array): void {
  if (spare.length < 4) spare.push(buf);
}

/** What is known about one shadow WAL file. */
export interface ShadowState {
  path: string;
  index: number;
  header: WalHeader;
  /** The 32 header bytes, as in the real WAL. */
  headerBytes: Uint8Array;
  /** Bytes of header plus committed frames: always ends on a commit. */
  size: number;
  /** Running checksum after the last frame (the seed for the next one). */
  checksum: Checksum;
}

/** Where a scan of frames stopped. */
interface Walk {
  /** End of the last valid commit frame (the start offset when none). */
  committedEnd: number;
  checksumAtCommit: Checksum;
}

/** Reads the real WAL's 32-byte header, or undefined when the WAL is missing or shorter. */
export function readWalHeaderBytes(walPath: string): Uint8Array | undefined {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(walPath, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  try {
    const buf = new Uint8Array(WAL_HEADER_SIZE);
    return readAtSync(file, 0, buf) === WAL_HEADER_SIZE ? buf : undefined;
  } finally {
    file.close();
  }
}

/**
 * Opens an existing shadow file and verifies it end to end. A tail that is not
 * a committed frame (left by a crash mid-append) is cut off. Returns a problem
 * string when the file is missing or unusable.
 */
export async function openShadow(path: string, index: number): Promise<ShadowState | string> {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "no shadow wal";
    throw err;
  }
  try {
    const headerBytes = new Uint8Array(WAL_HEADER_SIZE);
    if (readAtSync(file, 0, headerBytes) < WAL_HEADER_SIZE) return "short shadow wal";
    const header = decodeWalHeader(headerBytes);
    if (typeof header === "string") return `shadow wal: ${header}`;
    const walk = await walkFrames(file, WAL_HEADER_SIZE, header, header.checksum, Infinity);
    const size = file.statSync().size;
    if (size !== walk.committedEnd) {
      file.truncateSync(walk.committedEnd);
      await file.sync();
    }
    return {
      path,
      index,
      header,
      headerBytes,
      size: walk.committedEnd,
      checksum: walk.checksumAtCommit,
    };
  } finally {
    file.close();
  }
}

/**
 * Creates the shadow file for a new index from the real WAL's current header
 * (checksum verified), then copies its committed frames.
 */
export async function createShadow(
  walPath: string,
  path: string,
  index: number,
  mode: number,
): Promise<{ shadow: ShadowState; copy: CopyResult }> {
  const headerBytes = readWalHeaderBytes(walPath);
  if (!headerBytes) throw new LitestreamError(`${walPath}: wal header missing`);
  const header = decodeWalHeader(headerBytes);
  if (typeof header === "string") throw new LitestreamError(`${walPath}: ${header}`);
  // Written aside and renamed: a crash must not leave a shadow file without its header.
  const tmp = `${path}.tmp`;
  const file = Deno.openSync(tmp, { write: true, create: true, truncate: true, mode });
  try {
    writeAllSync(file, headerBytes);
    await file.sync();
  } finally {
    file.close();
  }
  Deno.renameSync(tmp, path);
  const shadow: ShadowState = {
    path,
    index,
    header,
    headerBytes,
    size: WAL_HEADER_SIZE,
    checksum: header.checksum,
  };
  return { shadow, copy: await copyCommittedFrames(walPath, shadow) };
}

/** What a copy did. */
export interface CopyResult {
  /** Bytes appended to the shadow. */
  copied: number;
}

/**
 * Appends the real WAL's new committed frames (salts matching the shadow's
 * header, checksum chain continuing the shadow's) to the shadow file, then
 * fsyncs it. Updates `shadow` in place.
 */
export async function copyCommittedFrames(
  walPath: string,
  shadow: ShadowState,
): Promise<CopyResult> {
  let wal: Deno.FsFile;
  try {
    wal = Deno.openSync(walPath, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { copied: 0 };
    throw err;
  }
  // Committed frames are appended as the walk verifies them: one read of each frame. The
  // shadow is opened only once there is something to append.
  let out: Deno.FsFile | undefined;
  let end = shadow.size;
  let endChecksum = shadow.checksum;
  const append = (frames: Uint8Array) => {
    if (!out) {
      out = Deno.openSync(shadow.path, { write: true });
      out.seekSync(shadow.size, Deno.SeekMode.Start);
    }
    writeAllSync(out, frames);
  };
  try {
    const walk = await walkFrames(
      wal,
      shadow.size,
      shadow.header,
      shadow.checksum,
      Infinity,
      (verified, at, progress) => {
        // Up to the last commit so far, if the frames since `end` are all in this read: a
        // transaction's frames are not written before its commit (it may be gigabytes, read again
        // on every sync until it commits).
        if (at > end || progress.committedEnd <= end) return;
        append(verified.subarray(end - at, progress.committedEnd - at));
        end = progress.committedEnd;
        endChecksum = progress.checksumAtCommit;
      },
    );
    if (walk.committedEnd > end) {
      // A transaction spanned two reads, and its first frames were gone when its commit came:
      // read them again up to that commit, verifying again in case the WAL moved meanwhile.
      const again = await walkFrames(
        wal,
        end,
        shadow.header,
        endChecksum,
        walk.committedEnd,
        append,
      );
      if (again.committedEnd === walk.committedEnd) {
        end = again.committedEnd;
        endChecksum = again.checksumAtCommit;
      }
    }
    const result = { copied: 0 };
    if (!out) return result;
    out.truncateSync(end);
    if (end === shadow.size) return result;
    await out.sync();
    result.copied = end - shadow.size;
    shadow.size = end;
    shadow.checksum = endChecksum;
    return result;
  } finally {
    out?.close();
    wal.close();
  }
}

/**
 * Walks whole frames of `file` from `start` up to `limit`, verifying salts
 * and the checksum chain. `visit` receives every run of verified frames, its
 * offset, and the walk so far.
 */
async function walkFrames(
  file: Deno.FsFile,
  start: number,
  header: WalHeader,
  seed: Checksum,
  limit: number,
  visit?: (verified: Uint8Array, at: number, walk: Readonly<Walk>) => void,
): Promise<Walk> {
  const size = frameSize(header.pageSize);
  // No bigger than what there is to read: a thousand databases syncing a commit each at once
  // held a thousand 1 MiB buffers. (fstat: sync, as for every descriptor of a live database.)
  const known = Number.isFinite(limit) ? limit : file.statSync().size;
  const frames = Math.min(FRAMES_PER_CHUNK, Math.max(1, Math.ceil((known - start) / size)));
  const chunk = size * frames;
  const buf = borrow(chunk);
  const walk: Walk = { committedEnd: start, checksumAtCommit: seed };
  let checksum = seed;
  let offset = start;
  const pacer = new Pacer();
  try {
    while (offset < limit) {
      const want = Math.min(chunk, Math.floor((limit - offset) / size) * size);
      if (want <= 0) break;
      const n = readAtSync(file, offset, buf.subarray(0, want));
      let valid = 0;
      for (; valid + size <= n; valid += size) {
        const frame = buf.subarray(valid, valid + size);
        const r = verifyFrame(frame, header, checksum);
        if (typeof r === "string") break;
        checksum = r.checksum;
        if (r.header.commitSize !== 0) {
          walk.committedEnd = offset + valid + size;
          walk.checksumAtCommit = checksum;
        }
      }
      if (visit && valid > 0) visit(buf.subarray(0, valid), offset, walk);
      offset += valid;
      if (valid < want) break;
      await pacer.add(n);
    }
  } finally {
    giveBack(buf);
  }
  return walk;
}

/**
 * Streams WAL bytes [start, end) of a shadow or real WAL file in whole frames,
 * checking that every frame carries the header's salts, so nothing foreign is
 * ever shipped or checksummed. Read through `chunksOf`, it lends views of one
 * reused buffer (see `lendingStream`).
 */
export function readWalRange(
  path: string,
  start: number,
  end: number,
): ReadableStream<Uint8Array> {
  return lendingStream((lend) => walRangeChunks(path, start, end, lend));
}

async function* walRangeChunks(
  path: string,
  start: number,
  end: number,
  lend: boolean,
): AsyncGenerator<Uint8Array> {
  const file = Deno.openSync(path, { read: true });
  let buf: Uint8Array | undefined;
  const pacer = new Pacer();
  try {
    const head = new Uint8Array(WAL_HEADER_SIZE);
    const header = decodeWalHeader(head.subarray(0, readAtSync(file, 0, head)));
    if (typeof header === "string") throw new LitestreamError(`${path}: ${header}`);
    const frame = frameSize(header.pageSize);
    if (lend) buf = borrow(Math.min(WAL_HEADER_SIZE + FRAMES_PER_CHUNK * frame, end - start));
    for (let offset = start; offset < end;) {
      const first = offset === 0 ? WAL_HEADER_SIZE : 0;
      const frames = Math.max(
        1,
        Math.min(FRAMES_PER_CHUNK, Math.floor((end - offset - first) / frame)),
      );
      const len = Math.min(end - offset, first + frames * frame);
      const chunk = buf && buf.length >= len ? buf.subarray(0, len) : new Uint8Array(len);
      if (readAtSync(file, offset, chunk) !== len) {
        throw new LitestreamError(`${path}: shadow wal shorter than expected`);
      }
      for (let at = first; at < len; at += frame) {
        const fh = decodeFrameHeader(chunk.subarray(at, at + 24));
        if (fh.salt1 !== header.salt1 || fh.salt2 !== header.salt2) {
          throw new LitestreamError(`${path}: replica salt mismatch at offset ${offset + at}`);
        }
      }
      offset += len;
      yield chunk;
      await pacer.add(len);
    }
  } finally {
    file.close();
    if (buf) giveBack(buf);
  }
}

/** The real WAL's header and the end of its committed frames; undefined when it has no valid header. */
export async function scanWal(
  walPath: string,
): Promise<{ headerBytes: Uint8Array; header: WalHeader; committedEnd: number } | undefined> {
  const headerBytes = readWalHeaderBytes(walPath);
  const header = headerBytes && decodeWalHeader(headerBytes);
  if (!headerBytes || !header || typeof header === "string") return undefined;
  const file = Deno.openSync(walPath, { read: true });
  try {
    const walk = await walkFrames(file, WAL_HEADER_SIZE, header, header.checksum, Infinity);
    return { headerBytes, header, committedEnd: walk.committedEnd };
  } finally {
    file.close();
  }
}
