/**
 * A database file written under SQLite's own locks, as another SQLite process would: POSIX
 * advisory locks on the lock bytes at 0x40000000 (the unix VFS's PENDING byte, RESERVED byte
 * and SHARED range). Holding PENDING, RESERVED and the SHARED range with write locks is
 * SQLite's EXCLUSIVE lock: no reader holds or can take a SHARED lock meanwhile, so pages
 * written under it appear to readers all at once. RESERVED alone lets readers read while a
 * writer prepares its rollback journal.
 *
 * Every read, write and lock goes through one descriptor opened with libc: closing any
 * descriptor of a file drops every POSIX lock the process holds on it, so the file is never
 * opened a second time while this one is open. Locks are only ever tried (`F_SETLK`), with a
 * short back-off, never waited for in the kernel: the event loop keeps running.
 *
 * @module
 */

import { cString, errno, type Libc, libc } from "./libc.ts";
import { LitestreamError } from "../errors.ts";
import { sleep } from "./async.ts";

const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const F_GETLK = 5;
const F_SETLK = 6;
const F_WRLCK = 1;
const F_UNLCK = 2;
const EACCES = 13;
const EAGAIN = 11;
/** `struct flock` on 64-bit Linux: short type, short whence, off_t start, off_t len, pid_t pid. */
const FLOCK_SIZE = 32;
const SEEK_END = 2;

/** SQLite's PENDING byte (unix VFS, default `sqlite3_pending_byte`). */
export const PENDING_BYTE = 0x40000000;
/** SQLite's RESERVED byte. */
export const RESERVED_BYTE = PENDING_BYTE + 1;
/** First byte of SQLite's SHARED range. */
export const SHARED_FIRST = PENDING_BYTE + 2;
/** Length of SQLite's SHARED range. */
export const SHARED_SIZE = 510;

/** How a lock wait is reported: how long it has lasted and who holds the lock, when known. */
export type LockWaitReport = (waitedMs: number, holderPid: number | undefined) => void;

/** One read-write descriptor of a database file, its exclusive lock taken and released at will. */
export class DbFile {
  readonly #lib: Libc;
  #fd: number;
  readonly #flock = new Uint8Array(FLOCK_SIZE);
  readonly #view = new DataView(this.#flock.buffer);
  #locked = false;
  #reserved = false;

  private constructor(lib: Libc, fd: number, readonly path: string) {
    this.#lib = lib;
    this.#fd = fd;
  }

  /** Opens `path` read-write; throws naming the file, or what is missing (FFI, Linux). */
  static open(path: string): DbFile {
    const lib = libc();
    if (typeof lib === "string") {
      throw new LitestreamError(`cannot lock ${path} as SQLite does: libc ${lib}`);
    }
    const fd = lib.open(cString(path), O_RDWR | O_CLOEXEC);
    if (fd < 0) throw new LitestreamError(`cannot open ${path}: errno ${errno(lib)}`);
    return new DbFile(lib, fd, path);
  }

  /** True while this descriptor holds the exclusive lock. */
  get locked(): boolean {
    return this.#locked;
  }

  /** True while this descriptor holds the RESERVED lock (or the exclusive one). */
  get reserved(): boolean {
    return this.#reserved;
  }

