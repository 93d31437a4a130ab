/**
 * SFTP requests as promises, and streamed object transfers with bounded
 * memory: uploads go to `<name>.tmp`, pipelined, fsynced, and are renamed
 * over the final name (`posix-rename@openssh.com`, atomic), so a broken
 * connection never leaves a partial object under a final name; downloads are
 * pipelined reads that resume from the byte they reached when the connection
 * breaks.
 *
 * @module
 */

// @deno-types="./ssh2.d.ts"
import type { SFTPWrapper, Stats } from "ssh2";
import { Buffer } from "node:buffer";
import { posix } from "node:path";
import { NotFoundError } from "../../lib/errors.ts";
import { backoff } from "../../lib/os/async.ts";
import { chunksOf } from "../../lib/os/fs.ts";
import { describe, isConnectionError, SFTP_STATUS, SftpError, statusCode } from "./errors.ts";
import type { SftpSession } from "./session.ts";

/** Bytes per write request (OpenSSH's sftp-server takes up to 255 KiB). */
const CHUNK = 255 * 1024;
/** Write requests in flight per upload: memory per upload is at most CHUNK × WINDOW. */
const WINDOW = 8;
/**
 * Bytes per read request, and reads in flight per download: 1 MiB in flight. ssh2 makes a fresh
 * buffer for every packet and reply, and the garbage that waits for V8 grows with what is in
 * flight: a 220 MB restore peaked at 141–145 MB with 8 reads of 255 KiB, 133–137 MB with these.
 */
const READ_CHUNK = 64 * 1024;
const READ_WINDOW = 16;
/** Resumptions of a download without progress in between before it fails. */
const MAX_RESUMES = 3;

type Callback<T> = (err: Error | null | undefined, value?: T) => void;

/** Channels that have closed: ssh2 would queue a request on them and never answer it. */
const closedChannels = new WeakSet<SFTPWrapper>();

/** Records that `sftp` closed; requests on it fail at once from now on. */
export function markClosed(sftp: SFTPWrapper): void {
  closedChannels.add(sftp);
}

/** Runs one ssh2 request as a promise; its failure becomes an `SftpError` naming `url` and `op`. */
export function request<T = void>(
  sftp: SFTPWrapper,
  op: string,
  url: string,
  send: (cb: Callback<T>) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done: Callback<T> = (err, value) => {
      if (!err) return resolve(value as T);
      reject(new SftpError(op, url, describe(err), isConnectionError(err), { cause: err }));
    };
    if (closedChannels.has(sftp)) return done(new Error("connection closed"));
    try {
      send(done);
    } catch (err) {
      done(err as Error);
    }
  });
}

/** The SFTP status code behind an `SftpError` (`SFTP_STATUS`), if any. */
export function statusOf(err: unknown): number | undefined {
  return err instanceof SftpError ? statusCode(err.cause) : undefined;
}

/** Whether `err` says the path does not exist. */
export function isNoSuchFile(err: unknown): boolean {
  return statusOf(err) === SFTP_STATUS.NO_SUCH_FILE;
}

/** Removes a file; a missing one is not an error. */
export async function unlink(sftp: SFTPWrapper, path: string, url: string): Promise<void> {
  await request(sftp, "DELETE", url, (cb) => sftp.unlink(path, cb)).catch((err) => {
    if (!isNoSuchFile(err)) throw err;
  });
}

/**
 * Creates `dir` and its missing parents (as v0.3.13's `MkdirAll`). Parents are made once: a
 * directory the server still says has none (under `/proc`, say) is an error, not a retry.
 */
export async function mkdirAll(
  sftp: SFTPWrapper,
  dir: string,
  url: string,
  parentsMade = false,
): Promise<void> {
  try {
    await request(sftp, "mkdir", url, (cb) => sftp.mkdir(dir, cb));
  } catch (err) {
    if (isNoSuchFile(err) && !parentsMade && dir !== posix.dirname(dir)) {
      await mkdirAll(sftp, posix.dirname(dir), url);
      return mkdirAll(sftp, dir, url, true);
    }
    // Already there (a concurrent writer, or a retry): fine if it is a directory.
    const st = await request<Stats>(sftp, "mkdir", url, (cb) => sftp.stat(dir, cb)).catch(() =>
      undefined
    );
    if (!st?.isDirectory()) throw err;
  }
}

