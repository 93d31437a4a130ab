/**
 * Waiting for changes in directories with Linux inotify, called through
 * libc. Not `Deno.watchFs`: its watcher thread opens and closes every file
 * an event names, and closing any descriptor of a file drops every POSIX
 * lock the process holds on it, SQLite's included (measured with Deno 2.9.6:
 * an application then restarted the WAL under our read transaction).
 * inotify itself opens nothing.
 *
 * The whole process shares one inotify instance and one reader of it
 * ({@link sharedInotify}), with one watch per directory however many
 * waiters it has: a user may hold only 128 instances
 * (`/proc/sys/fs/inotify/max_user_instances`), and one per database took
 * them all from the application beside us. The instance opens on the first
 * watch and closes when the last waiter leaves.
 *
 * @module
 */

import type { DirWatch, WatchWake } from "./watch.ts";
import { LitestreamError } from "../errors.ts";
import { cString, errno, type Libc, libc } from "./libc.ts";

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
const IN_Q_OVERFLOW = 0x4000;
/** The watch is gone: its directory was removed or unmounted (or we removed the watch). */
const IN_IGNORED = 0x8000;
const POLLIN = 0x1;
/** `struct inotify_event` without its name: wd, mask, cookie, len. */
const EVENT_HEADER = 16;
const ENOENT = 2;
const EACCES = 13;
const ENOTDIR = 20;
const EMFILE = 24;
const ENOSPC = 28;

const WATCH_LIMIT = "/proc/sys/fs/inotify/max_user_watches";
const INSTANCE_LIMIT = "/proc/sys/fs/inotify/max_user_instances";

/** Why inotify cannot be used in this process, or undefined when it can. */
export function inotifyUnavailable(): string | undefined {
  const lib = libc();
  return typeof lib === "string" ? `file-system events: ${lib}` : undefined;
}

/**
 * Thrown by {@link Inotify.watch} when the user's inotify watches have run
 * out. `first` is true for the first such error in the process, so that the
 * limit to raise is reported once, not once per database.
 */
export class WatchLimitError extends LitestreamError {
  /** Wraps `message`; `first` as described on the class. */
  constructor(message: string, readonly first: boolean) {
    super(message);
  }
}

/**
 * Which events wake a waiter: a database's file name (events that may change it or its `-`
 * companions: not {@link IN_NO_CONTENT_CHANGE}), or a predicate on each event's name and mask
 * (the `IN_*` bits, `IN_ISDIR` for directories).
 */
export type WatchFilter = string | ((name: string, mask: number) => boolean);

/**
 * `IN_ATTRIB | IN_CLOSE_WRITE`: a file's descriptor closed or its attributes set, its contents
 * not changed. An application raises these by only opening and closing a database (SQLite run
 * as root gives the `-wal` and `-shm` it opens to the database's owner); a commit always writes.
 */
export const IN_NO_CONTENT_CHANGE = 0x4 | 0x8;

/** `IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO`: a name appeared or went away. */
export const IN_NAME_CHANGES = 0x100 | 0x200 | 0x40 | 0x80;
/** The event is about a subdirectory. */
export const IN_ISDIR = 0x40000000;

/** Options of {@link Inotify}. */
export interface InotifyOptions {
  /** For tests: a lower cap on watched directories than the kernel's; reaching it acts as ENOSPC. */
  maxWatches?: number;
}

/** One inotify instance and its reader, shared by every waiter (see the module doc). */
export class Inotify {
  #fd = -1;
  /** An eventfd that ends the reader's `poll`, to let it close the instance. */
  #wakeFd = -1;
  /** Waiters by watch descriptor: one watch per directory. */
  readonly #watches = new Map<number, Set<Waiter>>();
  #reading = false;
  /** Resolved after the reader's next turn (see `DirWatch.close`). */
  #turn: PromiseWithResolvers<void> | undefined;
  #limitReported = false;
  /** `struct pollfd[2]`: the inotify descriptor, then the eventfd. */
  readonly #pollFds = new Uint8Array(16);
  #events: Uint8Array | undefined;

