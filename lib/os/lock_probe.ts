/**
 * Sees other processes' POSIX advisory locks on a file and reads it, through one descriptor
 * that stays open until {@linkcode LockProbe.close}. Made for SQLite's `-shm` file: closing
 * any descriptor of a file drops every POSIX lock this process holds on it, SQLite's
 * included, so the descriptor is opened once, after SQLite's, and closed only after SQLite's
 * connections are. `fcntl(F_GETLK)` reports only locks of other processes: ours never
 * conflict with ourselves. Linux only, through libc (see `libc.ts`).
 *
 * @module
 */

import { cString, type Libc, libc } from "./libc.ts";

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
/** `F_GETLK` on 64-bit Linux (glibc maps it to `F_GETLK64`, the same number). */
const F_GETLK = 5;
const F_WRLCK = 1;
const F_UNLCK = 2;
/** `struct flock` on 64-bit Linux: short type, short whence, off_t start, off_t len, pid_t pid. */
const FLOCK_SIZE = 32;

/** A lock another process holds: its pid and whether it is exclusive. */
export interface LockHolder {
  pid: number;
  exclusive: boolean;
}

/** One open descriptor for testing other processes' locks on a file and reading it. */
export class LockProbe {
  readonly #lib: Libc;
  #fd: number;
  readonly #flock = new Uint8Array(FLOCK_SIZE);
  readonly #view = new DataView(this.#flock.buffer);

  private constructor(lib: Libc, fd: number) {
    this.#lib = lib;
    this.#fd = fd;
  }

  /**
   * Opens `path` read-only; a string says why it cannot be probed (no FFI, not Linux,
   * the file is missing).
   */
  static open(path: string): LockProbe | string {
    const lib = libc();
    if (typeof lib === "string") return lib;
    const fd = lib.open(cString(path), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return `cannot open ${path}`;
    return new LockProbe(lib, fd);
  }

  /**
   * The first lock another process holds that overlaps bytes `start` to `start+len-1`
   * (any lock conflicts with the exclusive one we ask about), or undefined when none does.
   */
  holder(start: number, len = 1): LockHolder | undefined {
    // Every input field is set (the kernel ignores l_pid), as two 32-bit halves: no BigInt to
    // allocate in a call the sentinel makes for every probed database every second.
    const v = this.#view;
    v.setInt16(0, F_WRLCK, true);
    v.setInt16(2, 0, true); // SEEK_SET
    v.setUint32(8, start % 2 ** 32, true);
    v.setUint32(12, Math.floor(start / 2 ** 32), true);
    v.setUint32(16, len % 2 ** 32, true);
    v.setUint32(20, Math.floor(len / 2 ** 32), true);
    if (this.#lib.fcntl(this.#fd, F_GETLK, this.#flock) !== 0) return undefined;
    const type = v.getInt16(0, true);
    if (type === F_UNLCK) return undefined;
    return { pid: v.getInt32(24, true), exclusive: type === F_WRLCK };
  }

  /** Reads up to `buf.length` bytes at `offset`; returns how many were read (0 past the end). */
  read(buf: Uint8Array, offset: number): number {
    const n = Number(this.#lib.pread(this.#fd, buf, BigInt(buf.length), BigInt(offset)));
    return Math.max(0, n);
  }

  /** Closes the descriptor: only after SQLite's own connections to the file are closed. */
  close(): void {
    if (this.#fd >= 0) this.#lib.close(this.#fd);
    this.#fd = -1;
  }
}
