/**
 * `releasingStream` (lib/os/fs.ts): read through `chunksOf`, each chunk's buffer is freed once
 * the next is asked for; read as an ordinary stream, every chunk stays intact; cancelled before
 * it was read, it cancels its source. `readAheadStream`: a file's exact bytes either way, and
 * the file closed however reading ends.
 */

import assert from "node:assert/strict";
import { chunksOf, readAheadStream, releasingStream } from "./fs.ts";

/** A stream of `n` fresh 4-byte chunks, each filled with its index. */
function fresh(n: number, onCancel: () => void = () => {}): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(ctrl) {
      if (i === n) return ctrl.close();
      ctrl.enqueue(new Uint8Array(4).fill(i++));
    },
    cancel: onCancel,
  });
}

Deno.test("releasingStream: through chunksOf, a chunk is freed when the next is asked for", async () => {
  const seen: Uint8Array[] = [];
  for await (const chunk of chunksOf(releasingStream(fresh(3)))) {
    assert.deepEqual([...chunk], Array(4).fill(seen.length));
    seen.push(chunk);
  }
  assert.deepEqual(seen.map((c) => c.buffer.byteLength), [0, 0, 4]);
});

Deno.test("releasingStream: a view of a larger buffer is never freed", async () => {
  const whole = new Uint8Array(8).fill(7);
  const source = new ReadableStream<Uint8Array>({
    start(ctrl) {
      ctrl.enqueue(whole.subarray(0, 4));
      ctrl.enqueue(whole.subarray(4));
      ctrl.close();
    },
  });
  for await (const _ of chunksOf(releasingStream(source)));
  assert.deepEqual([...whole], Array(8).fill(7));
});

Deno.test("releasingStream: read as an ordinary stream, chunks are kept", async () => {
  const bytes = await new Response(releasingStream(fresh(3))).bytes();
  assert.deepEqual([...bytes], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
});

Deno.test("releasingStream: cancelled before it was read, it cancels its source", async () => {
  let cancelled = false;
  await releasingStream(fresh(3, () => void (cancelled = true))).cancel();
  assert.equal(cancelled, true);
});

Deno.test("releasingStream: left early through chunksOf, it cancels its source", async () => {
  let cancelled = false;
  for await (const _ of chunksOf(releasingStream(fresh(3, () => void (cancelled = true))))) break;
  assert.equal(cancelled, true);
});

/** A temporary file of `n` bytes that differ from their neighbours, open for reading. */
async function numbered(n: number): Promise<{ bytes: Uint8Array; file: Deno.FsFile }> {
  const bytes = new Uint8Array(n).map((_, i) => (i * 7 + (i >> 8)) & 0xff);
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, bytes);
  const file = await Deno.open(path);
  await Deno.remove(path);
  return { bytes, file };
}

/** True once `file` is closed (its handle no longer usable). */
function isClosed(file: Deno.FsFile): boolean {
  try {
    file.statSync();
    return false;
  } catch (err) {
    return err instanceof Deno.errors.BadResource;
  }
}

Deno.test("readAheadStream: the file's exact bytes, lent or as kept chunks; closed at the end", async () => {
  for (const lend of [true, false]) {
    const { bytes, file } = await numbered(10_000 + 3);
    const stream = readAheadStream(file, 1000);
    const got: number[] = [];
    const kept: Uint8Array[] = [];
    for await (const chunk of lend ? chunksOf(stream) : stream) {
      assert.ok(chunk.length <= 1000);
      got.push(...chunk);
      kept.push(chunk);
    }
    assert.deepEqual(got, [...bytes]);
    // Kept chunks are copies: still the file's bytes after the stream ended.
    if (!lend) assert.deepEqual(kept.flatMap((c) => [...c]), [...bytes]);
    assert.ok(isClosed(file), "file closed at the end");
  }
});

Deno.test("readAheadStream: left early or cancelled unread, the file is closed", async () => {
  const early = await numbered(5000);
  for await (const _ of chunksOf(readAheadStream(early.file, 1000))) break;
  assert.ok(isClosed(early.file));
  const unread = await numbered(5000);
  await readAheadStream(unread.file, 1000).cancel();
  assert.ok(isClosed(unread.file));
});
