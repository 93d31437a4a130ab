/**
 * The checkpoint policy (spec §4.9) as a pure function, and the process-wide sentinel that
 * runs every idle database's probe from one timer.
 *
 * @module
 */

import assert from "node:assert/strict";
import { waitFor } from "../../tests/support/poll.ts";
import {
  checkpointModeFor,
  CheckpointSentinel,
  CommitBurst,
  TIME_CHECKPOINT_MAX_HOLD_MS,
} from "./checkpoint.ts";

const t = {
  minCheckpointPageCount: 1000,
  maxCheckpointPageCount: 10000,
  truncatePageCount: 500000,
};
const frame = 4096 + 24;
const pages = (n: number) => 32 + n * frame;

Deno.test("checkpointModeFor follows v0.3.13's thresholds, most drastic first", () => {
  const mode = (shadow: number, wal: number, due = false) =>
    checkpointModeFor(t, { shadow: pages(shadow), wal: pages(wal), frame }, due);
  assert.equal(mode(10, 10), undefined);
  assert.equal(mode(10, 10, true), "PASSIVE", "time-based checkpoint");
  assert.equal(mode(1000, 1000), "PASSIVE");
  assert.equal(mode(10000, 10000), "RESTART");
  assert.equal(mode(10, 500000), "TRUNCATE", "the real WAL's size decides TRUNCATE");
  const noMax = { ...t, maxCheckpointPageCount: 0, truncatePageCount: 0 };
  const sizes = { shadow: pages(600000), wal: pages(600000), frame };
  assert.equal(checkpointModeFor(noMax, sizes, false), "PASSIVE", "0 disables a rule");
});

Deno.test("CheckpointSentinel: one timer for all, aborts only the probe that fires, stops when empty", async () => {
  const s = new CheckpointSentinel();
  let fire = false;
  let calls = 0;
  const quiet = s.watch(() => (calls++, false), 5);
  const loud = s.watch(() => fire, 5);
  assert.equal(s.size, 2);
  await waitFor("the probes to run", () => calls >= 2);
  assert.equal(loud.signal.aborted, false);
  fire = true;
  await waitFor("the firing probe's signal", () => loud.signal.aborted);
  assert.equal(quiet.signal.aborted, false, "the others keep waiting");
  loud[Symbol.dispose]();
  quiet[Symbol.dispose]();
  assert.equal(s.size, 0);
  const after = calls;
  // No timer is left behind: Deno's sanitizer fails this test if one were.
  assert.equal(calls, after);
});

Deno.test("CheckpointSentinel: each probe at its own period; a fast one does not speed up a slow one", async () => {
  const s = new CheckpointSentinel();
  let slow = 0;
  let fast = 0;
  using _slow = s.watch(() => (slow++, false), 10_000);
  using _fast = s.watch(() => (fast++, false), 5);
  await waitFor("the fast probe to run ten times", () => fast >= 10);
  assert.equal(slow, 0, "the slow probe is not due yet");
});

Deno.test("CheckpointSentinel: probes registered at scattered times come to share timer firings", async () => {
  const s = new CheckpointSentinel();
  const PERIOD = 40;
  const calls: number[] = [];
  const watches: Disposable[] = [];
  try {
    // Fifty databases starting to wait one after another across a whole period.
    for (let i = 0; i < 50; i++) {
      watches.push(s.watch(() => (calls.push(performance.now()), false), PERIOD));
      await new Promise((r) => setTimeout(r, 1));
    }
    calls.length = 0;
    await waitFor("ten periods of probes", () => calls.length >= 500);
    // Probes of one firing run back to back; a gap between two calls is another firing.
    const firings = 1 + calls.slice(1).filter((t, i) => t - calls[i] > 2).length;
    const periods = (calls.at(-1)! - calls[0]) / PERIOD;
    assert.ok(firings <= 5 * (periods + 1), `${firings} firings in ${periods.toFixed(1)} periods`);
  } finally {
    for (const w of watches) w[Symbol.dispose]();
  }
});

Deno.test("CommitBurst: a due time-based checkpoint waits until the process is quiet for a monitor interval, not through a steady load", () => {
  const burst = new CommitBurst();
  assert.equal(burst.holdMs(0, 1000), 0, "no commit yet: nothing to wait for");
  burst.noted(5_000, 1000);
  assert.equal(burst.holdMs(5_000, 1000), 1000);
  burst.noted(5_600, 1000); // the burst goes on
  assert.equal(burst.holdMs(6_000, 1000), 600);
  assert.equal(burst.holdMs(6_600, 1000), 0, "quiet for an interval");
  // Commits less than an interval apart for the longest hold: a steady load holds nothing.
  for (let t = 10_000; t <= 10_000 + TIME_CHECKPOINT_MAX_HOLD_MS; t += 500) burst.noted(t, 1000);
  assert.equal(burst.holdMs(10_000 + TIME_CHECKPOINT_MAX_HOLD_MS, 1000), 0);
  // A pause longer than the interval begins a new burst, held again.
  burst.noted(30_000, 1000);
  assert.equal(burst.holdMs(30_100, 1000), 900);
});
