/**
 * What replicating one database holds open, opened together and closed in the one safe
 * order: the meta directory's lock, two SQLite connections (one for our writes and
 * checkpoints, one for the long read transaction that keeps other connections from
 * checkpointing past us, spec §4.2), a descriptor of the database file and one of its
 * `-shm`. POSIX locks belong to the process, and closing any descriptor of a file drops all
 * of them, SQLite's included (spec §10.1): our descriptors close only after SQLite's.
 *
 * @module
 */

import { join } from "node:path";
import { LitestreamError } from "../errors.ts";
import { readAt, statSyncOrUndefined } from "../os/fs.ts";
import { equalBytes } from "../os/bytes.ts";
import { decodeDbHeader } from "../sqlite/header.ts";
import type { Logger } from "../log.ts";
import { LockProbe } from "../os/lock_probe.ts";
import { holdFile } from "../os/held_files.ts";
import {
  decodeWalIndex,
  SHM_CKPT_LOCK,
  SHM_WRITE_LOCK,
  WAL_INDEX_READ_SIZE,
  type WalIndexState,
} from "../sqlite/shm.ts";
import { type Database as Sqlite, openDatabase } from "../sqlite/driver.ts";

/**
 * Another process holds the database's meta directory lock: it replicates the database, and
 * this one waits (retrying on each tick) until it stops.
 */
export class MetaLockedError extends LitestreamError {}

/** The open handles of one replicated database. */
export class DbHandles {
  #rtxHeld = false;
  /**
   * The read mark our read transaction holds, as far as the WAL-index showed it when the
   * transaction began (see {@linkcode readMarkTaken}); undefined when unknown.
   */
  #readMark: number | undefined;

  private constructor(
    /** Our writes (`_litestream_seq`, the write lock) and checkpoints. */
    readonly conn: Sqlite,
    /**
     * The connections of the long read transaction: the first holds it; a second, opened when a
     * checkpoint is first let through or the database first idles, takes it over without a
     * moment unheld (`renewReadTx`).
     */
    readonly readers: Sqlite[],
    readonly path: string,
    /** The database file, for snapshots: read with sync calls only (see `readAtSync`). */
    readonly file: Deno.FsFile,
    readonly pageSize: number,
    readonly lock: Deno.FsFile,
    /**
     * Other processes' locks on the `-shm`, to see an application's checkpoint waiting on
     * our read transaction. Undefined without FFI: such checkpoints then wait, as with v0.3.13.
     */
    readonly shm: LockProbe | undefined,
    /** Ends this process's note that `file` carries SQLite's locks (see `held_files.ts`). */
    readonly unhold: () => void,
  ) {}

  /**
   * Takes the meta directory's lock, opens both connections (WAL mode, persist-WAL, no
   * auto-checkpoint, the helper tables), begins the read transaction and opens the
   * descriptors; on failure closes whatever it opened. `admitCheckpoints` false opens no
   * `-shm` probe, so other processes' checkpoints wait for ours (`DbSettings.admitCheckpoints`).
   */
  static async open(
    path: string,
    metaPath: string,
    log: Logger,
    admitCheckpoints: boolean,
  ): Promise<DbHandles> {
    const lock = lockMeta(metaPath);
    if (!lock) {
      throw new MetaLockedError(
        `${path}: another litestream process is replicating this database (${metaPath}/lock); ` +
          "this one takes over when it stops",
      );
    }
    const opened: { close(): unknown }[] = [lock];
    try {
      const conn = await openConnection(path);
      opened.unshift(conn);
      const reader = await openConnection(path);
      opened.unshift(reader);
      if (!conn.canPersistWal) {
        log.warn(
          "sqlite driver cannot keep the WAL on close; a restart may begin a new generation",
          {
            driver: conn.driver,
          },
        );
      }
      const [mode] = await conn.queryRow("PRAGMA journal_mode") ?? [];
      if (mode !== "wal") {
        const [now] = await conn.queryRow("PRAGMA journal_mode = wal") ?? [];
        if (now !== "wal") {
          throw new LitestreamError(`${path}: enable wal failed (journal mode is ${now})`);
        }
        log.info("switched database to WAL journal mode", { from: mode });
      }
      await conn.exec(
        "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)",
      );
      await conn.exec("CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER)");
      // Closed after every connection: closing them drops the process's locks on the files.
      const file = await Deno.open(path, { read: true });
      opened.splice(opened.indexOf(lock), 0, file);
      const unhold = holdFile(file);
      opened.unshift({ close: unhold });
      // After SQLite opened the -shm (our connections did, reading the database in WAL mode).
      const shm = admitCheckpoints
        ? LockProbe.open(`${path}-shm`)
        : "LITESTREAM_ADMIT_CHECKPOINTS=0";
      if (typeof shm === "string") {
        log.debug("other processes' checkpoints wait for ours", { reason: shm });
      } else opened.splice(opened.indexOf(lock), 0, shm);
      const pageSize = Number((await conn.queryRow("PRAGMA page_size"))![0]);
      const handles = new DbHandles(
        conn,
        [reader],
        path,
        file,
        pageSize,
        lock,
        typeof shm === "string" ? undefined : shm,
        unhold,
      );
      await handles.acquireReadTx();
      return handles;
    } catch (err) {
      for (const h of opened) await Promise.resolve(h.close()).catch(() => {});
      throw err;
    }
  }

