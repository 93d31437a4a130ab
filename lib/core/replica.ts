/**
 * A replica of one database: ships the shadow WAL to a `ReplicaClient` as
 * LZ4-compressed segments (one per index per sync, each ending on a commit),
 * takes snapshots, and enforces retention. Its position says what the
 * replica already holds.
 *
 * @module
 */

import { Mutex, Semaphore, sleep } from "../os/async.ts";
import type { DB, PositionHolder } from "./db.ts";
import { CorruptionError, DecryptionError, LitestreamError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { chunksOf, copied, lendingStream } from "../os/fs.ts";
import { encodeFrameViews, lz4FrameDecoder } from "../lz4/mod.ts";
import { comparePos, formatPos, type Pos } from "../names.ts";
import type { ReplicaClient, SnapshotInfo } from "../replica_client.ts";
import { readWalRange } from "./shadow_wal.ts";
import { encodeRecord, recordName } from "./checksum_record.ts";
import { StoreHealth } from "./store_health.ts";
import { type Lease, LeaseRefusedError } from "./lease.ts";
import { SyncActivity } from "./activity.ts";
import { enforceRetention } from "./retention.ts";

/** Replica timing settings (milliseconds). */
export interface ReplicaSettings {
  name: string;
  syncInterval: number;
  snapshotInterval: number;
  retention: number;
  retentionCheckInterval: number;
  /** Background validation period; 0 = off. */
  validationInterval?: number;
}

/** Counters for metrics and tests. */
export interface ReplicaStats {
  validations: { ok: number; error: number };
  /** Retention passes run, and those skipped because nothing could have changed. */
  retention: { passes: number; skipped: number };
  segments: number;
  walBytes: number;
  snapshots: number;
  syncErrors: number;
}

/**
 * Snapshots taken at once in the whole process: each holds a read buffer and an encoder's
 * work area, and a start-up with a thousand new databases must not hold a thousand of them.
 */
const snapshotSlots = new Semaphore(4);

/** A local shadow file a replica needs is gone; the replica recovers with a snapshot. */
class ShadowMissing extends LitestreamError {}

/** How far a sync ships: the database's position, or what it lets upload loops ship. */
export type UpTo = "pos" | "shippable";

/** One replica of one database. */
export class Replica implements PositionHolder {
  readonly stats: ReplicaStats = {
    validations: { ok: 0, error: 0 },
    retention: { passes: 0, skipped: 0 },
    segments: 0,
    walBytes: 0,
    snapshots: 0,
    syncErrors: 0,
  };
  /** Last sync, last error and lag, for health and `status`. */
  readonly activity = new SyncActivity();
  #pos: Pos | undefined;
  /** The position last forgotten (see `#forget`), for displays while it is re-read. */
  #forgotten: Pos | undefined;
  /** The replica's last segment, found damaged at consecutive resumes, and how many times. */
  #damagedEnd: { message: string; times: number } | undefined;
  /** The last segment this process wrote successfully, and where it ends. */
  #lastWritten: { pos: Pos; end: Pos } | undefined;
  readonly #mutex = new Mutex();

  /**
   * Creates a replica of `db` stored through `client`. `health` paces retries
   * while the store fails; replicas of one store share it (see `StoreHealth`).
   * With a `lease`, it writes only while it holds the replica's lease (see `lease.ts`).
   */
  constructor(
    readonly db: DB,
    readonly client: ReplicaClient,
    readonly settings: ReplicaSettings,
    readonly log: Logger,
    readonly health: StoreHealth = new StoreHealth(),
    readonly lease?: Lease,
  ) {
    db.changed.listen(() => this.activity.changed());
    // The monitor stands by once every replica is refused; an idle one must look now.
    lease?.refusals.listen(() => db.interruptIdle());
  }

  /** The name from the config (`file`, `s3`, …). */
  get name(): string {
    return this.settings.name;
  }

  /** What the replica holds: the end of the last uploaded segment. */
  pos(): Pos | undefined {
    return this.#pos;
  }

  /** Forgets what the replica holds, to be re-read; `lastKnownPos` keeps showing it meanwhile. */
  #forget(): void {
    this.#forgotten = this.#pos ?? this.#forgotten;
    this.#pos = undefined;
  }

  /**
   * The position, or while the store fails (the position is then re-read at the next sync)
   * the last one the replica acknowledged: what `status` and `/healthz` show.
   */
  lastKnownPos(): Pos | undefined {
    return this.#pos ?? this.#forgotten;
  }

  /**
   * Uploads everything the shadow WAL holds beyond the replica's position; with `"shippable"`
   * (the upload loop), short of a new index the database holds back (`DB.shippable`).
   */
  sync(upTo: UpTo = "pos"): Promise<void> {
    return this.#mutex.run(async () => {
      const startedAt = Date.now();
      try {
        // Before the database has a generation the store is not asked: not a sync to show.
        if (!await this.#sync(upTo)) return;
      } catch (err) {
        // The next sync re-reads what the replica holds (and snapshots if it is gone).
        this.#forget();
        this.activity.failed(err);
        throw err;
      }
      this.activity.succeeded(this.caughtUp(), startedAt);
    });
  }

  /** True when the replica holds everything the shadow WAL holds (or there is nothing yet). */
  caughtUp(): boolean {
    const dpos = this.db.pos();
    const pos = this.#pos;
    return !dpos || (pos?.generation === dpos.generation && comparePos(pos, dpos) >= 0);
  }

  /**
   * Takes a snapshot now (after shipping the WAL it depends on); throws `LeaseRefusedError`
   * while another replicator holds the replica.
   */
  snapshot(): Promise<SnapshotInfo> {
    return this.#mutex.run(async () => {
      const generation = this.db.generation;
      if (generation && !await this.#mayWrite(generation)) {
        throw new LeaseRefusedError(
          `replica ${this.name}: not written: another replicator holds ${this.client.location}`,
        );
      }
      return await this.#snapshot();
    });
  }

  /** Returns false when the database has no generation yet (nothing was asked of the store). */
  async #sync(upTo: UpTo): Promise<boolean> {
    const dpos = this.db.pos();
    if (!dpos) return false;
    if (!await this.#mayWrite(dpos.generation)) return true;
    if (this.#pos?.generation !== dpos.generation && !await this.#resume(dpos)) return true;
    try {
      await this.#uploadWal(upTo);
    } catch (err) {
      if (!(err instanceof ShadowMissing)) throw err;
      this.log.warn("shadow wal needed by replica is gone, taking a snapshot", {
        reason: err.message,
      });
      await this.#snapshot();
    }
    return true;
  }

  /**
   * Whether the lease lets this replicator write to the replica now (see `lease.ts`). A lease
   * just taken sends it back to what the replica holds; one taken from a live holder with
   * `-force` first starts a new generation (once per database), so the two histories never mix.
   */
  async #mayWrite(generation: string): Promise<boolean> {
    if (!this.lease) return true;
    const verdict = await this.lease.beforeWrite(generation);
    if (verdict === "acquired") this.#forget();
    if (this.lease.takeForced() && !forcedDbs.has(this.db)) {
      forcedDbs.add(this.db);
      await this.db.restartGeneration(`replica ${this.name} taken over with -force`);
      return false; // The next sync ships the new generation.
    }
    return verdict !== "refused";
  }

  /** True while another replicator holds the replica's lease: this one does not write to it. */
  refused(): boolean {
    return this.lease?.refused ?? false;
  }

  /** Releases the replica's lease at shutdown, so the next replicator takes over at once. */
  async release(): Promise<void> {
    await this.lease?.release();
  }

  /**
   * Finds the replica's position in the database's generation from its
   * objects. Returns false when a snapshot was taken instead (it sets the position).
   */
  async #resume(dpos: Pos): Promise<boolean> {
    const { generation } = dpos;
    const snapshots = await this.client.snapshots(generation);
    if (snapshots.length === 0) {
      await this.#snapshot();
      return false;
    }
    let remote: Pos | undefined;
    try {
      remote = await this.#remotePos(generation);
      this.#damagedEnd = undefined;
    } catch (err) {
      // Where the replica ends cannot be read: start afresh rather than stop backing up.
      const why = this.#unreadableEnd(err);
      if (!why) throw err;
      await this.db.restartGeneration(
        `replica ${this.name} cannot read its last WAL segment ${why}`,
      );
      return false;
    }
    const pos = remote ?? { generation, index: snapshots.at(-1)!.index, offset: 0 };
    if (comparePos(pos, dpos) > 0) {
      // The replica holds frames the local shadow does not: continuing would leave a gap or overlap.
      await this.db.restartGeneration(
        `replica ${this.name} is ahead of the local shadow wal (${formatPos(pos)})`,
      );
      return false;
    }
    this.#pos = pos;
    return true;
  }

  /**
   * Why a failure to read the replica's last segment calls for a new generation, or undefined
   * when it is worth a retry (the sync fails, and the next one reads again).
   */
  #unreadableEnd(err: unknown): string | undefined {
    if (err instanceof DecryptionError) {
      // An encrypting replica without identities, or whose identities are not its recipients'.
      return `with its age identities (${err.message})`;
    }
    if (!(err instanceof CorruptionError)) return undefined;
    // A read cut short heals on a retry; an object damaged for good (v0.3.13 can leave one: its
    // shutdown sync and replica loop race for one temporary file) would stop backups.
    const times = this.#damagedEnd?.message === err.message ? this.#damagedEnd.times + 1 : 1;
    this.#damagedEnd = times < DAMAGED_END_READS ? { message: err.message, times } : undefined;
    return this.#damagedEnd ? undefined : `(${times} reads in a row: ${err.message})`;
  }

  /** Where the replica's WAL ends in `generation` (the end of its last segment); undefined when it has none. */
  async #remotePos(generation: string): Promise<Pos | undefined> {
    const last = (await this.client.walSegments(generation)).at(-1);
    if (!last) return undefined;
    let stream: ReadableStream<Uint8Array>;
    try {
      stream = await this.client.readWalSegment(last);
    } catch (err) {
      // Without age identities, the segment this process wrote last still tells where it ends.
      const mine = this.#lastWritten;
      if (
        err instanceof DecryptionError && mine &&
        mine.pos.generation === generation && comparePos(mine.pos, last) === 0
      ) {
        return mine.end;
      }
      throw err;
    }
    const data = stream.pipeThrough(lz4FrameDecoder(this.client.describe("wal", last)));
    let n = 0;
    for await (const chunk of data) n += chunk.length;
    return { generation, index: last.index, offset: last.offset + n };
  }

  /** Uploads shadow WAL bytes from the position to the database's (see `sync`). */
  async #uploadWal(upTo: UpTo = "pos"): Promise<void> {
    while (this.#pos) {
      const pos = this.#pos;
      const dpos = upTo === "pos" ? this.db.pos() : this.db.shippable();
      if (!dpos || dpos.generation !== pos.generation) return;
      const end = pos.index === dpos.index ? dpos.offset : this.#shadowSize(pos);
      if (end > pos.offset) {
        await this.#uploadSegment(pos, end);
        this.#pos = { ...pos, offset: end };
      } else if (pos.index < dpos.index) {
        this.#pos = { generation: pos.generation, index: pos.index + 1, offset: 0 };
      } else {
        return;
      }
    }
  }

  #shadowSize(pos: Pos): number {
    try {
      return Deno.statSync(this.db.shadowPath(pos.generation, pos.index)).size;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new ShadowMissing(`no shadow wal for ${formatPos(pos)}`);
      }
      throw err;
    }
  }

  /** Uploads shadow bytes [pos.offset, end) as one segment. */
  async #uploadSegment(pos: Pos, end: number): Promise<void> {
    const path = this.db.shadowPath(pos.generation, pos.index);
    const mine = this.#lastWritten;
    // Forgotten when overwritten: a failed write might still have replaced that object.
    if (mine?.pos.generation === pos.generation && comparePos(mine.pos, pos) === 0) {
      this.#lastWritten = undefined;
    }
    const info = await this.client.writeWalSegment(
      pos,
      compressedStream(readWalRange(path, pos.offset, end)),
    );
    this.#lastWritten = { pos, end: { ...pos, offset: end } };
    this.stats.segments++;
    this.stats.walBytes += end - pos.offset;
    this.log.debug("wal segment written", {
      position: formatPos(pos),
      size: end - pos.offset,
      stored: info.size,
    });
  }

  #snapshot(): Promise<SnapshotInfo> {
    return snapshotSlots.run(() => this.#snapshotNow());
  }

  async #snapshotNow(): Promise<SnapshotInfo> {
    return await this.db.snapshot(async (pos, data) => {
      if (this.#pos?.generation !== pos.generation) {
        // Continue from what the replica holds: restarting an index at offset 0 would overlap its segments.
        const remote = await this.#remotePos(pos.generation);
        if (remote && comparePos(remote, pos) > 0) {
          throw new LitestreamError(
            `replica ${this.name} is ahead of the local shadow wal (${formatPos(remote)})`,
          );
        }
        this.#pos = remote ?? { generation: pos.generation, index: pos.index, offset: 0 };
      }
      // WAL up to the snapshot's position goes first: any restore that picks this snapshot by time also gets it.
      try {
        await this.#uploadWal();
      } catch (err) {
        if (!(err instanceof ShadowMissing) || this.#pos!.index >= pos.index) throw err;
        // The local WAL between the replica's end and this snapshot is gone: the snapshot starts afresh at its index.
        this.#pos = { generation: pos.generation, index: pos.index, offset: 0 };
        await this.#uploadWal();
      }
      const info = await this.client.writeSnapshot(
        pos.generation,
        pos.index,
        compressedStream(data),
      );
      this.stats.snapshots++;
      this.log.info("snapshot written", { position: formatPos(pos), size: info.size });
      return info;
    }).then(async (info) => {
      await this.#writeRecord().catch((err) =>
        this.log.warn("checksum record not written", { error: err })
      );
      return info;
    });
  }

  /**
   * Records the database's checksum at its current position in the replica,
   * once the replica holds that position, so the replica can later be
   * validated without its primary.
   */
  async #writeRecord(): Promise<void> {
    const { pos, checksum } = await this.db.checksum();
    await this.#uploadWal();
    const at = this.#pos;
    if (!at || at.generation !== pos.generation || comparePos(at, pos) < 0) return;
    await this.record(pos, checksum);
  }

  /** Stores a checksum record: the database's SHA-256 at `pos`, which the replica holds. */
  async record(pos: Pos, sha256: string): Promise<void> {
    if (this.lease && !this.lease.held) return;
    await this.client.writeRecord(
      pos.generation,
      recordName(pos),
      encodeRecord({ ...pos, sha256 }),
    );
    this.log.debug("checksum record written", { position: formatPos(pos) });
  }

  /**
   * Deletes what no restore inside the retention window needs (spec §5.5),
   * never the current generation and never the last restorable snapshot. Returns the creation
   * time of the oldest snapshot kept (see `enforceRetention` in `retention.ts`), when it ran.
   */
  enforceRetention(now = Date.now()): Promise<number | undefined> {
    return this.#mutex.run(async () => {
      const current = this.db.generation;
      if (!current || !await this.#mayWrite(current)) return undefined;
      return await enforceRetention(this.client, {
        current,
        cutoff: now - this.settings.retention,
        snapshot: () => this.#snapshot(),
        log: this.log,
      });
    });
  }

  /** Runs the replica's loops (upload, snapshots, retention) until `signal` aborts. */
  run(signal: AbortSignal): Promise<void> {
    const loops = [this.#uploadLoop(signal)];
    if (this.settings.snapshotInterval > 0) loops.push(this.#snapshotLoop(signal));
    if (this.settings.retention > 0) loops.push(this.#retentionLoop(signal));
    const lease = this.lease;
    if (lease) {
      // Once there is a generation; a lease just taken ships what waited.
      loops.push(
        this.#waitForGeneration(signal).then(() =>
          lease.run(() => this.db.generation, () => this.db.changed.notify(), signal)
        ),
      );
    }
    return Promise.all(loops).then(() => {});
  }

  async #uploadLoop(signal: AbortSignal): Promise<void> {
    let seen = -1;
    let failures = 0;
    while (!signal.aborted) {
      if (failures === 0) await this.db.changed.wait(seen, signal);
      if (signal.aborted) return;
      seen = this.db.changed.version;
      // The rate is counted from the monitor's announcement, not from when this loop woke: an
      // announcement that waited for this slot would otherwise set the slots a little after
      // the monitor's ticks for good, and every later commit would wait that much longer.
      const started = this.db.changed.at;
      const uploads = this.stats.segments + this.stats.snapshots;
      try {
        await this.sync("shippable");
        // Only a sync that reached the store says it works (one with nothing to upload did not).
        if (failures > 0 || this.stats.segments + this.stats.snapshots > uploads) {
          this.health.succeeded();
        }
        if (failures > 0) {
          this.log.info("replica sync recovered", {
            failures,
            position: formatPos(this.#pos),
          });
        }
        failures = 0;
      } catch (err) {
        this.stats.syncErrors++;
        this.health.failed();
        this.log.error("replica sync failed", {
          error: err,
          failures: ++failures,
          retry: "at the next probe of the store (every 4.5–5 s)",
        });
        // Not sooner on new commits, nor on a timer of this replica's own: see StoreHealth.
        await this.health.wait(this.settings.syncInterval, signal);
        continue;
      }
      // At a fixed rate, as v0.3.13's ticker: a sleep after each upload would drift against the
      // monitor's ticks and leave a fresh commit waiting up to a further interval.
      await sleep(Math.max(0, this.settings.syncInterval - (performance.now() - started)), signal);
    }
  }

  async #snapshotLoop(signal: AbortSignal): Promise<void> {
    const interval = this.settings.snapshotInterval;
    let wait = interval;
    try {
      // Aligned to the newest snapshot, so a restart does not postpone the next one.
      const gen = this.db.generation ?? await this.#waitForGeneration(signal);
      const newest = gen ? (await this.client.snapshots(gen)).at(-1) : undefined;
      if (newest) wait = Math.max(0, interval - (Date.now() - newest.createdAt.getTime()));
    } catch (err) {
      this.log.warn("cannot list snapshots to align the snapshot interval", { error: err });
    }
    while (!signal.aborted) {
      await sleep(wait, signal);
      if (signal.aborted) return;
      wait = interval;
      if (!this.db.pos() || this.refused()) continue;
      await this.snapshot().catch((err) => this.log.error("snapshot failed", { error: err }));
    }
  }

  async #retentionLoop(signal: AbortSignal): Promise<void> {
    const period = Math.min(this.settings.retentionCheckInterval, this.settings.retention);
    const uploads = () => this.stats.segments + this.stats.snapshots;
    // After a pass: nothing changes in the replica until an upload or until the oldest snapshot
    // kept leaves the window, so an idle replica's passes make no request.
    let quiet: { uploads: number; until: number } | undefined;
    while (!signal.aborted) {
      await sleep(period, signal);
      if (signal.aborted || !this.db.pos()) continue;
      if (quiet && quiet.uploads === uploads() && Date.now() < quiet.until) {
        this.stats.retention.skipped++;
        continue;
      }
      this.stats.retention.passes++;
      const oldest = await this.enforceRetention().catch((err) => {
        this.log.error("retention enforcement failed", { error: err });
        return undefined;
      });
      quiet = oldest === undefined
        ? undefined
        : { uploads: uploads(), until: oldest + this.settings.retention };
    }
  }

  async #waitForGeneration(signal: AbortSignal): Promise<string | undefined> {
    while (!signal.aborted && !this.db.generation) {
      await this.db.changed.wait(this.db.changed.version, signal);
    }
    return this.db.generation;
  }
}

/** Databases whose generation a `-force` takeover restarted already (one restart is enough). */
const forcedDbs = new WeakSet<DB>();

/** Reads of the replica's last segment, each finding it damaged, before a new generation begins. */
const DAMAGED_END_READS = 3;

/**
 * `data` as one LZ4 frame in v0.3.13's format. The chunks of `data` and of the frame are lent
 * through reused buffers when the client reads it with `chunksOf` (see `lendingStream`), so
 * shipping an object allocates nothing per block; any other reader gets copies.
 */
function compressedStream(data: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  return lendingStream((lend) => {
    const frame = encodeFrameViews(chunksOf(data));
    return lend ? frame : copied(frame);
  });
}
