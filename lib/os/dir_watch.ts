/**
 * Waiting for a directory's contents to change without polling them, so an
 * idle monitor costs nothing between changes. File-system events (inotify,
 * see `inotify.ts`) are trusted only where a check proves them: the caller's
 * `unchanged()` runs once the watch is in place, which closes the race with a
 * change made just before, and again at every re-check; a change found then
 * with no event to announce it means events cannot be relied on here.
 *
 * @module
 */

import { sharedInotify } from "./inotify.ts";

/** Why {@link waitForDirChange} returned. */
export type DirWake =
  /** `unchanged()` was false as soon as the watch was in place. */
  | "changed"
  /** Something in the directory changed (or the event queue overflowed). */
  | "event"
  /** `maxWaitMs` passed with nothing changed. */
  | "timeout"
  /** A re-check found a change that no event announced. */
  | "missed"
  /** `interrupt` was aborted: the caller has a reason of its own to look now. */
  | "interrupted"
  | "aborted";

/** Options of {@link waitForDirChange}. */
export interface DirWaitOptions {
  /** How often `unchanged()` is asked again while no event arrives (at first). */
  recheckMs: number;
  /**
   * Each re-check that finds nothing doubles the period, up to this (default: `recheckMs`,
   * no backoff): a long-idle waiter costs ever less, and a file system that misses events is
   * still found out, only later.
   */
  maxRecheckMs?: number;
  /** Longest wait in all (default: no limit). */
  maxWaitMs?: number;
  /**
   * How long an event may trail a change a re-check found: a writer's data is
   * readable a moment before the kernel queues its event.
   */
  graceMs: number;
  /**
   * Only events that may change this file or its `-` companions (`-wal`, `-shm`) wake the wait
   * (see `WatchFilter`); without it, any change in the directory does.
   */
  file?: string;
  signal: AbortSignal;
  /** Ends the wait with "interrupted" when aborted (without ending the caller's loop). */
  interrupt?: AbortSignal;
}

/**
 * Waits until something in `dir` (not in its subdirectories) may have
 * changed, as described in the module doc. The process's one inotify
 * instance watches `dir` (shared with every other wait on it). Throws a
 * LitestreamError when events cannot be had here (not Linux, no
 * `--allow-ffi`, inotify limits: a `WatchLimitError` when watches ran out):
 * the caller then polls.
 */
export async function waitForDirChange(
  dir: string,
  unchanged: () => Promise<boolean>,
  opts: DirWaitOptions,
): Promise<DirWake> {
  if (opts.signal.aborted) return "aborted";
  const deadline = performance.now() + (opts.maxWaitMs ?? Infinity);
  const watcher = sharedInotify.watch(dir, opts.file);
  const onAbort = () => watcher.wake();
  opts.signal.addEventListener("abort", onAbort, { once: true });
  opts.interrupt?.addEventListener("abort", onAbort, { once: true });
  const ended = () => opts.signal.aborted ? "aborted" : opts.interrupt?.aborted && "interrupted";
  try {
    if (!await unchanged()) return "changed";
    let recheckMs = opts.recheckMs;
    for (;; recheckMs = Math.min(2 * recheckMs, opts.maxRecheckMs ?? opts.recheckMs)) {
      const left = deadline - performance.now();
      const woke = await watcher.wait(Math.max(0, Math.min(recheckMs, left)));
      if (woke !== "timeout") return ended() || "event";
      if (!await unchanged()) {
        const late = await watcher.wait(opts.graceMs);
        return ended() || (late === "timeout" ? "missed" : "event");
      }
      if (performance.now() >= deadline) return "timeout";
    }
  } finally {
    opts.signal.removeEventListener("abort", onAbort);
    opts.interrupt?.removeEventListener("abort", onAbort);
    await watcher.close();
  }
}
