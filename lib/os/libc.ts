/**
 * The few libc functions called through FFI on Linux: `stat` for
 * nanosecond mtimes, inotify with `eventfd`, `poll` and `read` for
 * waiting on file changes (see `inotify.ts`), and `open`, `fcntl(F_GETLK)` and
 * `pread` for seeing other processes' locks on SQLite's -shm (see `lock_probe.ts`),
 * `fcntl(F_SETLK)`, `pwrite`, `ftruncate`, `lseek` and `fsync` for the follower's writes under SQLite's
 * own locks (see `db_lock.ts`), `malloc_trim` for a long-lived process's footprint, and `getrlimit`/`setrlimit` for the open-file limit (see
 * `rlimit.ts`). Loaded once, on first use, only on Linux
 * and only when `--allow-ffi` is granted; callers fall back otherwise.
 *
 * @module
 */

const SYMBOLS = {
  // glibc before 2.33 exports only __xstat: without it, nanosecond mtimes are not available.
  stat: { parameters: ["buffer", "buffer"], result: "i32", optional: true },
  inotify_init1: { parameters: ["i32"], result: "i32" },
  inotify_add_watch: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  inotify_rm_watch: { parameters: ["i32", "i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // On a thread of its own: it blocks until a descriptor is ready or the timeout passes.
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  // For lock_probe.ts: a descriptor of SQLite's -shm kept open, its locks tested, its header read.
  open: { parameters: ["buffer", "i32"], result: "i32" },
  // Variadic in C; its third argument is a pointer here, passed as for a fixed signature.
  fcntl: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  // For db_lock.ts (the follower): writes through the one descriptor that holds the locks.
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  // On a thread of its own: it waits for the disk.
  fsync: { parameters: ["i32"], result: "i32", nonblocking: true },
  // For rlimit.ts: the open-file limit raised to its hard limit at start-up, as Go's runtime does.
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  // glibc only: gives the C heap's free memory (buffers V8 released) back to the OS.
  malloc_trim: { parameters: ["usize"], result: "i32", optional: true },
  // The calling thread's errno: read right after a failed call on the same (JS) thread.
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/** The loaded library. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let loaded: Libc | string | undefined;

/** libc's functions, or why they cannot be had here (not Linux, no `--allow-ffi`, no glibc). */
export function libc(): Libc | string {
  if (loaded !== undefined) return loaded;
  if (Deno.build.os !== "linux") {
    loaded = `not available on ${Deno.build.os}`;
  } else if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    loaded = "needs --allow-ffi";
  } else {
    try {
      loaded = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
    } catch (err) {
      loaded = `cannot load libc.so.6: ${(err as Error).message}`;
    }
  }
  return loaded;
}

/** errno of the last failed call made on this thread (not valid after a `nonblocking` call). */
export function errno(lib: Libc): number {
  const where = lib.__errno_location();
  return where ? new Deno.UnsafePointerView(where).getInt32() : 0;
}

const encoder = new TextEncoder();

/** `path` as the NUL-terminated bytes C functions take. */
export function cString(path: string): Uint8Array {
  return encoder.encode(path + "\0");
}

/**
 * Gives the C heap's free memory back to the OS (glibc's `malloc_trim`), where there is one.
 * glibc keeps memory freed by V8's buffers mapped for reuse: a long-lived process that handles a
 * few MB every second would otherwise keep its peak footprint for good.
 */
export function trimNativeHeap(): void {
  const lib = libc();
  if (typeof lib !== "string") lib.malloc_trim?.(0n);
}
