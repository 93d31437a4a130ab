/**
 * `releasingStream` (lib/os/fs.ts): read through `chunksOf`, each chunk's buffer is freed once
 * the next is asked for; read as an ordinary stream, every chunk stays intact; cancelled before
 * it was read, it cancels its source. `copied`: chunks copied whole or in bounded pieces.
 */

import assert from "node:assert/strict";
import { chunksOf, copied, releasingStream } from "./fs.ts";

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

Deno.test("copied: copies the chunks whole, or in pieces of at most maxPiece bytes", async () => {
  const lent = new Uint8Array(10).map((_, i) => i);
  const whole = await Array.fromAsync(copied([lent, lent.subarray(0, 3)]));
  assert.deepEqual(whole, [lent, lent.subarray(0, 3)]);
  assert.notEqual(whole[0].buffer, lent.buffer, "a copy, not the lent buffer");
  const pieces = await Array.fromAsync(copied([lent, lent.subarray(0, 3)], 4));
  assert.deepEqual(pieces.map((p) => [...p]), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2]]);
  assert.ok(pieces.every((p) => p.buffer !== lent.buffer));
});