/** A written object's size and the server's modification time. */
export interface Written {
  size: number;
  createdAt: Date;
}

/**
 * Streams `data` to `<path>.tmp` with pipelined writes, fsyncs it, and renames
 * it over `path`. A failure of `data` itself is rethrown unchanged; on any
 * failure the temporary file is removed if the connection still allows.
 */
export async function upload(
  sftp: SFTPWrapper,
  path: string,
  url: string,
  data: ReadableStream<Uint8Array>,
): Promise<Written> {
  const tmp = `${path}.tmp`;
  // Lent chunks where the producer lends them (see chunksOf): they are copied at once.
  const chunks = chunksOf(data)[Symbol.asyncIterator]();
  let handle: Buffer | undefined;
  try {
    handle = await openForWrite(sftp, tmp, url);
    const h = handle;
    const { size, written } = await writeAll(sftp, h, url, chunks);
    // FSYNC, FSTAT and CLOSE follow the last writes without waiting for their answers: the
    // server handles a channel's requests in order, and the rename, sent only once every answer
    // is a success, is what publishes the object. One round trip where four were.
    const synced = fsync(sftp, h, url);
    const stat = request<Stats>(sftp, "PUT", url, (cb) => sftp.fstat(h, cb));
    handle = undefined;
    const closed = request(sftp, "PUT", url, (cb) => sftp.close(h, cb));
    const answers = await Promise.allSettled([written, synced, stat, closed]);
    // The first failure in request order: a write refused for a full disk, not what followed.
    const failed = answers.find((a) => a.status === "rejected");
    if (failed) throw failed.reason;
    const st = await stat;
    await rename(sftp, tmp, path, url);
    return { size, createdAt: new Date(st.mtime * 1000) };
  } catch (err) {
    chunks.return?.(undefined).catch(() => {});
    const h = handle;
    if (h) await request(sftp, "PUT", url, (cb) => sftp.close(h, cb)).catch(() => {});
    await request(sftp, "PUT", url, (cb) => sftp.unlink(tmp, cb)).catch(() => {});
    throw err instanceof SourceError ? err.cause : await explainWriteFailure(sftp, path, err);
  }
}

/** A failure of the data being uploaded, kept apart from the server's failures. */
class SourceError extends Error {}

async function openForWrite(sftp: SFTPWrapper, tmp: string, url: string): Promise<Buffer> {
  const open = () =>
    request<Buffer>(sftp, "PUT", url, (cb) => sftp.open(tmp, "w", { mode: 0o600 }, cb));
  try {
    return await open();
  } catch (err) {
    if (!isNoSuchFile(err)) throw err;
    await mkdirAll(sftp, posix.dirname(tmp), url);
    return await open();
  }
}

/**
 * Sends the chunks' bytes in CHUNK-sized write requests, at most WINDOW in flight; returns the
 * size once the last request is sent, and `written`, settled when every one is answered.
 */
async function writeAll(
  sftp: SFTPWrapper,
  handle: Buffer,
  url: string,
  chunks: AsyncIterator<Uint8Array>,
): Promise<{ size: number; written: Promise<void> }> {
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  let offset = 0;
  // WINDOW + 1 buffers, each reused once its write is acknowledged: no garbage per chunk.
  const free: Uint8Array<ArrayBuffer>[] = [];
  let buf = new Uint8Array(CHUNK);
  let fill = 0;
  const flush = async () => {
    const at = offset;
    const sent = buf;
    const chunk = Buffer.from(sent.buffer, 0, fill);
    offset += fill;
    buf = free.pop() ?? new Uint8Array(CHUNK);
    fill = 0;
    const p = request(sftp, "PUT", url, (cb) => sftp.write(handle, chunk, 0, chunk.length, at, cb))
      .then(() => void free.push(sent), (err) => void (failure ??= err))
      .finally(() => inflight.delete(p));
    inflight.add(p);
    while (inflight.size >= WINDOW) await Promise.race(inflight);
    if (failure) throw failure;
  };
  while (true) {
    let next: IteratorResult<Uint8Array>;
    try {
      next = await chunks.next();
    } catch (err) {
      await Promise.all(inflight);
      throw new SourceError("upload source failed", { cause: err });
    }
    if (next.done) break;
    for (let v = next.value; v.length > 0;) {
      const n = Math.min(v.length, CHUNK - fill);
      buf.set(v.subarray(0, n), fill);
      fill += n;
      v = v.subarray(n);
      if (fill === CHUNK) await flush();
    }
  }
  if (fill > 0) await flush();
  const written = Promise.all(inflight).then(() => {
    if (failure) throw failure;
  });
  return { size: offset, written };
}

