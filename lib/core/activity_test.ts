/** `SyncActivity` (lib/core/activity.ts): the lag clock, successes and failures. */

import assert from "node:assert/strict";
import { SyncActivity } from "./activity.ts";

Deno.test("activity: the first change starts the lag clock; a caught-up sync stops it", () => {
  const a = new SyncActivity();
  a.changed(100);
  a.changed(200); // still the oldest change not passed on
  assert.equal(a.behindSince, 100);
  a.succeeded(false, 150, 160); // shipped what was there at 150; newer changes wait
  assert.equal(a.behindSince, 150);
  assert.equal(a.lastSyncAt, 160);
  a.succeeded(true, 170, 180);
  assert.equal(a.behindSince, undefined);
});

Deno.test("activity: failures keep the first failure time and the last error", () => {
  const a = new SyncActivity();
  a.failed(new Error("one"), 10);
  a.failed(new Error("two"), 20);
  assert.equal(a.failingSince, 10);
  assert.deepEqual(a.lastError, { message: "two", at: 20 });
  a.succeeded(true, 30, 40);
  assert.equal(a.failingSince, undefined);
  assert.deepEqual(a.lastError, { message: "two", at: 20 }, "kept for status");
});
