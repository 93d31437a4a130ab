/**
 * Restore planning (lib/restore/plan.ts) over hand-built listings: which generation a restore
 * picks, which snapshot and segments it reads for the latest state, a WAL index or a point in
 * time, and the typed errors for gaps and missing snapshots. Times are seconds after
 * 2024-01-01T00:00:00Z unless a case needs nanoseconds.
 */

import assert from "node:assert/strict";
import {
  chooseGeneration,
  generationBounds,
  type GenerationListing,
  planRestore,
  planToPosition,
  timeNs,
} from "./plan.ts";
import { LitestreamError, NotFoundError } from "../errors.ts";
import type { SnapshotInfo, WalSegmentInfo } from "../replica_client.ts";

const G1 = "1111111111111111";
const G2 = "2222222222222222";
const T0 = Date.UTC(2024, 0, 1);

/** The time `s` seconds after T0. */
const at = (s: number) => new Date(T0 + s * 1000);

/** A snapshot of index `index` taken at second `s`. */
function snap(generation: string, index: number, s: number): SnapshotInfo {
  return { generation, index, size: 100, createdAt: at(s) };
}

/** A WAL segment at (index, offset) uploaded at second `s`. */
function seg(generation: string, index: number, offset: number, s: number): WalSegmentInfo {
  return { generation, index, offset, size: 50, createdAt: at(s) };
}

/** Short names of a plan's segments: `index/offset`. */
const names = (segments: WalSegmentInfo[]) => segments.map((s) => `${s.index}/${s.offset}`);

/**
 * G1: snapshot 0 at 10 s; wal 0/0 at 20 s, 0/4152 at 30 s; snapshot 1 at 40 s; wal 1/0 at 50 s,
 * 1/4152 at 60 s, 2/0 at 70 s.
 */
function g1(): GenerationListing {
  return {
    generation: G1,
    snapshots: [snap(G1, 0, 10), snap(G1, 1, 40)],
    segments: [
      seg(G1, 0, 0, 20),
      seg(G1, 0, 4152, 30),
      seg(G1, 1, 0, 50),
      seg(G1, 1, 4152, 60),
      seg(G1, 2, 0, 70),
    ],
  };
}

Deno.test("timeNs: the backend's nanoseconds when it has them, else milliseconds scaled", () => {
  assert.equal(timeNs({ createdAt: at(1) }), BigInt(T0 + 1000) * 1_000_000n);
  const ns = BigInt(T0 + 1000) * 1_000_000n + 123_456n;
  assert.equal(timeNs({ createdAt: at(1), createdAtNs: ns }), ns);
});

Deno.test("generationBounds: earliest and latest object of either kind; none when empty", () => {
  assert.deepEqual(generationBounds(g1()), { createdAt: at(10), updatedAt: at(70) });
  // A segment older than every snapshot (retention removed the snapshot it followed) counts.
  const g = { generation: G2, snapshots: [snap(G2, 1, 40)], segments: [seg(G2, 0, 0, 5)] };
  assert.deepEqual(generationBounds(g), { createdAt: at(5), updatedAt: at(40) });
  assert.equal(generationBounds({ generation: G2, snapshots: [], segments: [] }), undefined);
});

Deno.test("chooseGeneration: the generation updated last among those with a snapshot", () => {
  const older = g1(); // updated at 70 s
  const newer = { generation: G2, snapshots: [snap(G2, 0, 80)], segments: [seg(G2, 0, 0, 90)] };
  const noSnapshot = {
    generation: "3333333333333333",
    snapshots: [],
    segments: [seg(G2, 0, 0, 99)],
  };
  assert.equal(chooseGeneration([older, newer, noSnapshot], {}), newer);
  assert.equal(chooseGeneration([newer, older], {}), newer, "order of candidates does not matter");
  assert.equal(chooseGeneration([older, newer], { generation: G1 }), older);
  assert.equal(chooseGeneration([older, newer], { generation: "4444444444444444" }), undefined);
  assert.equal(chooseGeneration([noSnapshot], {}), undefined);
  assert.equal(chooseGeneration([], {}), undefined);
});

Deno.test("chooseGeneration: on a tie in the last update (whole seconds), the one begun last", () => {
  // The old generation's last segment and the new one's snapshot and segment fall in second 70.
  const old = g1(); // begun at 10 s, updated at 70 s
  const live = { generation: G2, snapshots: [snap(G2, 0, 70)], segments: [seg(G2, 0, 0, 70)] };
  assert.equal(chooseGeneration([old, live], {}), live);
  assert.equal(chooseGeneration([live, old], {}), live, "order of candidates does not matter");
});

Deno.test("chooseGeneration with a timestamp: a snapshot must exist by then", () => {
  const older = g1(); // snapshots at 10 s and 40 s
  const newer = { generation: G2, snapshots: [snap(G2, 0, 80)], segments: [seg(G2, 0, 0, 90)] };
  assert.equal(chooseGeneration([older, newer], { timestamp: at(50) }), older);
  assert.equal(chooseGeneration([older, newer], { timestamp: at(80) }), newer, "at the instant");
  assert.equal(chooseGeneration([older, newer], { timestamp: at(5) }), undefined);
  // Unlike v0.3.13, a time after the last upload keeps a generation (its latest state).
  assert.equal(chooseGeneration([older], { timestamp: at(1000) }), older);
});

Deno.test("chooseGeneration compares nanoseconds when both sides have them", () => {
  const ns = BigInt(T0 + 10_000) * 1_000_000n + 500n;
  const g = { generation: G2, snapshots: [{ ...snap(G2, 0, 10), createdAtNs: ns }], segments: [] };
  // The same millisecond, 1 ns before the snapshot: not restorable yet.
  assert.equal(chooseGeneration([g], { timestamp: at(10), timestampNs: ns - 1n }), undefined);
  assert.equal(chooseGeneration([g], { timestamp: at(10), timestampNs: ns }), g);
});

