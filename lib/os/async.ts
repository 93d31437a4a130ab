/**
 * Small concurrency primitives for the replication loops: a mutex, a change
 * signal that waiters can await, sleeps that end early on abort, and a pacer
 * that gives the event loop turns during long runs of sync file calls.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** A FIFO async mutex. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  /** Runs `fn` when every earlier holder has finished. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.then(() => {}, () => {});
    return result;
  }
}

/** A counter of changes that waiters can await ("something changed since version N"). */
export class ChangeSignal {
  #version = 0;
  #at = performance.now();
  #waiters: (() => void)[] = [];
  readonly #listeners: (() => void)[] = [];

  /** The number of changes so far. */
  get version(): number {
    return this.#version;
  }

  /** When the last change was recorded, or the signal made before any (`performance.now()`). */
  get at(): number {
    return this.#at;
  }

  /** Records a change and wakes every waiter. */
  notify(): void {
    this.#version++;
    this.#at = performance.now();
    for (const listen of this.#listeners) listen();
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Calls `fn` synchronously on every change, for as long as the signal lives. */
  listen(fn: () => void): void {
    this.#listeners.push(fn);
  }

  /** Resolves once the version exceeds `seen`, or when `signal` aborts. */
  wait(seen: number, signal?: AbortSignal): Promise<void> {
    if (this.#version > seen || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal?.removeEventListener("abort", done);
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve();
      };
      this.#waiters.push(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}

/** Waits `ms` milliseconds, or less when `signal` aborts; never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Waits before retry number `attempt` (1, 2, …): `baseMs` · 2^(attempt-1) at most, with full
 * jitter, so clients retrying the same failure do not retry in step.
 */
export function backoff(attempt: number, baseMs = 100, signal?: AbortSignal): Promise<void> {
  return sleep(Math.random() * baseMs * 2 ** (attempt - 1), signal);
}

/** At most `limit` holders at a time, served in FIFO order. */
export class Semaphore {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  /** Allows `limit` concurrent holders. */
  constructor(readonly limit: number) {
    this.#free = limit;
  }

  /** Runs `fn` once a place is free, and frees it when `fn` settles. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/**
 * Gives the event loop a turn after every `budget` bytes of sync file I/O. Sync calls save a
 * thread-pool round trip per call (most of a commit's cost with a thousand databases), but a
 * large copy made of them must not hold the event loop for its whole length.
 */
export class Pacer {
  #since = 0;

  /** Yields once at least `budget` bytes went by since the last turn. */
  constructor(readonly budget = 1024 * 1024) {}

  /** Counts `bytes`; resolves after an event-loop turn once the budget is spent. */
  async add(bytes: number): Promise<void> {
    this.#since += bytes;
    if (this.#since < this.budget) return;
    this.#since = 0;
    // setImmediate, not setTimeout(0): nested timeouts are clamped to 4 ms.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
