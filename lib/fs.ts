/**
 * File-writing helpers shared by the replica, restore and shadow WAL code.
 * They write through `FsFile.write` directly: `FsFile.writable` with
 * `preventClose` holds back a trailing write under 64 KiB until the stream
 * closes, which silently truncated files.
 *
 * @module
 */

/** Writes all of `data` at the file's current position. */
export async function writeAll(
  file: { write(p: Uint8Array): Promise<number> },
  data: Uint8Array,
): Promise<void> {
  for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
}

/** Copies a stream into an open file at its current position; returns the bytes written. */
export async function writeStream(
  file: Deno.FsFile,
  stream: ReadableStream<Uint8Array>,
): Promise<number> {
  let n = 0;
  for await (const chunk of stream) {
    await writeAll(file, chunk);
    n += chunk.length;
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

/** Removes a file; a missing file is not an error. */
export async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path);
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

/** Streams a whole file from offset 0 with sync reads only (see `readAtSync`); never closes the file. */
export function syncReadStream(
  file: Deno.FsFile,
  chunkSize = 1024 * 1024,
): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const buf = new Uint8Array(chunkSize);
      const n = readAtSync(file, offset, buf);
      offset += n;
      if (n > 0) controller.enqueue(n === buf.length ? buf : buf.slice(0, n));
      if (n < buf.length) controller.close();
    },
  });
}