  /** The connection holding the long read transaction. */
  get rtx(): Sqlite {
    return this.readers[0];
  }

  /** True while the read transaction is held. */
  get rtxHeld(): boolean {
    return this.#rtxHeld;
  }

  /** Begins the long read transaction (a no-op while held). */
  async acquireReadTx(): Promise<void> {
    if (this.#rtxHeld) return;
    await this.#begin(this.rtx);
    this.#rtxHeld = true;
  }

  /** The read mark of the read transaction (see `readMarkTaken`); undefined when unknown. */
  get readMark(): number | undefined {
    return this.#rtxHeld ? this.#readMark : undefined;
  }

  /** Ends the long read transaction. */
  async releaseReadTx(): Promise<void> {
    this.#rtxHeld = false;
    this.#readMark = undefined;
    await this.rtx.exec("ROLLBACK");
  }

  /** Begins a read transaction on `db`, noting the read mark it took. */
  async #begin(db: Sqlite): Promise<void> {
    const before = this.walIndex();
    await beginRead(db);
    this.#readMark = readMarkTaken(before, this.walIndex());
  }

  /**
   * True when no other process's checkpoint can wait on our read transaction without first
   * writing to the database file, which raises a file event (spec §4.2, SQLite's
   * `walCheckpoint`): a checkpointer waits for mark 0 only to backfill frames, and for a mark
   * above 0 only when it is below the WAL's end (to backfill past it) or, for RESTART and
   * TRUNCATE, after it backfilled. So it is safe to hold mark 0 of a fully backfilled WAL, or
   * the WAL's last frame as mark while frames are left to backfill. One read of the `-shm`.
   */
  checkpointsCannotWaitUnannounced(): boolean {
    if (!this.#rtxHeld || this.#readMark === undefined) return false;
    const now = this.walIndex();
    if (!now) return false;
    if (this.#readMark === 0) return now.nBackfill === now.mxFrame;
    return this.#readMark === now.mxFrame && now.nBackfill < now.mxFrame;
  }

  /**
   * Begins the read transaction again, at the WAL's current end, hand over hand: the second
   * reader begins before the first ends, so the WAL is never unpinned. (Ending and beginning on
   * one connection leaves a gap of several event-loop turns, through which another process
   * could restart the WAL, commit, backfill and restart it again.)
   */
  async renewReadTx(): Promise<void> {
    if (!this.#rtxHeld) return await this.acquireReadTx();
    // Opened here, not with the others: most databases never need it.
    if (this.readers.length === 1) this.readers.push(await openConnection(this.path));
    const [held, next] = this.readers;
    await this.#begin(next);
    this.readers.reverse();
    this.#rtxHeld = true;
    await held.exec("ROLLBACK");
  }

  /** Runs `fn` while holding SQLite's write lock (an uncommitted insert into `_litestream_lock`). */
  async withWriteLock<T>(fn: () => Promise<T>): Promise<T> {
    await this.conn.exec("BEGIN");
    try {
      await this.conn.exec("INSERT INTO _litestream_lock (id) VALUES (1)");
      return await fn();
    } finally {
      await this.conn.exec("ROLLBACK");
    }
  }

  /**
   * True when another process runs a checkpoint that waits for readers (FULL, RESTART or
   * TRUNCATE: it holds SQLite's checkpoint lock and its write lock). Two `fcntl` calls.
   */
  checkpointerHoldsLocks(): boolean {
    const ckpt = this.shm?.holder(SHM_CKPT_LOCK);
    if (!ckpt?.exclusive) return false;
    const write = this.shm!.holder(SHM_WRITE_LOCK);
    return write?.exclusive === true && write.pid === ckpt.pid;
  }

  /** True when another process holds SQLite's write lock (a writer mid-transaction). One `fcntl`. */
  writeLocked(): boolean {
    return this.shm?.holder(SHM_WRITE_LOCK) !== undefined;
  }

  /** The pid of the process holding the checkpoint lock, if any. */
  checkpointerPid(): number | undefined {
    return this.shm?.holder(SHM_CKPT_LOCK)?.pid;
  }

  /** The WAL-index header, read again while a writer is updating it. */
  walIndex(): WalIndexState | undefined {
    if (!this.shm) return undefined;
    const buf = new Uint8Array(WAL_INDEX_READ_SIZE);
    for (let i = 0; i < 3; i++) {
      const state = decodeWalIndex(buf.subarray(0, this.shm.read(buf, 0)));
      if (state) return state;
    }
    return undefined;
  }

  /** True when `path` no longer names the file we have open (replaced by a rename, or removed). */
  replaced(path: string): boolean {
    // A stat by path opens nothing; sync, as are the monitor's other per-commit calls.
    const st = statSyncOrUndefined(path);
    // Sync fstat: an async one would drop SQLite's locks (see readAtSync).
    const ino = this.file.statSync().ino;
    return !st || (st.ino !== null && ino !== null && st.ino !== ino);
  }

  /** Ends the read transaction and closes everything, SQLite's connections first. */
  async close(): Promise<void> {
    await this.releaseReadTx().catch(() => {});
    for (const r of this.readers) await r.close();
    await this.conn.close();
    // Only after SQLite has closed: closing these releases the process's locks on the files.
    this.shm?.close();
    this.unhold();
    this.file.close();
    this.lock.close();
  }
}

/**
 * Opens a connection of ours: WAL kept on close (persist-WAL), no auto-checkpoint, a one-page
 * cache.
 */
async function openConnection(path: string): Promise<Sqlite> {
  const db = await openDatabase(path, { busyTimeoutMs: 1000 });
  try {
    if (db.canPersistWal) await db.setPersistWal(true);
    await db.exec("PRAGMA wal_autocheckpoint = 0");
    // Our statements read a page or two, and another process's commit voids the cache anyway:
    // pages are freed as soon as a statement lets go of them, not kept (the two connections of
    // a thousand databases held some 13 MB of them). Spilling stays off, so our own small write
    // transactions still reach the WAL only at commit, as with the default cache.
    await db.exec("PRAGMA cache_size = 1; PRAGMA cache_spill = OFF");
    return db;
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

/**
 * The read mark a read transaction took, from the WAL-index read just `before` and `after` it
 * began; undefined unless both show the same WAL. SQLite's `walTryBeginRead` reads the
 * database file alone (mark 0) when the WAL is fully backfilled; otherwise it takes a mark at
 * the WAL's last frame, and a lower one only when every mark is in use by other readers. So:
 * 0, the last frame when some mark holds it, else undefined. (Mark 0 can be refused while a
 * recovery holds every lock; a WAL-index rewritten meanwhile then differs `after`.)
 */
export function readMarkTaken(
  before: WalIndexState | undefined,
  after: WalIndexState | undefined,
): number | undefined {
  if (!before || !after) return undefined;
  if (
    before.mxFrame !== after.mxFrame || before.nBackfill !== after.nBackfill ||
    !equalBytes(before.salt, after.salt)
  ) return undefined;
  if (after.nBackfill === after.mxFrame) return 0;
  return after.readMarks.slice(1).includes(after.mxFrame) ? after.mxFrame : undefined;
}

/** Begins a read transaction on `db` and takes its read mark (a read of the WAL's snapshot). */
async function beginRead(db: Sqlite): Promise<void> {
  await db.exec("BEGIN");
  try {
    await db.queryRow("SELECT COUNT(1) FROM _litestream_seq");
  } catch (err) {
    await db.exec("ROLLBACK").catch(() => {});
    throw err;
  }
}

/** Takes the meta directory's lock without waiting; undefined when another process holds it. */
export function lockMeta(metaPath: string): Deno.FsFile | undefined {
  const file = Deno.openSync(join(metaPath, "lock"), { read: true, write: true, create: true });
  if (file.tryLockSync(true)) return file;
  file.close();
  return undefined;
}

/**
 * Checks a database path before SQLite opens it: undefined when it does not
 * exist yet, an error naming it when it is a directory or not an SQLite
 * database. Opening and closing the file here is safe only because no SQLite
 * connection of this process has it open yet (see `readAtSync`).
 */
export async function checkDatabaseFile(path: string): Promise<Deno.FileInfo | undefined> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  if (st.isDirectory) throw new LitestreamError(`${path}: is a directory, not a database`);
  if (st.size === 0) return st; // SQLite writes the header on first use
  const file = await Deno.open(path, { read: true });
  try {
    const head = new Uint8Array(100);
    const header = decodeDbHeader(head.subarray(0, await readAt(file, 0, head)));
    if (typeof header === "string") throw new LitestreamError(`${path}: ${header}`);
  } finally {
    file.close();
  }
  return st;
}
