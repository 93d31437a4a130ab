/**
 * ByteReader (lib/os/byte_reader.ts): exact-size records out of chunks of any size, from a web
 * stream or an iterator, with a clean end told apart from a record cut short.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { ByteReader } from "./byte_reader.ts";

/** A stream that delivers `chunks` one by one. */
function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(chunks);
}

/** Splits `bytes` at the given cut points (any order, duplicates allowed). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const to of [...at, bytes.length]) {
    out.push(bytes.slice(from, to)); // empty chunks included: streams may deliver them
    from = to;
  }
  return out;
}

Deno.test("records come out whole whatever the chunking; the tail is reported as partial", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 300 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      fc.integer({ min: 1, max: 40 }),
      async (bytes, cuts, size) => {
        const reader = new ByteReader(streamOf(split(bytes, cuts)));
        const whole = Math.floor(bytes.length / size);
        for (let i = 0; i < whole; i++) {
          const r = await reader.read(size);
          assert.ok(r instanceof Uint8Array);
          assert.deepEqual([...r], [...bytes.subarray(i * size, (i + 1) * size)]);
        }
        const tail = bytes.length - whole * size;
        assert.deepEqual(await reader.read(size), tail === 0 ? undefined : { partial: tail });
      },
    ),
  );
});

Deno.test("a clean end stays an end; records of different sizes share chunks", async () => {
  const reader = new ByteReader(streamOf([Uint8Array.of(1, 2, 3), Uint8Array.of(4, 5)]));
  assert.deepEqual(await reader.read(1), Uint8Array.of(1));
  assert.deepEqual(await reader.read(3), Uint8Array.of(2, 3, 4));
  assert.deepEqual(await reader.read(1), Uint8Array.of(5));
  assert.equal(await reader.read(4), undefined);
  assert.equal(await reader.read(4), undefined);
});

Deno.test("once a chunk is loaded, records inside it are views of it, not copies", async () => {
  const chunk = Uint8Array.of(1, 2, 3, 4);
  const reader = new ByteReader([chunk][Symbol.iterator]());
  await reader.read(1); // loads the chunk
  const r = await reader.read(2);
  assert.ok(r instanceof Uint8Array);
  assert.equal(r.buffer, chunk.buffer);
  assert.deepEqual(r, Uint8Array.of(2, 3));
});

Deno.test("sync and async iterators are sources too", async () => {
  const sync = new ByteReader([Uint8Array.of(1), Uint8Array.of(2, 3)][Symbol.iterator]());
  assert.deepEqual(await sync.read(3), Uint8Array.of(1, 2, 3));
  assert.equal(await sync.read(1), undefined);
  async function* chunks() {
    yield Uint8Array.of(7, 8);
    yield Uint8Array.of(9);
  }
  const async = new ByteReader(chunks());
  assert.deepEqual(await async.read(2), Uint8Array.of(7, 8));
  assert.deepEqual(await async.read(2), { partial: 1 });
});

Deno.test("cancel releases the source: the stream is cancelled, the generator finishes", async () => {
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull: (c) => c.enqueue(Uint8Array.of(0)),
    cancel: () => {
      cancelled = true;
    },
  });
  const fromStream = new ByteReader(stream);
  await fromStream.read(3);
  await fromStream.cancel();
  assert.ok(cancelled);

  let finished = false;
  async function* endless() {
    try {
      while (true) yield Uint8Array.of(0);
    } finally {
      finished = true;
    }
  }
  const fromGenerator = new ByteReader(endless());
  await fromGenerator.read(3);
  await fromGenerator.cancel();
  assert.ok(finished);
});
