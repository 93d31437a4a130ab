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

import { basename, dirname } from "node:path";
import { LitestreamError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { comparePos, type Pos } from "../names.ts";
import { ChangeSignal, Mutex, sleep } from "../os/async.ts";
import { equalBytes } from "../os/bytes.ts";
import { type DirWaitOptions, type DirWake, waitForDirChange } from "../os/dir_watch.ts";
import { statSyncOrUndefined, syncReadStream } from "../os/fs.ts";
import { SqliteCode, SqliteError } from "../sqlite/driver.ts";
import { frameAlign, frameSize, WAL_HEADER_SIZE } from "../sqlite/wal.ts";
import { primaryChecksum } from "../validate/position.ts";
import { ACTIVE_PROBE_MS, CheckpointAdmission } from "./admission.ts";
import {
  checkpointDueIn,
  type CheckpointMode,
  checkpointModeFor,
  commitBurst,
} from "./checkpoint.ts";
import { checkDatabaseFile, DbHandles } from "./handles.ts";
import { defaultMetaPath } from "./meta.ts";
import { walUnchangedSince } from "./shadow_checks.ts";
import { ShadowLog } from "./shadow_log.ts";
import { readWalHeaderBytes } from "./shadow_wal.ts";
import { SyncActivity } from "./activity.ts";

export type { CheckpointMode } from "./checkpoint.ts";

/** Settings of a monitored database (intervals in milliseconds). */
export interface DbSettings {
  path: string;
  metaPath?: string;
  checkpointInterval: number;
  minCheckpointPageCount: number;
  maxCheckpointPageCount: number;
  truncatePageCount: number;
  /**
   * Whether other processes' checkpoints are let through (see `checkpointerWaiting`); the
   * command layer reads `LITESTREAM_ADMIT_CHECKPOINTS` (`admitCheckpointsEnabled`). Default: yes.
   */
  admitCheckpoints?: boolean;
  /**
   * The monitor's interval (default 1 s): the quiet a due time-based checkpoint waits for
   * once any database of the process found new frames (see `CommitBurst`).
   */
  monitorInterval?: number;
}

/** Something that has a replication position (a replica), for shadow clean-up. */
export interface PositionHolder {
  pos(): Pos | undefined;
  /**
   * True while another replicator holds the replica (see `lease.ts`): it needs no shadow WAL,
   * since it starts over from what the replica holds when it takes the replica.
   */
  refused?(): boolean;
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

/** One monitored database. */
export class DB {
  readonly path: string;
  readonly walPath: string;
  readonly metaPath: string;
  /**
   * Notified when the shadow WAL grows or moves (new index or generation), once a sync at most:
   * a checkpoint's new index that holds only our own frame waits for the next sync (`shippable`).
   */
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
  /** Last sync and last error of the monitor, for health and `status`. */
  readonly activity = new SyncActivity();
  /** Page size, known once initialised. */
  pageSize = 0;

  #h: DbHandles | undefined;
  readonly #log: ShadowLog;
  #snapshots = 0;
  #quietSyncs = 0;
  /** Ends the idle wait under way (see `interruptIdle`). */
  #idleInterrupt: AbortController | undefined;
  #idleProbing: boolean | undefined;
  /** The last sync put off a time-based checkpoint (see `#sync`). */
  #timeDeferred = false;
  /**
   * The start of an index a checkpoint began, holding our `_litestream_seq` frame alone, that
   * no sync has announced yet; the next sync announces it (see `#sync`). Upload loops ship up
   * to it (`shippable`).
   */
  #heldBack: Pos | undefined;
  /** Other processes' checkpoints we let through (see `admission.ts`). */
  readonly #admission = new CheckpointAdmission();
  readonly #mutex = new Mutex();
  readonly #snapshotLock = new Mutex();

  /** Creates a monitor; nothing is opened until the first `sync()` finds the database. */
  constructor(readonly settings: DbSettings, readonly log: Logger) {
    this.path = settings.path;
    this.walPath = `${settings.path}-wal`;
    this.metaPath = settings.metaPath ?? defaultMetaPath(settings.path);
    this.#log = new ShadowLog(this.metaPath, this.walPath, log, this.stats);
  }

  /** The current generation, once one exists. */
  get generation(): string | undefined {
    return this.#log.generation;
  }

  /** Whether the database is open (its read transaction and connections held). */
  get open(): boolean {
    return this.#h !== undefined;
  }

  /** The SQLite driver in use, once initialised. */
  get driver(): string | undefined {
    return this.#h?.conn.driver;
  }

  /** The position up to which the shadow WAL holds committed frames. */
  pos(): Pos | undefined {
    return this.#log.pos();
  }

  /**
   * How far the replicas' upload loops ship: the position, short of a new index a checkpoint
   * began that holds our `_litestream_seq` frame alone (the next sync announces it with what is
   * written meanwhile).
   */
  shippable(): Pos | undefined {
    const pos = this.#log.pos();
    const held = this.#heldBack;
    return held && pos?.generation === held.generation && comparePos(held, pos) < 0 ? held : pos;
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
    // Returns when the time-based checkpoint falls due, as a tick would have found it.
    const maxWaitMs = this.#checkpointDueIn();
    // Woken by events naming this database's files only: the directory's watch is shared.
    const file = basename(this.path);
    // A checkpointer waiting on our read transaction raises no file event, unless it wrote to
    // the database first. Where it could wait unannounced, one process-wide timer probes for
    // it (an fcntl call a database) and interrupts the wait. The steering's own connection
    // opens before the watch; once the watch is in place the state is looked at again, for a
    // checkpoint that wrote in between (its event came before the watch).
    const interrupt = new AbortController();
    this.#idleInterrupt = interrupt;
    let sentinel = this.#probeWhileIdle(
      await this.#mutex.run(() => this.#steerIdle(true)),
      opts.probeMs,
      interrupt,
    );
    let first = true;
    const unchanged = () =>
      this.#mutex.run(async () => {
        if (first && this.#idleProbing === false) {
          sentinel = this.#probeWhileIdle(await this.#steerIdle(false), opts.probeMs, interrupt);
        }
        first = false;
        return this.#walUnchanged();
      });
    try {
      return await waitForDirChange(dirname(this.walPath), unchanged, {
        ...opts,
        maxWaitMs,
        file,
        interrupt: interrupt.signal,
      });
    } finally {
      sentinel?.[Symbol.dispose]();
      this.#idleProbing = undefined;
      this.#idleInterrupt = undefined;
    }
  }

  /**
   * Ends the running {@linkcode waitForWalChange}, if any, with "interrupted": the monitor has
   * a reason of its own to look (every replica's lease refused: it stands by).
   */
  interruptIdle(): void {
    this.#idleInterrupt?.abort();
  }

  /**
   * Starts the idle wait's probe as `#steerIdle` decided (none when "quiet"); its finding
   * aborts `interrupt`. While another process's checkpoint runs (its first write woke us) it may
   * soon wait on us: probed often, and the wait also ends when it ends, to steer again.
   */
  #probeWhileIdle(
    steered: "quiet" | "probe" | "checkpointing",
    probeMs: number,
    interrupt: AbortController,
  ): Disposable | undefined {
    this.#idleProbing = steered !== "quiet";
    if (steered === "quiet") return undefined;
    const watch = steered === "checkpointing"
      ? this.#watchCheckpointer(
        ACTIVE_PROBE_MS,
        () => this.checkpointerWaiting() || this.#h?.checkpointerPid() === undefined,
      )
      : this.#watchCheckpointer(probeMs);
    watch?.signal.addEventListener("abort", () => interrupt.abort(), { once: true });
    return watch;
  }

  /**
   * While {@linkcode waitForWalChange} waits: whether it probes for checkpointers (see
   * `#steerIdle`); undefined when no wait runs.
   */
  get idleProbing(): boolean | undefined {
    return this.#idleProbing;
  }

  /**
   * Before an idle wait: "quiet" when no checkpointer can wait on our read transaction without
   * a file event first (`checkpointsCannotWaitUnannounced`), else whether the wait must probe
   * ("probe"), or probe until another process's running checkpoint ends ("checkpointing"). A
   * read transaction that is not so placed is begun again at the WAL's end, hand over hand,
   * which places it unless every read mark is taken; not while another checkpoint runs or a
   * change is yet to be synced, nor without `renew`.
   */
  async #steerIdle(renew: boolean): Promise<"quiet" | "probe" | "checkpointing"> {
    const h = this.#h;
    if (!h?.shm || !h.rtxHeld) return "probe";
    if (!h.checkpointsCannotWaitUnannounced()) {
      if (h.checkpointerPid() !== undefined) return "checkpointing";
      if (!renew || !this.#walUnchanged()) return "probe";
      try {
        await h.renewReadTx();
      } catch (err) {
        // The read held before is still held (renewals begin the new one first): probe.
        this.log.debug("read transaction not moved for idling", { error: err });
        return "probe";
      }
      if (!h.checkpointsCannotWaitUnannounced()) return "probe";
    }
    // Mark 0 lets the application's next commit restart the fully backfilled WAL without us;
    // every frame of it is in the shadow, so that restart loses nothing (see `restartSafe`).
    if (h.readMark === 0 && this.#walUnchanged()) this.#admission.restartSafe(this.#log.shadow!);
    return "quiet";
  }

  /**
   * True when another process runs a checkpoint that waits for readers (FULL, RESTART or
   * TRUNCATE: it holds SQLite's checkpoint lock and its write lock, spec §4.2) while we hold
   * our read transaction. Two `fcntl` calls on the `-shm`; no read of the database.
   */
  checkpointerWaiting(): boolean {
    return !!this.#h?.rtxHeld && this.#h.checkpointerHoldsLocks();
  }

  /**
   * Waits `ms` between two ticks, cut short when another process's checkpoint starts waiting
   * on us while the database is being written, its application ran one lately, or, after a
   * file event woke an idle wait (`woken`), one is running: its first write may be that event.
   * The application's writers wait behind it.
   */
  async pause(ms: number, signal: AbortSignal, woken = false): Promise<void> {
    const look = this.#quietSyncs === 0 || this.#admission.recent ||
      (woken && this.#h?.checkpointerPid() !== undefined);
    using sentinel = look ? this.#watchCheckpointer(ACTIVE_PROBE_MS) : undefined;
    await sleep(ms, sentinel ? AbortSignal.any([signal, sentinel.signal]) : signal);
  }

  /**
   * See `CheckpointAdmission.watch`: `probe` (default: a checkpointer waiting on us) every
   * `periodMs`; undefined where the `-shm` cannot be probed.
   */
  #watchCheckpointer(
    periodMs: number,
    probe: () => boolean = () => this.checkpointerWaiting(),
  ): ({ signal: AbortSignal } & Disposable) | undefined {
    return this.#h?.shm ? this.#admission.watch(probe, periodMs) : undefined;
  }

  /** Path of the shadow WAL file for `index` in `generation`. */
  shadowPath(generation: string, index: number): string {
    return this.#log.shadowPath(generation, index);
  }

  /** One monitor tick: initialise if needed, copy new frames, checkpoint when due, clean up. */
  async sync(): Promise<void> {
    const startedAt = Date.now();
    try {
      await this.#mutex.run(() => this.#sync());
      this.stats.syncs++;
      this.activity.succeeded(true, startedAt);
    } catch (err) {
      this.stats.syncErrors++;
      this.activity.failed(err);
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
        // Blocks of the frame size (4 MiB), which the LZ4 encoder takes without copying them;
        // a smaller database needs no bigger buffer than itself. (fstat: sync, see readAtSync.)
        const size = this.#h!.file.statSync().size;
        const chunk = Math.max(64 * 1024, Math.min(4 * 1024 * 1024, size + 1));
        return await fn(pos, syncReadStream(this.#h!.file, chunk));
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
      if (this.#h) await this.#log.newGeneration(reason);
    });
    this.#announce();
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
      if (this.#heldBack) this.#announce();
      return this.#cleanShadows();
    }
    this.#quietSyncs = 0;
    if (this.#h!.replaced(this.path)) {
      this.log.warn("database file replaced or removed; reopening");
      await this.#closeHandles();
      this.#log.reset();
      if (await this.#init()) await this.#log.newGeneration("database file replaced");
      this.#announce();
      return;
    }
    const conn = this.#h!.conn;
    // Re-taken if a previous sync failed between releasing and re-acquiring it; a restart we
    // let through is then no longer proven to be the only one.
    if (!this.#h!.rtxHeld) this.#admission.forget();
    await this.#h!.acquireReadTx();
    let walHeader = readWalHeaderBytes(this.walPath);
    if (!walHeader) {
      await conn.exec(SEQ_UPSERT); // makes SQLite create a WAL with a header and a frame
      walHeader = readWalHeaderBytes(this.walPath);
    }
    let changed = false;
    const check = this.#log.verify(walHeader, this.pageSize, this.#admission);
    if (check.reason) {
      await this.#log.newGeneration(check.reason);
      changed = true;
    } else if (check.restarted) {
      await this.#h!.withWriteLock(() => this.#log.followRestart());
      changed = true;
    } else {
      changed = await this.#log.copy() > 0;
      if (this.checkpointerWaiting() && this.#snapshots === 0) {
        const admitted = await this.#admission.admit(this.#h!, this.#log.shadow!, this.pageSize);
        if (admitted) this.log.info("let another process's checkpoint through", admitted);
      }
    }
    // A checkpoint due only to time waits one tick after new frames were copied (never two in
    // a row), and while other databases of the process copy theirs (`#checkpointDueIn`), so
    // replicas ship them first: a commit to a thousand idle databases made a thousand
    // time-based checkpoints due at once, and every upload waited behind them.
    if (changed) commitBurst.noted(performance.now(), this.#quietMs);
    const defer = changed && !this.#timeDeferred;
    const mode = this.#snapshots === 0 ? this.#checkpointMode(defer) : undefined;
    this.#timeDeferred = defer && !mode && this.#checkpointDueIn() === 0;
    const announce = changed || opened || this.#heldBack !== undefined;
    // Replicas ship what was just copied while a time-based checkpoint runs, not after it (a
    // commit to a thousand idle databases makes a thousand of them due at once). A checkpoint
    // due to the WAL's size goes first: it copies the frames committed since this sync's copy,
    // and the replicas then ship them with the rest of the index in one segment, not as a
    // second, small one (one a checkpoint: a third of the segments under a steady write load).
    // Not while another process holds the write lock: the checkpoint would wait for it.
    const bySize = mode !== undefined && (defer || this.#checkpointMode(true) !== undefined);
    const checkpointFirst = announce && bySize && !this.#h!.writeLocked();
    const first = announce && !checkpointFirst;
    if (first) this.#announce();
    if (mode) {
      const before = this.#log.pos();
      try {
        await this.#checkpoint(mode);
      } finally {
        // Announced even when the checkpoint failed: it may have copied frames, and the next
        // sync finds the WAL as the shadow left it.
        const after = this.#log.pos();
        // A new index that holds only our `_litestream_seq` frame waits for the next sync:
        // shipping that frame alone would spend the replicas' next upload slot on it, so the
        // commits copied at the next tick would wait for the slot after (most of a sync
        // interval). Commits that reached it during the checkpoint go now.
        const held = after && after.generation === before?.generation &&
            after.index !== before.index &&
            after.offset === WAL_HEADER_SIZE + frameSize(this.pageSize)
          ? { ...after, offset: 0 }
          : undefined;
        if (first) this.#heldBack = held;
        else this.#announce(announce ? held : undefined);
      }
    }
    this.#cleanShadows();
  }

  /** Tells replicas the shadow WAL grew or moved (see `changed`), short of `held` (`shippable`). */
  #announce(held?: Pos): void {
    this.#heldBack = held;
    this.changed.notify();
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
    const shadow = this.#log.shadow;
    return !!shadow && !!this.#h?.rtxHeld && walUnchangedSince(this.walPath, shadow);
  }

  /**
   * Milliseconds until the time-based checkpoint is due (see `checkpointDueIn`), or, once due,
   * until the process's burst of commits is over (see `CommitBurst`).
   */
  #checkpointDueIn(): number | undefined {
    const shadow = this.#log.shadow;
    if (!shadow) return undefined;
    const due = checkpointDueIn(
      this.path,
      this.settings.checkpointInterval,
      shadow.size,
      this.pageSize,
    );
    return due === 0 ? commitBurst.holdMs(performance.now(), this.#quietMs) : due;
  }

  /** See `DbSettings.monitorInterval`. */
  get #quietMs(): number {
    return (this.settings.monitorInterval ?? 0) > 0 ? this.settings.monitorInterval! : 1000;
  }

  /** Opens the database for replication; returns false while it does not exist. */
  async #init(): Promise<boolean> {
    const st = await checkDatabaseFile(this.path);
    if (!st) return false;
    const dirMode = ((await Deno.stat(dirname(this.path))).mode ?? 0o700) & 0o777;
    this.#log.modes = { fileMode: (st.mode ?? 0o600) & 0o777, dirMode };
    await Deno.mkdir(this.metaPath, { recursive: true, mode: dirMode });
    this.#h = await DbHandles.open(
      this.path,
      this.metaPath,
      this.log,
      this.settings.admitCheckpoints ?? true,
    );
    this.pageSize = this.#h.pageSize;
    await this.#log.resume();
    this.log.info("initialized db", { path: this.path, driver: this.#h.conn.driver });
    return true;
  }

  /** Which checkpoint is due, by v0.3.13's policy (spec §4.9); `deferTime` leaves rule 4 out. */
  #checkpointMode(deferTime: boolean): CheckpointMode | undefined {
    const real = statSyncOrUndefined(this.walPath)?.size ?? 0;
    return checkpointModeFor(this.settings, {
      shadow: this.#log.shadow!.size,
      wal: frameAlign(real, this.pageSize),
      frame: frameSize(this.pageSize),
    }, !deferTime && this.#checkpointDueIn() === 0);
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
        const header = readWalHeaderBytes(this.walPath);
        const shadow = this.#log.shadow!;
        if (header && !equalBytes(header, shadow.headerBytes)) {
          if (!this.#admission.isRestart(shadow, header)) return undefined; // the next verify decides
          await this.#log.followRestart();
        }
        await this.#log.copy();
        await h.releaseReadTx();
        let row;
        try {
          row = await h.rtx.queryRow("PRAGMA wal_checkpoint(PASSIVE)");
        } finally {
          await h.acquireReadTx();
        }
        // Everything backfilled and nothing committable meanwhile: our read is on read mark 0.
        if (row && Number(row[0]) === 0 && Number(row[1]) === Number(row[2])) {
          this.#admission.restartSafe(this.#log.shadow!);
        }
        return row;
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
    const header = readWalHeaderBytes(this.walPath);
    if (!header || !equalBytes(header, this.#log.shadow!.headerBytes)) {
      await h.withWriteLock(() => this.#log.followRestart());
    }
  }

  /** Removes shadow WAL files every replica has passed. */
  #cleanShadows(): void {
    this.#log.clean(this.replicas.map((r) => r.refused?.() ? this.pos() : r.pos()));
  }
}
