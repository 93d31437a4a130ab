/**
 * What waiting on a directory's changes looks like to its users, free of the inotify binding
 * (`inotify.ts`) behind it: modules that only name these types (the `ReplicaClient` interface,
 * and through it the Deno Deploy validator) must not pull FFI into their module graph.
 *
 * @module
 */

/** What ended a {@link DirWatch.wait}. */
export type WatchWake = "event" | "timeout" | "woken";

/**
 * One waiter's view of a watched directory. Events are kept as a flag: once
 * one concerning this waiter has arrived, every later `wait` returns "event"
 * at once, which is all a caller that re-checks on every wake needs.
 */
export interface DirWatch {
  /** Waits up to `ms` for a change (at once if one already arrived) or a `wake()`. */
  wait(ms: number): Promise<WatchWake>;
  /** Ends the current `wait` (and every later one) with "woken". */
  wake(): void;
  /**
   * Forgets the events seen so far: the next `wait` waits for a new one. For a long-lived
   * waiter that re-reads its directory after each wake (rearm first, then re-read).
   */
  rearm(): void;
  /**
   * Leaves the directory's watch (removed with its last waiter; the instance
   * is closed with the last watch). Resolves once the reader has seen it.
   */
  close(): Promise<void>;
}
