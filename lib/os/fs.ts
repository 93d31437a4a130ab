/**
 * File-writing helpers shared by the replica, restore and shadow WAL code.
 * They write through `FsFile.write` directly: `FsFile.writable` with
 * `preventClose` holds back a trailing write under 64 KiB until the stream
 * closes, which silently truncated files.
 *
 * @module
 */

import { dirname } from "node:path";
import { Pacer } from "./async.ts";

/** Writes all of `data` at the file's current position. */
export async function writeAll(
  file: { write(p: Uint8Array): Promise<number> },
  data: Uint8Array,
): Promise<void> {
  for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
}

/**
 * Creates (or truncates) `path` for writing with `fileMode`, making its directory (with
 * `dirMode`) only when it is missing: a `mkdir -p` before every small write cost as much as
 * the write.
 */
export function createFileSync(
  path: string,
  modes: { fileMode: number; dirMode: number },
): Deno.FsFile {
  const options = { write: true, create: true, truncate: true, mode: modes.fileMode };
  try {
    return Deno.openSync(path, options);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  Deno.mkdirSync(dirname(path), { recursive: true, mode: modes.dirMode });
  return Deno.openSync(path, options);
}

/** Like {@linkcode writeAll}, with synchronous calls. */
export function writeAllSync(file: Deno.FsFile, data: Uint8Array): void {
  for (let off = 0; off < data.length;) off += file.writeSync(data.subarray(off));
}

/**
 * Copies a stream into an open file at its current position; returns the bytes written. A
 * {@linkcode lendingStream} lends its chunks (no copies). Sync writes, with event-loop turns
 * in between (see {@linkcode Pacer}).
 */
export async function writeStream(
  file: Deno.FsFile,
  stream: ReadableStream<Uint8Array>,
): Promise<number> {
  const pacer = new Pacer();
  let n = 0;
  for await (const chunk of chunksOf(stream)) {
    writeAllSync(file, chunk);
    n += chunk.length;
    await pacer.add(chunk.length);
  }
  return n;
}

/** True when `path` exists (without following a final symlink). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** `Deno.statSync(path)`, or undefined when it fails (the file is gone, or cannot be reached). */
export function statSyncOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch {
    return undefined;
  }
}

