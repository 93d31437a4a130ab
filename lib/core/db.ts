/**
 * The database monitor: owns one SQLite database's replication state. It
 * holds a long read transaction so only it can checkpoint, copies committed
 * WAL frames into shadow WAL files (one per WAL incarnation, or "index"),
 * decides checkpoints, and starts a new generation whenever continuity with
 * the previous frames cannot be proven. Layout and rules follow Litestream
 * v0.3.13 (spec §3, §4, §10).
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { ChangeSignal, Mutex } from "../os/async.ts";
import { equalBytes } from "../os/bytes.ts";
import { type CheckpointMode, checkpointModeFor, checkpointSentinel } from "./checkpoint.ts";
import { CheckpointAdmission } from "./admission.ts";
import { checkDatabaseFile, DbHandles } from "./handles.ts";
import { lastFrameMatches, walUnchangedSince } from "./shadow_checks.ts";
import {
  removeOtherGenerations,
  resumeGeneration,
  shadowWalPath,
  startGeneration,
} from "./meta.ts";
import { type DirWaitOptions, type DirWake, waitForDirChange } from "../os/dir_watch.ts";
import { LitestreamError } from "../errors.ts";
import { removeIfExists, syncReadStream } from "../os/fs.ts";
import type { Logger } from "../log.ts";
import { MAX_INDEX, type Pos } from "../names.ts";
import {
  copyCommittedFrames,
  createShadow,
  readWalHeaderBytes,
  type ShadowState,
} from "./shadow_wal.ts";
import { SqliteCode, SqliteError } from "../sqlite/driver.ts";
import { primaryChecksum } from "../validate/position.ts";
import { frameAlign, frameSize, WAL_HEADER_SIZE } from "../sqlite/wal.ts";

export type { CheckpointMode } from "./checkpoint.ts";

/** Settings of a monitored database (intervals in milliseconds). */
export interface DbSettings {
  path: string;
  metaPath?: string;
  checkpointInterval: number;
  minCheckpointPageCount: number;
  maxCheckpointPageCount: number;
  truncatePageCount: number;
}

/** Something that has a replication position (a replica), for shadow clean-up. */
export interface PositionHolder {
  pos(): Pos | undefined;
}

/** Counters for metrics and tests. */
export interface DbStats {
  syncs: number;
  syncErrors: number;
  walBytes: number;
  checkpoints: Record<CheckpointMode, number>;
  generations: number;
}

const SEQ_UPSERT =
  "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1";

/** The default meta directory of a database: `.<name>-litestream` beside it. */
export function defaultMetaPath(dbPath: string): string {
  return join(dirname(dbPath), `.${basename(dbPath)}-litestream`);
}

/** One monitored database. */
export class DB {
  readonly path: string;
  readonly walPath: string;
  readonly metaPath: string;
  /** Notified whenever the shadow WAL grows or moves (new index or generation). */
  readonly changed = new ChangeSignal();
  /** Replicas whose positions bound shadow clean-up. */
  readonly replicas: PositionHolder[] = [];
  readonly stats: DbStats = {
    syncs: 0,
    syncErrors: 0,
    walBytes: 0,
    checkpoints: { PASSIVE: 0, RESTART: 0, TRUNCATE: 0 },
    generations: 0,
  };
  /** Page size, known once initialised. */
  pageSize = 0;

  #h: DbHandles | undefined;
  #generation: string | undefined;
  #shadow: ShadowState | undefined;
  #fileMode = 0o600;
  #dirMode = 0o700;
  #cleanedBelow = 0;
  #snapshots = 0;
  #quietSyncs = 0;
  /** Other processes' checkpoints we let through (see `admission.ts`). */
  readonly #admission = new CheckpointAdmission();
  /** Why start-up dropped the recorded generation, for the new generation's log line. */
  #clearedBecause: string | undefined;
  readonly #mutex = new Mutex();
  readonly #snapshotLock = new Mutex();

  /** Creates a monitor; nothing is opened until the first `sync()` finds the database. */
  constructor(readonly settings: DbSettings, readonly log: Logger) {
    this.path = settings.path;
    this.walPath = `${settings.path}-wal`;
    this.metaPath = settings.metaPath ?? defaultMetaPath(settings.path);
  }

  /** The current generation, once one exists. */
  get generation(): string | undefined {
    return this.#generation;
  }