Deno.test("planRestore, latest: the newest snapshot and every segment from its index on", () => {
  const plan = planRestore(g1(), {});
  assert.equal(plan.generation, G1);
  assert.equal(plan.snapshot.index, 1);
  assert.deepEqual(names(plan.segments), ["1/0", "1/4152", "2/0"]);
  assert.equal(plan.stopAt, undefined);
});

Deno.test("planRestore to an index: the last snapshot at or below it, segments up to it", () => {
  const upTo0 = planRestore(g1(), { index: 0 });
  assert.equal(upTo0.snapshot.index, 0);
  assert.deepEqual(names(upTo0.segments), ["0/0", "0/4152"]);
  const upTo1 = planRestore(g1(), { index: 1 });
  assert.equal(upTo1.snapshot.index, 1);
  assert.deepEqual(names(upTo1.segments), ["1/0", "1/4152"]);
  // An index above everything restores the latest state.
  assert.deepEqual(names(planRestore(g1(), { index: 9 }).segments), ["1/0", "1/4152", "2/0"]);
});

Deno.test("planRestore to a time: the snapshot and segments uploaded by then", () => {
  const cases: [number, number, string[]][] = [
    [10, 0, []], // the snapshot alone
    [25, 0, ["0/0"]],
    [30, 0, ["0/0", "0/4152"]], // an object at the instant counts
    [45, 1, []], // the later snapshot needs less WAL
    [65, 1, ["1/0", "1/4152"]],
    [1000, 1, ["1/0", "1/4152", "2/0"]], // after the last upload: the latest state
  ];
  for (const [s, snapshot, segments] of cases) {
    const plan = planRestore(g1(), { timestamp: at(s) });
    assert.equal(plan.snapshot.index, snapshot, `at ${s} s`);
    assert.deepEqual(names(plan.segments), segments, `at ${s} s`);
  }
});

Deno.test("planRestore: on equal snapshot times the higher index wins (S3 keeps whole seconds)", () => {
  const g = {
    generation: G1,
    snapshots: [snap(G1, 0, 10), snap(G1, 1, 10)],
    segments: [seg(G1, 0, 0, 10), seg(G1, 1, 0, 10)],
  };
  const plan = planRestore(g, { timestamp: at(10) });
  assert.equal(plan.snapshot.index, 1);
  assert.deepEqual(names(plan.segments), ["1/0"]);
});

Deno.test("planRestore: a missing WAL index is an error naming it, never a silent gap", () => {
  const g = g1();
  g.segments = g.segments.filter((s) => s.index !== 1); // snapshot 1, then only index 2
  assert.throws(
    () => planRestore(g, {}),
    (e: Error) => e instanceof NotFoundError && e.message === `missing WAL index: ${G1}/00000001`,
  );
  // The same gap is fine for a restore that stops before it.
  assert.equal(planRestore(g, { index: 0 }).snapshot.index, 0);
});

Deno.test("planRestore: no usable snapshot, or index and timestamp together, are errors", () => {
  const none = (target: Parameters<typeof planRestore>[1], g = g1()) =>
    assert.throws(
      () => planRestore(g, target),
      (e: Error) =>
        e instanceof NotFoundError && e.message === `no snapshots available in generation ${G1}`,
    );
  none({}, { ...g1(), snapshots: [] });
  none({ timestamp: at(5) });
  none({ index: 0 }, { ...g1(), snapshots: [snap(G1, 1, 40)] });
  assert.throws(
    () => planRestore(g1(), { index: 1, timestamp: at(50) }),
    (e: Error) =>
      e instanceof LitestreamError && e.message === "cannot specify index & timestamp to restore",
  );
});

Deno.test("planToPosition: segments strictly before the position, stopping there", () => {
  const plan = planToPosition(g1(), { generation: G1, index: 1, offset: 4152 }, g1().snapshots);
  assert.equal(plan.snapshot.index, 1);
  assert.deepEqual(names(plan.segments), ["1/0"]);
  assert.deepEqual(plan.stopAt, { generation: G1, index: 1, offset: 4152 });
  // Offset 0 of an index: everything before it, nothing of it.
  const start = planToPosition(g1(), { generation: G1, index: 2, offset: 0 }, g1().snapshots);
  assert.deepEqual(names(start.segments), ["1/0", "1/4152"]);
});

Deno.test("planToPosition uses only the snapshots it is given that predate the position", () => {
  const pos = { generation: G1, index: 1, offset: 4152 };
  // Snapshot 1 not known to predate the position: restore from 0 and replay index 0 too.
  const plan = planToPosition(g1(), pos, [snap(G1, 0, 10)]);
  assert.equal(plan.snapshot.index, 0);
  assert.deepEqual(names(plan.segments), ["0/0", "0/4152", "1/0"]);
  // Snapshots of another generation never count.
  assert.throws(() => planToPosition(g1(), pos, [snap(G2, 0, 10)]), NotFoundError);
});

Deno.test("planToPosition: an offset inside an index with no WAL before it is an error", () => {
  const g = g1();
  g.segments = g.segments.filter((s) => s.index !== 2);
  assert.throws(
    () => planToPosition(g, { generation: G1, index: 2, offset: 4152 }, g.snapshots),
    (e: Error) =>
      e instanceof NotFoundError &&
      e.message === `replica holds no wal for ${G1}/00000002 before offset 4152`,
  );
});
