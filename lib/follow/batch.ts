/**
 * Which WAL segments a follower applies next (pure): those from its position on, as long as
 * they continue it, up to a byte budget. A listing that cannot continue the position (retention
 * removed WAL, a segment is missing) is a gap, returned as the reason to recover.
 *
 * @module
 */

import { comparePos, hex8 } from "../names.ts";
import type { WalSegmentInfo } from "../replica_client.ts";
import type { FollowPosition } from "./position.ts";

/** The next batch, and whether more segments wait after it. */
export interface NextBatch {
  batch: WalSegmentInfo[];
  more: boolean;
}

const at = (index: number, offset: number) => `${hex8(index)}/${hex8(offset)}`;

/**
 * Segments of `listing` (sorted by index and offset) that continue `pos`, in order, whole,
 * while their stored sizes stay within `maxBytes` (the first is always taken); or a string
 * saying why the listing cannot continue the position.
 */
export function nextSegments(
  listing: readonly WalSegmentInfo[],
  pos: FollowPosition,
  maxBytes: number,
): NextBatch | string {
  const pending = listing.filter((s) => comparePos(s, pos) >= 0);
  if (pending.length === 0) return { batch: [], more: false };
  const first = pending[0];
  // The first segment continues the position, or (with the position's index applied up to
  // its end) starts the next index. Before any WAL of the index (no chain): only its start.
  const continues = first.index === pos.index && first.offset === pos.offset;
  const nextIndex = pos.chain !== undefined && first.index === pos.index + 1 && first.offset === 0;
  if (!continues && !nextIndex) {
    return `gap in the replica's wal: next segment ${at(first.index, first.offset)}, expected ${
      at(pos.index, pos.offset)
    }${pos.chain ? ` or ${at(pos.index + 1, 0)}` : ""}`;
  }
  const batch = [first];
  let bytes = first.size;
  for (let i = 1; i < pending.length; i++) {
    const seg = pending[i];
    const prev = pending[i - 1];
    // Offsets within an index are checked while replaying (segment ends are known only then).
    if (seg.index !== prev.index && !(seg.index === prev.index + 1 && seg.offset === 0)) break;
    if (bytes + seg.size > maxBytes) return { batch, more: true };
    batch.push(seg);
    bytes += seg.size;
  }
  return { batch, more: false };
}
