/**
 * Parallel ranged reads (replicas/ranged_read.ts): an object read as parts comes out whole and
 * in order whatever the part size, parallelism and completion order; no more than
 * `parallelism` parts are read at once, no part is read before the consumer makes room, and
 * part buffers are reused.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { LitestreamError } from "../lib/errors.ts";
import { partStarts, rangedStream } from "./ranged_read.ts";
import { bytesOf, rejectsWith } from "./test_streams.ts";

const object = (size: number) => Uint8Array.from({ length: size }, (_, i) => (i * 7 + 3) & 255);

Deno.test("partStarts: every partSize bytes from `from`", () => {
  assert.deepEqual(partStarts(10, 4), [0, 4, 8]);
  assert.deepEqual(partStarts(8, 4), [0, 4]);
  assert.deepEqual(partStarts(10, 4, 3), [3, 7]);
  assert.deepEqual(partStarts(0, 4), []);
  assert.throws(() => partStarts(10, 0), RangeError);
});

Deno.test("rangedStream: whole object in order, whatever the timing", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 300 }),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 1, max: 12 }),
      fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 16 }),
      async (size, partSize, parallelism, delays) => {
        const data = object(size);
        let inFlight = 0;
        let most = 0;
        let reads = 0;
        const buffers = new Set<ArrayBufferLike>();
        const stream = rangedStream(size, partSize, parallelism, async (start, end, into) => {
          assert.deepEqual(into.length, end - start);
          buffers.add(into.buffer);
          inFlight++;
          most = Math.max(most, inFlight);
          // Let later parts finish first now and then.
          for (let i = delays[reads++ % delays.length]; i > 0; i--) await Promise.resolve();
          inFlight--;
          into.set(data.subarray(start, end));
          return into;
        });
        assert.deepEqual(await bytesOf(stream), data);
        assert.ok(most <= parallelism, `${most} parts in flight, parallelism ${parallelism}`);
        assert.deepEqual(reads, Math.ceil(size / partSize));
        assert.ok(buffers.size <= parallelism + 1, `${buffers.size} part buffers`);
      },
    ),
  );
});

Deno.test("rangedStream: parts are read only as the consumer makes room", async () => {
  const started: number[] = [];
  const stream = rangedStream(100, 10, 3, (start, _end, into) => {
    started.push(start);
    return Promise.resolve(into);
  });
  const reader = stream.getReader();
  await reader.read();
  // The first part delivered, then at most `parallelism` parts in flight or waiting.
  assert.ok(started.length <= 4, `started ${started}`);
  await reader.cancel();
});

Deno.test("rangedStream: cancelling aborts the parts in flight", async () => {
  const signals: AbortSignal[] = [];
  const stream = rangedStream(100, 10, 3, (start, _end, into, signal) => {
    signals.push(signal);
    return start === 0 ? Promise.resolve(into) : new Promise<never>(() => {});
  });
  const reader = stream.getReader();
  await reader.read();
  assert.ok(signals.length > 1 && signals.every((s) => !s.aborted));
  await reader.cancel();
  assert.ok(signals.every((s) => s.aborted));
});

Deno.test("rangedStream: a failed part errors the stream when its turn comes", async () => {
  const stream = rangedStream(
    40,
    10,
    4,
    (start, _end, into) =>
      start === 20 ? Promise.reject(new LitestreamError("part 20 broke")) : Promise.resolve(into),
  );
  const reader = stream.getReader();
  assert.deepEqual((await reader.read()).value?.length, 10);
  assert.deepEqual((await reader.read()).value?.length, 10);
  await rejectsWith(() => reader.read(), LitestreamError, "part 20 broke");
});

Deno.test("rangedStream: a BYOB reader gets the bytes in its own buffer, in any sizes", async () => {
  const data = object(1000);
  const stream = rangedStream(data.length, 64, 4, (start, end, into) => {
    into.set(data.subarray(start, end));
    return Promise.resolve(into);
  });
  const reader = stream.getReader({ mode: "byob" });
  const out: number[] = [];
  let buf = new Uint8Array(100);
  for (let want = 1;; want = (want * 7) % 100 + 1) {
    const { value, done } = await reader.read(new Uint8Array(buf.buffer, 0, want));
    if (done) break;
    out.push(...value);
    buf = new Uint8Array(value.buffer);
  }
  assert.deepEqual(Uint8Array.from(out), data);
});