  /** The SQLite driver in use, once initialised. */
  get driver(): string | undefined {
    return this.#h?.conn.driver;
  }

  /** Mode for files Litestream writes for this database (the database file's mode). */
  get fileMode(): number {
    return this.#fileMode;
  }

  /** Mode for directories Litestream creates (the database directory's mode). */
  get dirMode(): number {
    return this.#dirMode;
  }

  /** The position up to which the shadow WAL holds committed frames. */
  pos(): Pos | undefined {
    if (!this.#generation || !this.#shadow) return undefined;
    return { generation: this.#generation, index: this.#shadow.index, offset: this.#shadow.size };
  }

  /** How many syncs in a row found the WAL as the shadow left it (and no checkpoint due). */
  get quietSyncs(): number {
    return this.#quietSyncs;
  }

  /**
   * Waits, without polling, until the WAL may have changed or the
   * time-based checkpoint falls due: file-system events on the database's
   * directory (events naming its files), proven by the WAL check (see
   * `waitForDirChange`). Throws when events are unavailable here.
   */
  async waitForWalChange(
    opts: Omit<DirWaitOptions, "maxWaitMs" | "file" | "interrupt"> & { probeMs: number },
  ): Promise<DirWake> {
    const unchanged = () => this.#mutex.run(() => Promise.resolve(this.#walUnchanged()));
    // Returns when the time-based checkpoint falls due, as a tick would have found it.
    const maxWaitMs = this.#checkpointDueIn();
    // Woken by events naming this database's files only: the directory's watch is shared.
    const file = basename(this.path);
    // A checkpointer waiting on our read transaction raises no file event: one process-wide
    // timer probes for it (two fcntl calls a database), and interrupts the wait.
    using sentinel = this.#h?.shm
      ? checkpointSentinel.watch(() => this.checkpointerWaiting(), opts.probeMs)
      : undefined;
    const interrupt = sentinel?.signal;
    return await waitForDirChange(dirname(this.walPath), unchanged, {
      ...opts,
      maxWaitMs,
      file,
      interrupt,
    });
  }

  /**
   * True when another process runs a checkpoint that waits for readers (FULL, RESTART or
   * TRUNCATE: it holds SQLite's checkpoint lock and its write lock, spec §4.2) while we hold
   * our read transaction. Two `fcntl` calls on the `-shm`; no read of the database.
   */
  checkpointerWaiting(): boolean {
    return !!this.#h?.rtxHeld && this.#h.checkpointerHoldsLocks();
  }

  /** Path of the shadow WAL file for `index` in `generation`. */
  shadowPath(generation: string, index: number): string {
    return shadowWalPath(this.metaPath, generation, index);
  }

  /** One monitor tick: initialise if needed, copy new frames, checkpoint when due, clean up. */
  async sync(): Promise<void> {
    try {
      await this.#mutex.run(() => this.#sync());
      this.stats.syncs++;
    } catch (err) {
      this.stats.syncErrors++;
      throw err;
    }
  }

  /**
   * Runs `fn` with a consistent snapshot of the database file: everything
   * committed is in the shadow WAL first (so a restore of this snapshot plus
   * its index's WAL is never torn), and checkpoints wait until `fn` is done.
   */
  snapshot<T>(fn: (pos: Pos, data: ReadableStream<Uint8Array>) => Promise<T>): Promise<T> {
    return this.#snapshotLock.run(async () => {
      const pos = await this.#mutex.run(async () => {
        await this.#sync();
        if (!this.#h) throw new LitestreamError(`${this.path}: database does not exist yet`);
        // Bounded by our read transaction, so the file holds nothing beyond the shadow WAL.
        await this.#h.conn.queryRow("PRAGMA wal_checkpoint(PASSIVE)");
        this.#snapshots++;
        return this.pos();
      });
      try {
        if (!pos) throw new LitestreamError(`${this.path}: no generation available`);
        // Blocks of the frame size (4 MiB), which the LZ4 encoder takes without copying them.
        return await fn(pos, syncReadStream(this.#h!.file, 4 * 1024 * 1024));
      } finally {
        this.#snapshots--;
      }
    });
  }

  /**
   * The current position and a checksum of the database there (file plus
   * WAL up to the position), taken while no checkpoint can run.
   */
  checksum(): Promise<{ pos: Pos; checksum: string }> {
    return this.#mutex.run(async () => {
      await this.#sync();
      const pos = this.pos();
      if (!pos) throw new LitestreamError(`${this.path}: no generation available`);
      const wal = this.shadowPath(pos.generation, pos.index);
      return {
        pos,
        checksum: await primaryChecksum(
          () => syncReadStream(this.#h!.file),
          wal,
          pos.offset,
          this.path,
        ),
      };
    });
  }