/** fsync@openssh.com where the server has it (OpenSSH does): the object survives a server crash. */
async function fsync(sftp: SFTPWrapper, handle: Buffer, url: string): Promise<void> {
  try {
    await request(sftp, "PUT", url, (cb) => sftp.ext_openssh_fsync(handle, cb));
  } catch (err) {
    if (!/does not support/.test((err as Error).message)) throw err;
  }
}

/**
 * Renames `from` over `to`: atomically with posix-rename@openssh.com; on a
 * server without it, removes `to` first (a moment with no object, never a
 * partial one).
 */
async function rename(sftp: SFTPWrapper, from: string, to: string, url: string): Promise<void> {
  try {
    await request(sftp, "PUT", url, (cb) => sftp.ext_openssh_rename(from, to, cb));
    return;
  } catch (err) {
    if (!/does not support/.test((err as Error).message)) throw err;
  }
  await request(sftp, "PUT", url, (cb) => sftp.unlink(to, cb)).catch((err) => {
    if (!isNoSuchFile(err)) throw err;
  });
  await request(sftp, "PUT", url, (cb) => sftp.rename(from, to, cb));
}

/**
 * OpenSSH reports a full disk as a bare "Failure"; ask the server how much
 * room the replica's disk has left (statvfs@openssh.com) and say so.
 */
async function explainWriteFailure(
  sftp: SFTPWrapper,
  path: string,
  err: unknown,
): Promise<unknown> {
  if (!(err instanceof SftpError) || statusOf(err) !== SFTP_STATUS.FAILURE) return err;
  const dir = posix.dirname(path);
  const vfs = await request<{ f_bavail: number; f_frsize: number }>(
    sftp,
    "PUT",
    err.url,
    (cb) => sftp.ext_openssh_statvfs(dir, cb),
  ).catch(() => undefined);
  if (!vfs) return err;
  const free = Number(vfs.f_bavail) * Number(vfs.f_frsize);
  if (free >= 1024 * 1024) return err;
  return new SftpError(
    err.operation,
    err.url,
    `${err.message.split(" failed: ").pop()} (no space left on the server's disk: ${free} bytes ` +
      `free under ${dir})`,
    false,
    { cause: err },
  );
}

/**
 * Streams the object at `path`: pipelined reads of READ_CHUNK bytes, READ_WINDOW in
 * flight. When the connection breaks, the session reconnects and the read
 * goes on from the byte it reached, provided size and mtime are unchanged.
 *
 * A byte stream: a BYOB reader (the LZ4 decoder's, `readObject`'s) gets the
 * bytes copied into its own buffer, and the read buffers are reused, so a
 * large object makes no garbage per chunk on our side (ssh2 makes enough).
 */
