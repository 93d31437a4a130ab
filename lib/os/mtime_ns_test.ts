/**
 * `statNs` (lib/os/mtime_ns.ts): one synchronous stat gives what `Deno.stat` gives (size, the
 * mtime's milliseconds) plus the nanoseconds, and undefined for a missing file.
 */

import assert from "node:assert/strict";
import { statNs } from "./mtime_ns.ts";

Deno.test("statNs agrees with Deno.stat and keeps the nanoseconds", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, new Uint8Array(12_345));
    // A time with nanoseconds that milliseconds cannot hold (Deno.utime rounds to them).
    const touch = await new Deno.Command("touch", { args: ["-d", "@1700000000.123456789", path] })
      .output();
    assert.ok(touch.success);
    const ns = statNs(path);
    if (!ns) return console.warn("no FFI stat here: skipped"); // Without --allow-ffi, or not Linux.
    const st = await Deno.stat(path);
    assert.deepEqual(ns.size, st.size);
    assert.deepEqual(Number(ns.mtimeNs / 1_000_000n), st.mtime!.getTime());
    assert.deepEqual(ns.mtimeNs, 1_700_000_000_123_456_789n);
    assert.deepEqual(statNs(`${path}.missing`), undefined);
  } finally {
    await Deno.remove(path);
  }
});
