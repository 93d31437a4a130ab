/**
 * Validation: prove that a replica restores to the same bytes as the primary
 * at one exact position. The primary's checksum is taken from the database
 * file plus its WAL up to that position (what SQLite would read there), the
 * replica's from a restore to the same position using only snapshots known to
 * predate it, so concurrent writes and checkpoints cannot cause false mismatches.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { sleep } from "../os/async.ts";
import { CorruptionError, NotFoundError } from "../errors.ts";
import { decodeRecord } from "../core/checksum_record.ts";
import { lz4FrameDecoder } from "../lz4/mod.ts";
import { comparePos, formatPos, type Pos } from "../names.ts";
import type { ReplicaClient, SnapshotInfo } from "../replica_client.ts";
import { listGenerations, restoreDatabase } from "../restore/restore.ts";
import { streamMerged } from "../restore/merge.ts";
import { planRestore, planToPosition } from "../restore/plan.ts";
import { readWalRange } from "../core/shadow_wal.ts";
import { WalReplayer } from "../restore/replay.ts";

/** The outcome of validating one replica. */
export interface ValidationReport {
  replica: string;
  position: string;
  primary?: string;
  restored?: string;
  ok: boolean;
  error?: string;
  ms: number;
}

/** SHA-256 (hex) of the bytes `fill` writes. */
export async function sha256Of(
  fill: (write: (chunk: Uint8Array) => Promise<void>) => Promise<unknown>,
): Promise<string> {
  const hash = createHash("sha256");
  await fill((chunk) => {
    hash.update(chunk);
    return Promise.resolve();
  });
  return hash.digest("hex");
}

/**
 * Checksum of the primary as of WAL offset `end`: the database file with the
 * frames of `walPath` before `end` applied. `readDb` streams the database file.
 */
export function primaryChecksum(
  readDb: () => ReadableStream<Uint8Array>,
  walPath: string,
  end: number,
  name: string,
): Promise<string> {
  return sha256Of(async (write) => {
    const replayer = new WalReplayer(undefined);
    if (end > 0) {
      await replayer.apply(
        { generation: "", index: 0, offset: 0 },
        walPath,
        readWalRange(walPath, 0, end),
      );
    }
    await streamMerged(readDb(), name, replayer, write);
  });
}

/** Checksum of `client`'s replica restored to exactly `pos`, using only `snapshots`. */
export async function replicaChecksumAt(
  client: ReplicaClient,
  pos: Pos,
  snapshots: SnapshotInfo[],
): Promise<string> {
  const [listing] = await listGenerations([client], pos.generation);
  if (!listing) {
    throw new NotFoundError(`generation ${pos.generation} not found in ${client.location}`);
  }
  const plan = planToPosition(listing, pos, snapshots);
  return await sha256Of((write) => restoreDatabase(client, plan, { output: write }));
}

/** True once the replica holds the WAL up to `pos` (a later segment or one covering it exists). */
export async function replicaReaches(client: ReplicaClient, pos: Pos): Promise<boolean> {
  const segments = await client.walSegments(pos.generation);
  const before = segments.filter((s) => comparePos(s, pos) < 0);
  if (before.length < segments.length) return true; // something starts at or after pos
  const last = before.at(-1);
  if (!last || last.index !== pos.index) return pos.offset === 0 && before.length > 0;
  let n = 0;
  const name = client.describe("wal", last);
  for await (
    const chunk of (await client.readWalSegment(last)).pipeThrough(lz4FrameDecoder(name))
  ) n += chunk.length;
  return last.offset + n >= pos.offset;
}

/** Polls `reached` until true or the deadline passes (then throws naming the position). */
export async function waitForPosition(
  replica: string,
  pos: Pos,
  reached: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!await reached()) {
    if (Date.now() > deadline) {
      throw new NotFoundError(
        `replica ${replica} did not reach ${formatPos(pos)} within ${
          timeoutMs / 1000
        }s (is it being replicated?)`,
      );
    }
    await sleep(200);
  }
}