  /**
   * Takes SQLite's RESERVED lock: readers keep reading, but no other process may start writing,
   * and a rollback journal beside the database is not "hot" to them. Returns false only when
   * `signal` aborts first.
   */
  async reserve(
    signal?: AbortSignal,
    report?: LockWaitReport,
    reportEveryMs = 1000,
  ): Promise<boolean> {
    if (this.#reserved) return true;
    if (!await this.#wait(RESERVED_BYTE, 1, signal, report, reportEveryMs)) return false;
    this.#reserved = true;
    return true;
  }

  /**
   * Takes SQLite's EXCLUSIVE lock, as SQLite does: RESERVED, then the PENDING byte (new readers
   * then wait in their busy handler), then the SHARED range once readers in a transaction are
   * done. Retries every few milliseconds; `report` is called each time the wait passes another
   * `reportEveryMs`. Returns false only when `signal` aborts first (RESERVED, when this call
   * took it, is released again).
   */
  async lock(
    signal?: AbortSignal,
    report?: LockWaitReport,
    reportEveryMs = 1000,
  ): Promise<boolean> {
    if (this.#locked) return true;
    const hadReserved = this.#reserved;
    if (!await this.reserve(signal, report, reportEveryMs)) return false;
    if (
      !await this.#wait(PENDING_BYTE, 1, signal, report, reportEveryMs) ||
      !await this.#wait(SHARED_FIRST, SHARED_SIZE, signal, report, reportEveryMs)
    ) {
      this.#set(F_UNLCK, PENDING_BYTE, 1);
      this.#set(F_UNLCK, SHARED_FIRST, SHARED_SIZE);
      if (!hadReserved) this.unlock();
      return false;
    }
    this.#locked = true;
    return true;
  }

  /**
   * Drops the EXCLUSIVE lock back to RESERVED, as SQLite does after a commit in WAL-less modes:
   * readers may take SHARED again, no other process may start writing, and a rollback journal
   * beside the database stays not hot.
   */
  downgrade(): void {
    if (!this.#locked) return;
    this.#set(F_UNLCK, PENDING_BYTE, 1);
    this.#set(F_UNLCK, SHARED_FIRST, SHARED_SIZE);
    this.#locked = false;
  }

  /** Releases every lock this descriptor holds (EXCLUSIVE or RESERVED). */
  unlock(): void {
    if (!this.#reserved && !this.#locked) return;
    this.#set(F_UNLCK, PENDING_BYTE, 2 + SHARED_SIZE);
    this.#locked = false;
    this.#reserved = false;
  }

  /** Waits for a write lock on the bytes, trying every few milliseconds; false when aborted. */
  async #wait(
    start: number,
    len: number,
    signal: AbortSignal | undefined,
    report: LockWaitReport | undefined,
    reportEveryMs: number,
  ): Promise<boolean> {
    const started = performance.now();
    let nextReport = reportEveryMs;
    let delay = 1;
    while (!this.#set(F_WRLCK, start, len)) {
      if (signal?.aborted) return false;
      const waited = performance.now() - started;
      if (report && waited >= nextReport) {
        nextReport += reportEveryMs;
        report(waited, this.holder(start, len));
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 20);
    }
    return true;
  }

  /** The pid of another process holding a lock over the bytes, or undefined. */
  holder(start: number, len: number): number | undefined {
    this.#fill(F_WRLCK, start, len);
    if (this.#lib.fcntl(this.#fd, F_GETLK, this.#flock) !== 0) return undefined;
    return this.#view.getInt16(0, true) === F_UNLCK ? undefined : this.#view.getInt32(24, true);
  }

  /** Reads up to `buf.length` bytes at `offset`; returns how many were read. */
  read(buf: Uint8Array, offset: number): number {
    const n = Number(this.#lib.pread(this.#fd, buf, BigInt(buf.length), BigInt(offset)));
    if (n < 0) throw this.#error("read");
    return n;
  }

  /** Writes all of `data` at `offset`. */
  write(data: Uint8Array, offset: number): void {
    let done = 0;
    while (done < data.length) {
      const part = data.subarray(done);
      const n = Number(
        this.#lib.pwrite(this.#fd, part, BigInt(part.length), BigInt(offset + done)),
      );
      if (n <= 0) throw this.#error("write");
      done += n;
    }
  }

  /** The file's size in bytes. */
  size(): number {
    const n = Number(this.#lib.lseek(this.#fd, 0n, SEEK_END));
    if (n < 0) throw this.#error("stat");
    return n;
  }

  /** Sets the file's size. */
  truncate(size: number): void {
    if (this.#lib.ftruncate(this.#fd, BigInt(size)) !== 0) throw this.#error("truncate");
  }

  /** Flushes the file to disk (on another thread). */
  async sync(): Promise<void> {
    if (await this.#lib.fsync(this.#fd) !== 0) {
      throw new LitestreamError(`cannot sync ${this.path}`);
    }
  }

  /** Releases the lock and closes the descriptor. */
  close(): void {
    this.unlock();
    if (this.#fd >= 0) this.#lib.close(this.#fd);
    this.#fd = -1;
  }

  #fill(type: number, start: number, len: number): void {
    this.#flock.fill(0);
    this.#view.setInt16(0, type, true);
    this.#view.setInt16(2, 0, true); // SEEK_SET
    this.#view.setBigInt64(8, BigInt(start), true);
    this.#view.setBigInt64(16, BigInt(len), true);
  }

  /** Tries a lock change; false when another process's lock conflicts. */
  #set(type: number, start: number, len: number): boolean {
    this.#fill(type, start, len);
    if (this.#lib.fcntl(this.#fd, F_SETLK, this.#flock) === 0) return true;
    const e = errno(this.#lib);
    if (e === EAGAIN || e === EACCES) return false;
    throw new LitestreamError(`cannot lock ${this.path}: errno ${e}`);
  }

  #error(op: string): LitestreamError {
    return new LitestreamError(`cannot ${op} ${this.path}: errno ${errno(this.#lib)}`);
  }
}
