/**
 * Pure restore planning over replica listings: which generation, which
 * snapshot and which WAL segments a restore uses (spec §6.1–§6.4), with the
 * deliberate improvements over v0.3.13 (a timestamp after the last upload
 * restores the latest state; missing segments are errors, not silent gaps).
 *
 * @module
 */

import { LitestreamError, NotFoundError } from "../errors.ts";
import { hex8, MAX_INDEX, type Pos } from "../names.ts";
import type { SnapshotInfo, WalSegmentInfo } from "../replica_client.ts";

/** What the user asked to restore to. */
export interface RestoreTarget {
  /** Restrict to this generation. */
  generation?: string;
  /** Restore to the state as of this time (object timestamps are compared). */
  timestamp?: Date;
  /** The same time in nanoseconds when known more precisely than `timestamp` (v0.3.13 compares nanoseconds). */
  timestampNs?: bigint;
  /** Restore up to and including this WAL index. */
  index?: number;
}

/** A generation's listing, with its time bounds over all objects. */
export interface GenerationListing {
  generation: string;
  snapshots: SnapshotInfo[];
  segments: WalSegmentInfo[];
}

/** The objects one restore reads, in the order it applies them. */
export interface RestorePlan {
  generation: string;
  snapshot: SnapshotInfo;
  /** Segments to apply in (index, offset) order; chain checks happen while applying. */
  segments: WalSegmentInfo[];
  /** Stop replaying at this position (a commit boundary) instead of at the end of the last segment. */
  stopAt?: Pos;
}

/** An object's time in nanoseconds (from milliseconds when the backend has no more). */
export function timeNs(o: { createdAt: Date; createdAtNs?: bigint }): bigint {
  return o.createdAtNs ?? BigInt(o.createdAt.getTime()) * 1_000_000n;
}

function targetNs(target: RestoreTarget): bigint | undefined {
  if (!target.timestamp) return undefined;
  return target.timestampNs ?? BigInt(target.timestamp.getTime()) * 1_000_000n;
}

/** Earliest and latest object times of a generation in nanoseconds; undefined without objects. */
function spanNs(g: GenerationListing): { begun: bigint; updated: bigint } | undefined {
  let span: { begun: bigint; updated: bigint } | undefined;
  for (const o of [...g.snapshots, ...g.segments]) {
    const ns = timeNs(o);
    if (!span) span = { begun: ns, updated: ns };
    else if (ns < span.begun) span.begun = ns;
    else if (ns > span.updated) span.updated = ns;
  }
  return span;
}

/** Earliest and latest object timestamps of a generation, or undefined when it holds no objects. */
export function generationBounds(
  g: GenerationListing,
): { createdAt: Date; updatedAt: Date } | undefined {
  const span = spanNs(g);
  const date = (ns: bigint) => new Date(Number(ns / 1_000_000n));
  return span && { createdAt: date(span.begun), updatedAt: date(span.updated) };
}

/**
 * Picks the generation to restore among candidates (possibly from several
 * replicas): the one updated last among those with a snapshot taken by the
 * target time. Unlike v0.3.13, a time after a generation's last upload keeps it
 * eligible (it restores that generation's latest state), and a tie in the last
 * update goes to the generation begun last, not to the first listed: S3 and
 * s3rver keep whole seconds, so a generation begun (after a restart, or by
 * `replicate -force` on another copy) in the second of the old one's last upload
 * ties with it, and the new one is the live one.
 */
export function chooseGeneration<T extends GenerationListing>(
  candidates: T[],
  target: RestoreTarget,
): T | undefined {
  let best: T | undefined;
  let bestUpdated = -1n;
  let bestBegun = -1n;
  const t = targetNs(target);
  for (const g of candidates) {
    if (target.generation && g.generation !== target.generation) continue;
    if (g.snapshots.length === 0) continue;
    // Restorable at the target time only from a snapshot taken by then.
    if (t !== undefined && !g.snapshots.some((s) => timeNs(s) <= t)) continue;
    // A generation with a snapshot has objects, hence a span.
    const { begun, updated } = spanNs(g)!;
    if (updated > bestUpdated || updated === bestUpdated && begun > bestBegun) {
      best = g;
      bestUpdated = updated;
      bestBegun = begun;
    }
  }
  return best;
}

/** Builds the restore plan for one generation; throws a typed error naming what is missing. */
export function planRestore(g: GenerationListing, target: RestoreTarget): RestorePlan {
  if (target.index !== undefined && target.timestamp) {
    throw new LitestreamError("cannot specify index & timestamp to restore");
  }
  const snapshot = chooseSnapshot(g.snapshots, target);
  if (!snapshot) throw new NotFoundError(`no snapshots available in generation ${g.generation}`);

  const maxIndex = target.index ?? MAX_INDEX;
  const t = targetNs(target);
  const segments: WalSegmentInfo[] = [];
  for (const seg of g.segments) {
    if (t !== undefined && timeNs(seg) > t) break;
    if (seg.index > maxIndex) break;
    if (seg.index >= snapshot.index) segments.push(seg);
  }
  // Every index from the snapshot's to the last one used must be present.
  const present = new Set(segments.map((s) => s.index));
  const last = segments.at(-1)?.index ?? snapshot.index - 1;
  for (let i = snapshot.index; i <= last; i++) {
    if (!present.has(i)) throw new NotFoundError(`missing WAL index: ${g.generation}/${hex8(i)}`);
  }
  return { generation: g.generation, snapshot, segments };
}

function chooseSnapshot(
  snapshots: SnapshotInfo[],
  target: RestoreTarget,
): SnapshotInfo | undefined {
  if (target.index !== undefined) return snapshots.filter((s) => s.index <= target.index!).at(-1);
  let best: SnapshotInfo | undefined;
  const t = targetNs(target);
  for (const s of snapshots) {
    if (t !== undefined && timeNs(s) > t) continue;
    // On equal times (S3 keeps whole seconds) the higher index needs less WAL.
    if (!best || timeNs(s) >= timeNs(best)) best = s;
  }
  return best;
}

/**
 * Plans a restore to exactly `pos` (a commit boundary), for validation.
 * Only `snapshots` known to predate the position may be used: a snapshot
 * taken later can hold pages from beyond it.
 */
export function planToPosition(
  g: GenerationListing,
  pos: Pos,
  snapshots: SnapshotInfo[],
): RestorePlan {
  const usable = snapshots.filter((s) => s.generation === pos.generation && s.index <= pos.index);
  const plan = planRestore({ ...g, snapshots: usable }, { index: pos.index });
  const segments = plan.segments.filter((s) => s.index < pos.index || s.offset < pos.offset);
  const last = segments.at(-1);
  if (pos.offset > 0 && (!last || last.index !== pos.index)) {
    throw new NotFoundError(
      `replica holds no wal for ${g.generation}/${hex8(pos.index)} before offset ${pos.offset}`,
    );
  }
  return { ...plan, segments, stopAt: pos };
}
