/**
 * Waiting for changes in one directory with Linux inotify, called through
 * libc. Not `Deno.watchFs`: its watcher thread opens and closes every file
 * an event names, and closing any descriptor of a file drops every POSIX
 * lock the process holds on it, SQLite's included (measured with Deno 2.9.6:
 * an application then restarted the WAL under our read transaction).
 * inotify itself opens nothing.
 *
 * @module
 */

import { LitestreamError } from "../errors.ts";
import { cString, libc } from "./libc.ts";

const IN_NONBLOCK = 0o4000;
const IN_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
/**
 * Everything that can change what a directory's files hold or which files
 * it has; reads, opens and closes after reading are left out. A full event
 * queue is reported (IN_Q_OVERFLOW) whatever the mask.
 */
const IN_CHANGES = 0x2 | // IN_MODIFY
  0x4 | // IN_ATTRIB
  0x8 | // IN_CLOSE_WRITE
  0x40 | // IN_MOVED_FROM
  0x80 | // IN_MOVED_TO
  0x100 | // IN_CREATE
  0x200 | // IN_DELETE
  0x400 | // IN_DELETE_SELF
  0x800 | // IN_MOVE_SELF
  0x01000000; // IN_ONLYDIR
const POLLIN = 0x1;

/** Why inotify cannot be used in this process, or undefined when it can. */
export function inotifyUnavailable(): string | undefined {
  const lib = libc();
  return typeof lib === "string" ? `file-system events: ${lib}` : undefined;
}

/** What ended a {@link DirWatcher.wait}. */
export type WatchWake = "event" | "timeout" | "woken";

/**
 * An inotify watch on one directory (not its subdirectories). Events are
 * never read: once one has arrived, every later `wait` returns "event" at
 * once, which is all a caller that re-checks on every wake needs.
 */
export class DirWatcher {
  readonly #lib;
  readonly #inotify: number;
  readonly #wakeFd: number;
  /** `struct pollfd[2]`: the inotify descriptor, then the eventfd `wake()` writes to. */
  readonly #pollFds = new Uint8Array(16);
  #pending: Promise<number> | undefined;
  #closed = false;

  /**
   * Starts watching `dir`: every change after this returns is seen. Throws a
   * LitestreamError saying why when inotify cannot be had here.
   */
  constructor(readonly dir: string) {
    const lib = libc();
    if (typeof lib === "string") throw new LitestreamError(inotifyUnavailable()!);
    this.#lib = lib;
    this.#inotify = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (this.#inotify < 0) throw new LitestreamError("inotify_init1 failed (inotify limit?)");
    this.#wakeFd = lib.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.#wakeFd < 0 || lib.inotify_add_watch(this.#inotify, cString(dir), IN_CHANGES) < 0) {
      this.#closeFds();
      throw new LitestreamError(`${dir}: cannot watch with inotify (missing, or watch limit)`);
    }
    const dv = new DataView(this.#pollFds.buffer);
    dv.setInt32(0, this.#inotify, true);
    dv.setInt16(4, POLLIN, true);
    dv.setInt32(8, this.#wakeFd, true);
    dv.setInt16(12, POLLIN, true);
  }

  /** Waits up to `ms` for a change (at once if one already arrived) or a `wake()`. */
  async wait(ms: number): Promise<WatchWake> {
    if (this.#closed) return "woken";
    const dv = new DataView(this.#pollFds.buffer);
    dv.setInt16(6, 0, true);
    dv.setInt16(14, 0, true);
    this.#pending = this.#lib.poll(this.#pollFds, 2n, Math.min(Math.ceil(ms), 2 ** 31 - 1));
    const ready = await this.#pending;
    this.#pending = undefined;
    if (dv.getInt16(14, true) !== 0) return "woken";
    // -1 is an interrupted call (EINTR): a wake the caller's re-check makes harmless.
    return ready === 0 ? "timeout" : "event";
  }

  /** Ends the current `wait` (and every later one) with "woken". */
  wake(): void {
    if (this.#closed) return;
    const one = new Uint8Array(8);
    one[0] = 1;
    this.#lib.write(this.#wakeFd, one, 8n);
  }

  /** Ends any wait and releases the descriptors (only after the wait's `poll` has returned). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.wake();
    await this.#pending;
    this.#closed = true;
    this.#closeFds();
  }

  #closeFds(): void {
    if (this.#wakeFd >= 0) this.#lib.close(this.#wakeFd);
    if (this.#inotify >= 0) this.#lib.close(this.#inotify);
  }
}