/** Compares a primary checksum with a replica restored to the same position, timing it. */
export async function compareAt(
  replica: string,
  client: ReplicaClient,
  pos: Pos,
  primary: string,
  snapshots: SnapshotInfo[],
  started: number,
): Promise<ValidationReport> {
  const report: ValidationReport = { replica, position: formatPos(pos), primary, ok: false, ms: 0 };
  try {
    report.restored = await replicaChecksumAt(client, pos, snapshots);
    report.ok = report.restored === primary;
  } catch (err) {
    report.error = err instanceof Error ? err.message : String(err);
  }
  report.ms = Math.round(performance.now() - started);
  return report;
}

/** What a replica-only check found in one generation. */
export interface GenerationReport {
  replica: string;
  generation: string;
  snapshots: number;
  segments: number;
  /** Checksum of the latest state, restored from the newest snapshot. */
  latest?: string;
  /** Checksum records checked (0: the replica has none, e.g. written by v0.3.13). */
  records: number;
  ok: boolean;
  errors: string[];
}

/**
 * Checks a replica without its primary: every object of every generation
 * decodes (LZ4 checksums, SQLite header, WAL salts, checksum chain,
 * contiguity), each generation starts with a snapshot, and replaying all WAL
 * from the oldest snapshot reaches the same bytes as the newest snapshot plus
 * its WAL. Nothing is written to disk.
 */
export async function validateReplicaObjects(
  name: string,
  client: ReplicaClient,
): Promise<GenerationReport[]> {
  const reports: GenerationReport[] = [];
  for (const g of await listGenerations([client])) {
    const report: GenerationReport = {
      replica: name,
      generation: g.generation,
      snapshots: g.snapshots.length,
      segments: g.segments.length,
      records: 0,
      ok: false,
      errors: [],
    };
    reports.push(report);
    const attempt = async <T>(fn: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await fn();
      } catch (err) {
        // Both replays meet the same bad object: name it once.
        const message = err instanceof Error ? err.message : String(err);
        if (!report.errors.includes(message)) report.errors.push(message);
        return undefined;
      }
    };
    const oldest = g.snapshots[0];
    if (!oldest) {
      report.errors.push(`generation ${g.generation} has no snapshot`);
      continue;
    }
    if (g.segments.length > 0 && g.segments[0].index < oldest.index) {
      // Retention removes WAL below the oldest kept snapshot, so older segments mean a lost snapshot.
      report.errors.push(
        `generation ${g.generation}: wal index ${
          g.segments[0].index
        } predates the oldest snapshot (${oldest.index})`,
      );
    }
    for (const s of g.snapshots.slice(1, -1)) {
      await attempt(() =>
        sha256Of((write) =>
          restoreDatabase(client, { generation: g.generation, snapshot: s, segments: [] }, {
            output: write,
          })
        )
      );
    }
    const full = await attempt(() =>
      sha256Of((write) =>
        restoreDatabase(client, planRestore({ ...g, snapshots: [oldest] }, {}), { output: write })
      )
    );
    report.latest = await attempt(() =>
      sha256Of((write) => restoreDatabase(client, planRestore(g, {}), { output: write }))
    );
    if (full && report.latest && full !== report.latest) {
      report.errors.push(
        `generation ${g.generation}: replaying all wal from snapshot ${oldest.index} gives ${
          full.slice(0, 16)
        }…, the newest snapshot gives ${report.latest.slice(0, 16)}…`,
      );
    }
    for (const info of await client.records(g.generation)) {
      report.records++;
      await attempt(async () => {
        const object = client.describeRecord(g.generation, info.name);
        const record = decodeRecord(
          await client.readRecord(g.generation, info.name),
          info.name,
          object,
        );
        // Snapshots uploaded after the record could hold pages from beyond its position.
        const before = g.snapshots.filter((s) => s.createdAt <= info.createdAt);
        const sum = await replicaChecksumAt(client, record, before);
        if (sum !== record.sha256) {
          throw new CorruptionError(
            object,
            `restore to ${formatPos(record)} gives ${sum.slice(0, 16)}…, the record says ${
              record.sha256.slice(0, 16)
            }…`,
          );
        }
      });
    }
    report.ok = report.errors.length === 0;
  }
  return reports;
}