  /** Opens nothing yet: the instance is created by the first `watch`. */
  constructor(readonly options: InotifyOptions = {}) {}

  /** Whether the inotify instance is open. */
  get isOpen(): boolean {
    return this.#fd >= 0;
  }

  /** How many directories are watched. */
  get watchedDirs(): number {
    return this.#watches.size;
  }

  /**
   * Starts watching `dir` (not its subdirectories): every change after this
   * returns is seen. With a `filter`, only the events it accepts wake this waiter
   * (see {@link WatchFilter}; events about the directory itself and queue
   * overflows wake every one). Throws a LitestreamError
   * saying why when inotify cannot be had here, a {@link WatchLimitError}
   * when the watches have run out.
   */
  watch(dir: string, filter?: WatchFilter): DirWatch {
    const lib = libc();
    if (typeof lib === "string") throw new LitestreamError(inotifyUnavailable()!);
    if (this.#fd < 0) this.#open(lib);
    let wd = lib.inotify_add_watch(this.#fd, cString(dir), IN_CHANGES);
    const failure = wd < 0 ? errno(lib) : 0;
    if (
      wd >= 0 && !this.#watches.has(wd) &&
      this.#watches.size >= (this.options.maxWatches ?? Infinity)
    ) {
      lib.inotify_rm_watch(this.#fd, wd);
      wd = -1;
    }
    if (wd < 0) {
      if (!this.#reading) this.#close(lib);
      throw this.#watchError(dir, failure || ENOSPC);
    }
    let waiters = this.#watches.get(wd);
    if (!waiters) this.#watches.set(wd, waiters = new Set());
    const waiter = new Waiter(filter, (w) => this.#leave(lib, wd, w));
    waiters.add(waiter);
    if (!this.#reading) this.#read(lib);
    return waiter;
  }

  #open(lib: Libc): void {
    this.#fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (this.#fd < 0) {
      const failure = errno(lib);
      throw new LitestreamError(
        failure === EMFILE
          ? `inotify instances ran out; raise ${INSTANCE_LIMIT}`
          : `inotify_init1 failed (errno ${failure})`,
      );
    }
    this.#wakeFd = lib.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.#wakeFd < 0) {
      this.#close(lib);
      throw new LitestreamError("eventfd failed");
    }
    const dv = new DataView(this.#pollFds.buffer);
    dv.setInt32(0, this.#fd, true);
    dv.setInt16(4, POLLIN, true);
    dv.setInt32(8, this.#wakeFd, true);
    dv.setInt16(12, POLLIN, true);
  }

  #close(lib: Libc): void {
    if (this.#wakeFd >= 0) lib.close(this.#wakeFd);
    if (this.#fd >= 0) lib.close(this.#fd);
    this.#fd = this.#wakeFd = -1;
    this.#events = undefined;
  }

  #watchError(dir: string, failure: number): LitestreamError {
    if (failure === ENOSPC) {
      const first = !this.#limitReported;
      this.#limitReported = true;
      return new WatchLimitError(
        `${dir}: inotify watches ran out; raise ${WATCH_LIMIT} (databases without a watch poll)`,
        first,
      );
    }
    const why = failure === ENOENT || failure === ENOTDIR
      ? "missing"
      : failure === EACCES
      ? "permission denied"
      : `errno ${failure}`;
    return new LitestreamError(`${dir}: cannot watch with inotify (${why})`);
  }

  /** Removes `waiter`; its directory's watch goes with its last waiter. */
  #leave(lib: Libc, wd: number, waiter: Waiter): Promise<void> {
    const waiters = this.#watches.get(wd);
    if (!waiters?.delete(waiter) || waiters.size > 0) return Promise.resolve();
    this.#watches.delete(wd);
    lib.inotify_rm_watch(this.#fd, wd);
    if (this.#watches.size > 0) return Promise.resolve();
    this.#turn ??= Promise.withResolvers();
    const one = new Uint8Array(8);
    one[0] = 1;
    lib.write(this.#wakeFd, one, 8n);
    return this.#turn.promise;
  }

  /** The one reader: waits for events (on a thread of its own) and hands them out, until no watch is left. */
  async #read(lib: Libc): Promise<void> {
    this.#reading = true;
    const dv = new DataView(this.#pollFds.buffer);
    const counter = new Uint8Array(8);
    this.#events ??= new Uint8Array(16 * 1024);
    while (this.#watches.size > 0) {
      dv.setInt16(6, 0, true);
      dv.setInt16(14, 0, true);
      // -1 is an interrupted call (EINTR): the loop simply polls again.
      await lib.poll(this.#pollFds, 2n, -1);
      if (dv.getInt16(14, true) !== 0) lib.read(this.#wakeFd, counter, 8n);
      if (dv.getInt16(6, true) !== 0) {
        const n = Number(lib.read(this.#fd, this.#events, BigInt(this.#events.length)));
        if (n > 0) this.#dispatch(this.#events, n);
      }
      if (this.#watches.size > 0) this.#endTurn();
    }
    this.#close(lib);
    this.#reading = false;
    this.#endTurn();
  }

  #endTurn(): void {
    const turn = this.#turn;
    this.#turn = undefined;
    turn?.resolve();
  }

  /** Wakes the waiters each event in `buf[0, n)` concerns. */
  #dispatch(buf: Uint8Array, n: number): void {
    const dv = new DataView(buf.buffer, buf.byteOffset, n);
    for (let at = 0; at + EVENT_HEADER <= n;) {
      const wd = dv.getInt32(at, true);
      const mask = dv.getUint32(at + 4, true);
      const len = dv.getUint32(at + 12, true);
      const name = len > 0 ? cName(buf.subarray(at + EVENT_HEADER, at + EVENT_HEADER + len)) : "";
      at += EVENT_HEADER + len;
      if (mask & IN_Q_OVERFLOW) {
        for (const waiters of this.#watches.values()) for (const w of waiters) w.notify();
        continue;
      }
      const waiters = this.#watches.get(wd);
      if (!waiters) continue; // a watch removed since
      for (const w of waiters) if (name === "" || w.concerns(name, mask)) w.notify();
      // The directory is gone: its waiters were told; a later `watch` adds it afresh.
      if (mask & IN_IGNORED) this.#watches.delete(wd);
    }
  }
}

const decoder = new TextDecoder();

/** A NUL-padded C string. */
function cName(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return decoder.decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/** A {@link DirWatch}: a flag, at most one timer while waiting, and how to leave. */
class Waiter implements DirWatch {
  #fired = false;
  #woken = false;
  #closed: Promise<void> | undefined;
  #settle: ((wake: WatchWake) => void) | undefined;
  readonly #companions: string | undefined;

  constructor(
    readonly filter: WatchFilter | undefined,
    readonly leave: (waiter: Waiter) => Promise<void>,
  ) {
    this.#companions = typeof filter === "string" ? `${filter}-` : undefined;
  }

  /** Whether an event naming `name` with `mask` concerns this waiter. */
  concerns(name: string, mask: number): boolean {
    const f = this.filter;
    if (f === undefined) return true;
    if (typeof f === "function") return f(name, mask);
    return (name === f || name.startsWith(this.#companions!)) && !(mask & IN_NO_CONTENT_CHANGE);
  }

  /** Records an event and ends the current wait with it. */
  notify(): void {
    this.#fired = true;
    this.#settle?.("event");
  }

  wait(ms: number): Promise<WatchWake> {
    if (this.#woken || this.#closed) return Promise.resolve("woken");
    if (this.#fired) return Promise.resolve("event");
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => this.#settle?.("timeout"),
        Math.min(Math.ceil(ms), 2 ** 31 - 1),
      );
      this.#settle = (wake) => {
        clearTimeout(timer);
        this.#settle = undefined;
        resolve(wake);
      };
    });
  }

  rearm(): void {
    this.#fired = false;
  }

  wake(): void {
    this.#woken = true;
    this.#settle?.("woken");
  }

  close(): Promise<void> {
    this.wake();
    return this.#closed ??= this.leave(this);
  }
}

/** The process's inotify instance (see the module doc). */
export const sharedInotify: Inotify = new Inotify();