export async function download(
  session: SftpSession,
  path: string,
  url: string,
  onBytes: (n: number) => void = () => {},
): Promise<ReadableStream<Uint8Array>> {
  const release = session.hold();
  let file: { sftp: SFTPWrapper; handle: Buffer; size: number; mtime: number };
  const open = (retry: boolean) =>
    session.use(async (sftp) => {
      let handle: Buffer;
      try {
        handle = await request<Buffer>(sftp, "GET", url, (cb) => sftp.open(path, "r", cb));
      } catch (err) {
        if (isNoSuchFile(err)) throw new NotFoundError(`${url}: object not found`, { cause: err });
        throw err;
      }
      const st = await request<Stats>(sftp, "GET", url, (cb) => sftp.fstat(handle, cb));
      return { sftp, handle, size: st.size, mtime: st.mtime };
    }, retry);
  try {
    file = await open(true);
  } catch (err) {
    release();
    throw err;
  }
  const bufSize = Math.max(1, Math.min(READ_CHUNK, file.size));
  let pos = 0; // Bytes delivered.
  let next = 0; // Offset of the next read to issue.
  let resumes = 0;
  const pending: Promise<Uint8Array>[] = [];
  // Buffers of delivered reads. Those of reads abandoned by a resume are not reused: a late
  // answer on the broken channel must not land in a buffer that holds newer bytes.
  const free: Uint8Array<ArrayBuffer>[] = [];
  let head: Uint8Array<ArrayBuffer> | undefined; // The read being delivered,
  let headUsed = 0; // and how much of it was.
  const issue = () => {
    while (pending.length < READ_WINDOW && next < file.size) {
      const len = Math.min(READ_CHUNK, file.size - next);
      const buf = free.pop() ?? new Uint8Array(bufSize);
      const p = readFull(file.sftp, file.handle, buf.subarray(0, len), next, url);
      p.catch(() => {}); // Handled when its turn comes.
      pending.push(p);
      next += len;
    }
  };
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    const { sftp, handle } = file;
    request(sftp, "GET", url, (cb) => sftp.close(handle, cb)).catch(() => {}).finally(release);
  };
  const resume = async (cause: unknown) => {
    if (++resumes > MAX_RESUMES || !(cause instanceof SftpError && cause.transient)) throw cause;
    pending.length = 0;
    await backoff(resumes, 200);
    const before = file;
    file = await open(true);
    if (file.size !== before.size || file.mtime !== before.mtime) {
      throw new SftpError("GET", url, "the object changed while it was being downloaded");
    }
    next = pos;
  };
  /** The next read's bytes, resuming after a broken connection. */
  const nextRead = async (): Promise<Uint8Array<ArrayBuffer>> => {
    while (true) {
      issue();
      try {
        const chunk = await pending.shift()! as Uint8Array<ArrayBuffer>;
        resumes = 0;
        return chunk;
      } catch (err) {
        await resume(err);
      }
    }
  };
  return new ReadableStream({
    type: "bytes",
    // Default readers get a fresh buffer per read; small objects a small one.
    autoAllocateChunkSize: bufSize,
    pull: async (ctrl) => {
      try {
        if (pos >= file.size) {
          finish();
          ctrl.close();
          return ctrl.byobRequest?.respond(0);
        }
        if (!head) {
          head = await nextRead();
          headUsed = 0;
        }
        const view = ctrl.byobRequest!.view!;
        const n = Math.min(view.byteLength, head.length - headUsed);
        new Uint8Array(view.buffer, view.byteOffset, n).set(
          head.subarray(headUsed, headUsed + n),
        );
        headUsed += n;
        pos += n;
        onBytes(n);
        if (headUsed === head.length) {
          free.push(new Uint8Array(head.buffer));
          head = undefined;
        }
        ctrl.byobRequest!.respond(n);
      } catch (err) {
        finish();
        throw err;
      }
    },
    cancel: () => finish(),
  });
}

/** Reads exactly `out.length` bytes at `at` into `out` (servers may return fewer per request). */
async function readFull(
  sftp: SFTPWrapper,
  handle: Buffer,
  out: Uint8Array,
  at: number,
  url: string,
): Promise<Uint8Array> {
  const len = out.length;
  const buf = Buffer.from(out.buffer, out.byteOffset, len);
  for (let got = 0; got < len;) {
    const n = await request<number>(
      sftp,
      "GET",
      url,
      (cb) => sftp.read(handle, buf, got, len - got, at + got, (err, n) => cb(err, n)),
    );
    if (n === 0) {
      throw new SftpError("GET", url, `object ended at byte ${at + got}, expected ${at + len}`);
    }
    got += n;
  }
  return out;
}