  /** Starts a new generation now, e.g. when a replica cannot continue the current one. */
  async restartGeneration(reason: string): Promise<void> {
    await this.#mutex.run(async () => {
      if (this.#h) await this.#newGeneration(reason);
    });
    this.changed.notify();
  }

  /** Releases the read transaction and closes connections and the database descriptor. */
  async close(): Promise<void> {
    await this.#mutex.run(() => this.#closeHandles());
  }

  async #closeHandles(): Promise<void> {
    const h = this.#h;
    this.#h = undefined;
    this.#admission.forget();
    await h?.close();
  }

  async #sync(): Promise<void> {
    // Replicas wait for a change; on first open there may be shadow WAL they have not shipped.
    const opened = !this.#h;
    if (opened && !await this.#init()) return;
    // A replaced database matters only once something is written to it, which changes the WAL.
    if (!opened && this.#unchanged() && !this.checkpointerWaiting()) {
      this.#quietSyncs++;
      return await this.#cleanShadows();
    }
    this.#quietSyncs = 0;
    if (await this.#h!.replaced(this.path)) {
      this.log.warn("database file replaced or removed; reopening");
      await this.#closeHandles();
      this.#generation = this.#shadow = undefined;
      if (await this.#init()) await this.#newGeneration("database file replaced");
      this.changed.notify();
      return;
    }
    const conn = this.#h!.conn;
    // Re-taken if a previous sync failed between releasing and re-acquiring it; a restart we
    // let through is then no longer proven to be the only one.
    if (!this.#h!.rtxHeld) this.#admission.forget();
    await this.#h!.acquireReadTx();
    let walHeader = await readWalHeaderBytes(this.walPath);
    if (!walHeader) {
      await conn.exec(SEQ_UPSERT); // makes SQLite create a WAL with a header and a frame
      walHeader = await readWalHeaderBytes(this.walPath);
    }
    let changed = false;
    const check = await this.#verify(walHeader);
    if (check.reason) {
      await this.#newGeneration(check.reason);
      changed = true;
    } else if (check.restarted) {
      await this.#nextIndex();
      changed = true;
    } else {
      const copy = await copyCommittedFrames(this.walPath, this.#shadow!);
      this.stats.walBytes += copy.copied;
      changed = copy.copied > 0;
      if (this.checkpointerWaiting() && this.#snapshots === 0) {
        const admitted = await this.#admission.admit(this.#h!, this.#shadow!, this.pageSize);
        if (admitted) this.log.info("let another process's checkpoint through", admitted);
      }
    }
    const mode = this.#snapshots === 0 ? await this.#checkpointMode() : undefined;
    if (mode) {
      await this.#checkpoint(mode);
      changed = true;
    }
    await this.#cleanShadows();
    if (changed || opened) this.changed.notify();
  }

  /**
   * True when nothing can have happened since the last full sync: the WAL is
   * as the shadow left it (see `#walUnchanged`) and no time-based checkpoint
   * is due. Saves the full pass on idle ticks.
   */
  #unchanged(): boolean {
    return this.#checkpointDueIn() !== 0 && this.#walUnchanged();
  }

  /** The WAL as the shadow left it (see `walUnchangedSince`), while our read pins it. */
  #walUnchanged(): boolean {
    return !!this.#shadow && !!this.#h?.rtxHeld && walUnchangedSince(this.walPath, this.#shadow);
  }

  /**
   * Milliseconds until the time-based checkpoint is due (0: due now), or
   * undefined while none can be: rule 4 of spec §4.9, the last checkpoint
   * (the database file's mtime) older than the interval and the WAL longer
   * than one frame. Sync stat of the path: safe for SQLite's locks, and cheap
   * on idle ticks.
   */
  #checkpointDueIn(): number | undefined {
    const shadow = this.#shadow;
    const interval = this.settings.checkpointInterval;
    if (!shadow || interval <= 0 || shadow.size <= WAL_HEADER_SIZE + frameSize(this.pageSize)) {
      return undefined;
    }
    let mtime = 0;
    try {
      mtime = Deno.statSync(this.path).mtime?.getTime() ?? 0;
    } catch { /* gone: due at once, and the full pass finds out */ }
    return Math.max(0, mtime + interval + 1 - Date.now());
  }

  /** Opens the database for replication; returns false while it does not exist. */
  async #init(): Promise<boolean> {
    const st = await checkDatabaseFile(this.path);
    if (!st) return false;
    this.#fileMode = (st.mode ?? 0o600) & 0o777;
    this.#dirMode = ((await Deno.stat(dirname(this.path))).mode ?? 0o700) & 0o777;

    await Deno.mkdir(this.metaPath, { recursive: true, mode: this.#dirMode });
    this.#h = await DbHandles.open(this.path, this.metaPath, this.log);
    this.pageSize = this.#h.pageSize;
    const found = await resumeGeneration(this.metaPath, this.walPath);
    if (typeof found === "string") {
      this.log.warn("init: cannot determine last wal position, clearing generation", {
        reason: found,
      });
      this.#clearedBecause = found;
    } else if (found) {
      this.#generation = found.generation;
      this.#shadow = found.shadow;
    }
    await removeOtherGenerations(this.metaPath, this.#generation);
    this.log.info("initialized db", { path: this.path, driver: this.#h.conn.driver });
    return true;
  }

  /** Continuity checks of spec §4.5 against the WAL's current header; a reason means a new generation. */
  async #verify(
    walHeader: Uint8Array | undefined,
  ): Promise<{ reason?: string; restarted?: boolean }> {
    const shadow = this.#shadow;
    if (!this.#generation || !shadow) {
      const reason = this.#clearedBecause
        ? `previous generation cleared: ${this.#clearedBecause}`
        : "no generation exists";
      this.#clearedBecause = undefined;
      return { reason };
    }
    if (shadow.index >= MAX_INDEX) return { reason: "max index exceeded" };
    const st = await Deno.stat(shadow.path).catch(() => undefined);
    if (!st) return { reason: "no shadow wal" };
    if (st.size !== shadow.size) return { reason: "shadow wal changed by another process" };
    const walSt = await Deno.stat(this.walPath).catch(() => undefined);
    if (!walSt || !walHeader) return { reason: "primary wal header missing" };
    if (this.#admission.isRestart(shadow, walHeader)) return { restarted: true };
    if (shadow.size > frameAlign(walSt.size, this.pageSize)) {
      return { reason: "wal truncated by another process" };
    }
    // Only our own checkpoint restarts the WAL while we hold the read transaction. A restart we
    // did not make may have truncated frames we never copied, so continuity cannot be proven.
    if (!equalBytes(walHeader, shadow.headerBytes)) {
      return { reason: "wal restarted by another process" };
    }
    if (
      shadow.size > WAL_HEADER_SIZE && !await lastFrameMatches(this.walPath, shadow, this.pageSize)
    ) {
      return { reason: "wal overwritten by another process" };
    }
    return {};
  }

  /** Starts a new generation from the current real WAL (header and committed frames). */
  async #newGeneration(reason: string): Promise<void> {
    const { generation, shadow, copied } = await startGeneration(this.metaPath, this.walPath, {
      fileMode: this.#fileMode,
      dirMode: this.#dirMode,
    });
    this.stats.walBytes += copied;
    this.#generation = generation;
    this.#shadow = shadow;
    this.#cleanedBelow = 0;
    this.stats.generations++;
    this.log.info("sync: new generation", { generation, reason });
    await removeOtherGenerations(this.metaPath, this.#generation);
  }

  /**
   * Moves to the next index after a WAL restart we made or let through, holding SQLite's write
   * lock so the WAL cannot move meanwhile (see `#followRestart`).
   */
  async #nextIndex(): Promise<void> {
    await this.#h!.withWriteLock(() => this.#followRestart());
  }

  /**
   * With SQLite's write lock held: takes the old WAL's last frames still in place, then starts
   * the next index from the restarted WAL. Every frame of the old WAL is then in the shadow: our
   * checkpoint copied them under the write lock, or the admission proved it.
   */
  async #followRestart(): Promise<void> {
    const old = this.#shadow!;
    this.stats.walBytes += (await copyCommittedFrames(this.walPath, old)).copied;
    const header = await readWalHeaderBytes(this.walPath);
    if (header && equalBytes(header, old.headerBytes)) return;
    if (old.index + 1 >= MAX_INDEX) return await this.#newGeneration("max index exceeded");
    const path = this.shadowPath(this.#generation!, old.index + 1);
    const { shadow, copy } = await createShadow(this.walPath, path, old.index + 1, this.#fileMode);
    this.stats.walBytes += copy.copied;
    this.#shadow = shadow;
  }

  /** Which checkpoint is due, by v0.3.13's policy (spec §4.9). */
  async #checkpointMode(): Promise<CheckpointMode | undefined> {
    const real = (await Deno.stat(this.walPath).catch(() => ({ size: 0 }))).size;
    return checkpointModeFor(this.settings, {
      shadow: this.#shadow!.size,
      wal: frameAlign(real, this.pageSize),
      frame: frameSize(this.pageSize),
    }, this.#checkpointDueIn() === 0);
  }

  /**
   * Checkpoints with no gap through which a commit could escape the shadow
   * WAL. Holding SQLite's write lock, every committed frame is copied, then
   * our read transaction is released for a PASSIVE checkpoint (the only mode
   * that runs while we hold the write lock; it backfills all that no reader
   * pins) and taken back. v0.3.13 copies first and checkpoints later without
   * the lock, so a commit in between could be backfilled and truncated away
   * by the application's own TRUNCATE checkpoint. After the lock is released,
   * our `_litestream_seq` write restarts the WAL if it was fully backfilled
   * (shrinking the file for TRUNCATE) and the shadow moves to the next index.
   */
  async #checkpoint(mode: CheckpointMode): Promise<void> {
    const h = this.#h!;
    const conn = h.conn;
    let result;
    try {
      result = await h.withWriteLock(async () => {
        // A restart we let through since the last verify: its frames are not in the shadow yet,
        // and our backfill below would let the next restart drop them. Follow it first.
        const header = await readWalHeaderBytes(this.walPath);
        if (header && !equalBytes(header, this.#shadow!.headerBytes)) {
          if (!this.#admission.isRestart(this.#shadow!, header)) return undefined; // the next verify decides
          await this.#followRestart();
        }
        this.stats.walBytes += (await copyCommittedFrames(this.walPath, this.#shadow!)).copied;
        await h.releaseReadTx();
        try {
          return await h.rtx.queryRow("PRAGMA wal_checkpoint(PASSIVE)");
        } finally {
          await h.acquireReadTx();
        }
      });
    } catch (err) {
      // The application holds the write lock longer than our busy timeout: try at the next sync.
      if (err instanceof SqliteError && err.code === SqliteCode.SQLITE_BUSY) {
        this.log.debug("checkpoint skipped: database busy", { mode });
        return;
      }
      throw err;
    }
    if (!result) return this.log.debug("checkpoint skipped: the WAL restarted", { mode });
    this.stats.checkpoints[mode]++;
    this.log.debug("checkpoint", { mode, result: result.join(",") });
    if (mode === "TRUNCATE") await conn.exec("PRAGMA journal_size_limit = 0");
    try {
      await conn.exec(SEQ_UPSERT);
    } finally {
      if (mode === "TRUNCATE") await conn.exec("PRAGMA journal_size_limit = -1");
    }
    const header = await readWalHeaderBytes(this.walPath);
    if (!header || !equalBytes(header, this.#shadow!.headerBytes)) await this.#nextIndex();
  }

  /** Removes shadow WAL files every replica has passed (keeping one older, as v0.3.13 does). */
  async #cleanShadows(): Promise<void> {
    if (this.replicas.length === 0 || !this.#generation) return;
    const gen = this.#generation;
    const min = Math.min(...this.replicas.map((r) => {
      const p = r.pos();
      return p && p.generation === gen ? p.index : 0;
    }));
    if (min - 1 <= this.#cleanedBelow) return;
    for (let i = this.#cleanedBelow; i < min - 1; i++) {
      await removeIfExists(this.shadowPath(gen, i));
    }
    this.#cleanedBelow = min - 1;
  }
}
