import assert from "node:assert/strict";
import { BufferPool } from "./buffer_pool.ts";

Deno.test("BufferPool: reuses the smallest buffer that fits, within its limits", () => {
  const pool = new BufferPool(2, 3 << 20);
  const a = pool.take(100);
  assert.equal(a.length, 256 << 10, "sized up to the grain");
  const b = pool.take(1 << 20);
  const c = pool.take(2 << 20);
  pool.give(a.buffer);
  pool.give(b.buffer);
  pool.give(b.buffer); // twice: kept once
  assert.equal(pool.bytes, (256 << 10) + (1 << 20));
  pool.give(c.buffer); // the largest two within 3 MB: c and b (a is dropped)
  assert.equal(pool.bytes, (2 << 20) + (1 << 20));
  assert.equal(pool.take(500 << 10).buffer, b.buffer, "the smallest that fits");
  assert.equal(pool.take(4 << 20).length, 4 << 20, "none fits: a new one");
  pool.clear();
  assert.equal(pool.bytes, 0);
});

Deno.test("BufferPool: a transferred (detached) buffer is not kept", () => {
  const pool = new BufferPool(4, 8 << 20);
  const a = pool.take(10);
  const moved = a.buffer.transfer();
  pool.give(a.buffer);
  assert.equal(pool.bytes, 0);
  pool.give(moved);
  assert.equal(pool.bytes, 256 << 10);
});