/** Removes a file; a missing file is not an error. */
export async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** Like {@linkcode removeIfExists}, with a synchronous call. */
export function removeIfExistsSync(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** Reads up to `buf.length` bytes at `offset`; returns how many were read (fewer only at end of file). */
export async function readAt(file: Deno.FsFile, offset: number, buf: Uint8Array): Promise<number> {
  await file.seek(offset, Deno.SeekMode.Start);
  let n = 0;
  while (n < buf.length) {
    const r = await file.read(buf.subarray(n));
    if (r === null) break;
    n += r;
  }
  return n;
}

/** Lists a directory; a missing directory lists as empty. */
export async function readDirOrEmpty(dir: string): Promise<Deno.DirEntry[]> {
  try {
    return await Array.fromAsync(Deno.readDir(dir));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}

/** Like {@linkcode readDirOrEmpty}, with a synchronous call. */
export function readDirSyncOrEmpty(dir: string): Deno.DirEntry[] {
  try {
    return Array.from(Deno.readDirSync(dir));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}

/**
 * Like `readAt`, with synchronous calls only. Use it for the database file:
 * Deno's async methods on an `FsFile` (read, seek, stat) run on a duplicated
 * descriptor and close it afterwards, and closing any descriptor of a file
 * releases every POSIX lock this process holds on it, including SQLite's
 * (measured with Deno 2.9.6: the database's shared lock vanished from
 * /proc/locks after one async seek).
 */
export function readAtSync(file: Deno.FsFile, offset: number, buf: Uint8Array): number {
  file.seekSync(offset, Deno.SeekMode.Start);
  let n = 0;
  while (n < buf.length) {
    const r = file.readSync(buf.subarray(n));
    if (r === null) break;
    n += r;
  }
  return n;
}

/**
 * Streams a whole file from offset 0 with sync reads only (see `readAtSync`); never closes the
 * file. Read through {@linkcode chunksOf}, it lends views of one reused buffer.
 */
export function syncReadStream(
  file: Deno.FsFile,
  chunkSize = 1024 * 1024,
): ReadableStream<Uint8Array> {
  return lendingStream(function* (lend) {
    let buf: Uint8Array | undefined;
    for (let offset = 0;;) {
      if (!lend || !buf) buf = new Uint8Array(chunkSize);
      const n = readAtSync(file, offset, buf);
      offset += n;
      if (n > 0) yield n === buf.length || lend ? buf.subarray(0, n) : buf.slice(0, n);
      if (n < buf.length) return;
    }
  });
}

/** Chunks in order, as a sync or async iterable. */
export type Chunks = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** What {@linkcode chunksOf} takes from a lending stream instead of reading it. */
const lenders = new WeakMap<ReadableStream<Uint8Array>, () => Chunks>();

/**
 * A byte stream whose producer can lend its chunks: `source(true)` may yield views of reused
 * buffers, each valid only until the next chunk is asked for; `source(false)` must yield
 * chunks the consumer may keep. Read as an ordinary stream, it uses `source(false)` and pulls
 * only on demand (no read-ahead). {@linkcode chunksOf} uses `source(true)`: large objects then
 * move through a few reused buffers instead of a fresh buffer per chunk. `cancelUnread` runs
 * when the stream is cancelled before it was read at all.
 */
export function lendingStream(
  source: (lend: boolean) => Chunks,
  cancelUnread: (reason: unknown) => Promise<void> = async () => {},
): ReadableStream<Uint8Array> {
  let it: AsyncIterator<Uint8Array> | Iterator<Uint8Array> | undefined;
  let used = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!it) {
        if (used) throw new TypeError("stream already lent");
        used = true;
        it = iteratorOf(source(false));
      }
      const r = await it.next();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    async cancel(reason) {
      if (it) await it.return?.();
      else if (!used) await cancelUnread(reason);
    },
  }, { highWaterMark: 0 });
  lenders.set(stream, () => {
    if (used) throw new TypeError("stream already read");
    used = true;
    return source(true);
  });
  return stream;
}

/**
 * The chunks of `stream`: lent by a {@linkcode lendingStream} (each valid only until the next
 * is asked for), else read from the stream as they come. Either way the consumer must be done
 * with a chunk before asking for the next.
 */
export async function* chunksOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const lend = lenders.get(stream);
  if (lend && !stream.locked) {
    lenders.delete(stream);
    yield* lend();
    return;
  }
  yield* stream;
}

/**
 * `stream` as a {@linkcode lendingStream}, for a producer whose chunks each own their whole
 * buffer and are held by no one else (the age library's output): read through
 * {@linkcode chunksOf}, a chunk's memory is freed (its buffer detached) as soon as the next one
 * is asked for, instead of at V8's next garbage collection. Read as an ordinary stream, every
 * chunk is left as it is. Cancelling the result cancels `stream`.
 */
export function releasingStream(stream: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  return lendingStream(async function* (lend) {
    let used: ArrayBuffer | undefined;
    // Leaving the loop early (the consumer stopped) cancels `stream`.
    for await (const chunk of stream) {
      used?.transfer(0);
      used = undefined;
      yield chunk;
      const { buffer } = chunk;
      const whole = buffer instanceof ArrayBuffer && chunk.byteOffset === 0 &&
        chunk.byteLength === buffer.byteLength;
      if (lend && whole) used = buffer;
    }
  }, (reason) => stream.cancel(reason));
}

/**
 * Copies of lent chunks, for consumers that keep them; with `maxPiece`, each chunk is copied in
 * pieces of at most that many bytes (for a consumer that holds on to its input and emits its
 * output a piece at a time, so that less of both is in memory at once).
 */
export async function* copied(chunks: Chunks, maxPiece = Infinity): AsyncGenerator<Uint8Array> {
  for await (const c of chunks) {
    for (let at = 0; at < c.length; at += maxPiece) yield c.slice(at, at + maxPiece);
  }
}

function iteratorOf(chunks: Chunks): AsyncIterator<Uint8Array> | Iterator<Uint8Array> {
  return Symbol.asyncIterator in chunks
    ? chunks[Symbol.asyncIterator]()
    : (chunks as Iterable<Uint8Array>)[Symbol.iterator]();
}
