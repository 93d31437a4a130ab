import assert from "node:assert/strict";
import { SyncPace } from "./sync_pace.ts";

const SECOND = 1000;

Deno.test("SyncPace: while polling, syncs are one interval apart", () => {
  const pace = new SyncPace(SECOND);
  pace.synced(0, true);
  assert.equal(pace.delay(undefined, 100), 900);
  pace.synced(1000, false);
  assert.equal(pace.delay(undefined, 1020), 980);
  assert.equal(pace.delay(undefined, 2500), 0, "a late sync does not wait again");
});

Deno.test("SyncPace: a commit after a quiet tick goes at once when the last busy sync is an interval old", () => {
  const pace = new SyncPace(SECOND);
  pace.synced(0, true); // copied a commit
  pace.synced(1000, false); // the quiet tick; the monitor now waits on events
  assert.equal(pace.delay("event", 1300), 0, "not held to the tick at 2000");
  pace.synced(1300, true);
  // The next one is an interval after that busy sync, however it is announced.
  assert.equal(pace.delay("event", 1500), 800);
  assert.equal(pace.delay(undefined, 1500), 800);
});

Deno.test("SyncPace: a change found as the wait began counts as an event", () => {
  const pace = new SyncPace(SECOND);
  pace.synced(0, true);
  pace.synced(1000, false);
  assert.equal(pace.delay("changed", 1001), 0);
});

Deno.test("SyncPace: never more than one busy sync per interval, events or not", () => {
  const pace = new SyncPace(SECOND);
  pace.synced(0, true);
  pace.synced(400, false); // e.g. a sync the checkpoint probe asked for
  assert.equal(pace.delay("event", 500), 500);
});

Deno.test("SyncPace: once an event brought nothing new, the next waits out the interval from that sync", () => {
  const pace = new SyncPace(SECOND);
  pace.synced(0, true);
  pace.synced(1000, false);
  assert.equal(pace.delay("event", 5000), 0);
  pace.synced(5000, false); // an application's connection closed: nothing to copy
  assert.equal(pace.delay("event", 5010), 990, "events alone never outpace the ticks");
  pace.synced(6000, false);
  assert.equal(pace.delay("event", 6010), 990, "still nothing new: still the tick's pace");
  pace.synced(7000, true); // a commit, at the tick's pace
  pace.synced(8000, false); // quiet tick, not woken by an event
  assert.equal(
    pace.delay("event", 9500),
    0,
    "a real commit after a quiet spell goes at once again",
  );
});

Deno.test("SyncPace: a timed-out or missed wait keeps the tick's pace", () => {
  const pace = new SyncPace(SECOND);
  pace.synced(0, true);
  pace.synced(1000, false);
  assert.equal(pace.delay("timeout", 1200), 800);
  assert.equal(pace.delay("missed", 1200), 800);
});
