/**
 * Parallel ranged reads (replicas/ranged_read.ts): an object read as parts comes out whole and
 * in order whatever the part size, parallelism and completion order; no more than
 * `parallelism` parts are read at once, and no part is read before the consumer makes room.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { LitestreamError } from "../lib/errors.ts";
import { partStarts, rangedStream, readExactly } from "./ranged_read.ts";
import { bytesOf, rejectsWith, streamOf } from "./test_streams.ts";

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
        const stream = rangedStream(size, partSize, parallelism, async (start, end) => {
          inFlight++;
          most = Math.max(most, inFlight);
          // Let later parts finish first now and then.
          for (let i = delays[reads++ % delays.length]; i > 0; i--) await Promise.resolve();
          inFlight--;
          return data.slice(start, end);
        });
        assert.deepEqual(await bytesOf(stream), data);
        assert.ok(most <= parallelism, `${most} parts in flight, parallelism ${parallelism}`);
        assert.deepEqual(reads, Math.ceil(size / partSize));
      },
    ),
  );
});

Deno.test("rangedStream: parts are read only as the consumer makes room", async () => {
  const started: number[] = [];
  const stream = rangedStream(100, 10, 3, (start, end) => {
    started.push(start);
    return Promise.resolve(object(end - start));
  });
  const reader = stream.getReader();
  await reader.read();
  // The first part delivered, then at most `parallelism` parts in flight or waiting.
  assert.ok(started.length <= 4, `started ${started}`);
  await reader.cancel();
});

Deno.test("rangedStream: a failed part errors the stream when its turn comes", async () => {
  const stream = rangedStream(
    40,
    10,
    4,
    (start, end) =>
      start === 20
        ? Promise.reject(new LitestreamError("part 20 broke"))
        : Promise.resolve(object(end - start)),
  );
  const reader = stream.getReader();
  assert.deepEqual((await reader.read()).value?.length, 10);
  assert.deepEqual((await reader.read()).value?.length, 10);
  await rejectsWith(() => reader.read(), LitestreamError, "part 20 broke");
});

Deno.test("readExactly: exactly the bytes asked for, or an error naming the part", async () => {
  assert.deepEqual(
    await readExactly(streamOf("ab", "cd"), 4, "p"),
    new TextEncoder().encode("abcd"),
  );
  await rejectsWith(
    () => readExactly(streamOf("abc"), 4, "obj bytes 0-3"),
    LitestreamError,
    "obj bytes 0-3: 3 of the 4",
  );
  await rejectsWith(
    () => readExactly(streamOf("abcde"), 4, "obj"),
    LitestreamError,
    "more than the 4",
  );
});
