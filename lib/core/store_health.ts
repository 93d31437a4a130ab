/**
 * Retry pacing for the replicas of one store (an S3 bucket, a replica
 * directory) while the store fails, shared by every replica of that store.
 *
 * The design meets two goals at once: once the store works again, every
 * replica catches up within its sync interval + 5 s; and a long outage costs
 * only a few requests a minute, whatever the number of replicas (1,000
 * databases behind one S3 endpoint must not stampede it when it returns).
 *
 * - A replica whose sync failed waits here. Its retries are not per replica:
 *   every 4.5–5 s (jittered) the store is probed by ONE waiter, the one that
 *   has waited longest (so a failure peculiar to one replica cannot keep the
 *   others waiting for ever). A long outage thus costs about 12–13 attempts a
 *   minute per store, shared by all its replicas.
 * - The period never grows: an exponential backoff (to 30 s before) trades
 *   catch-up time for requests, while one probe per store already keeps the
 *   request rate low; 5 s is what the catch-up goal allows.
 * - The first success on the store (a probe, or another replica's sync)
 *   releases every waiter, each after a random delay within its own sync
 *   interval: the replicas resume as spread out as they normally sync.
 * - A waiter released by another replica's success still waits one probe
 *   period after its own failure, so a replica with a failure of its own (its
 *   prefix denied, say) retries at the probe rate, not at its neighbours'.
 * - New commits do not bring a retry forward: they say nothing about the
 *   store, and would make an outage's cost grow with the write rate.
 *
 * @module
 */

/** The longest wait between probes of a failing store: recovery is noticed within it. */
export const MAX_PROBE_MS = 5000;
/** The share of the period that is jitter: probes come 4.5–5 s apart. */
const PROBE_JITTER = 0.1;

/** Time and timers, replaceable by a fake clock in tests. */
export interface Clock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Runs `fn` after `ms`; returns a function that cancels it. */
  after(ms: number, fn: () => void): () => void;
}

const realClock: Clock = {
  now: () => performance.now(),
  after: (ms, fn) => {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};

interface Waiter {
  resolve(): void;
  /** Its release jitter bound (its sync interval). */
  spreadMs: number;
  /** No release by another replica's success before this time (clock ms). */
  notBefore: number;
  /** Cancels a pending staggered release. */
  cancel?: () => void;
}

/** The shared failure state of one store and the replicas waiting to retry it. */
export class StoreHealth {
  #failing = false;
  /** Oldest first: the head probes next. */
  #waiters: Waiter[] = [];
  /** Cancels the scheduled probe. */
  #cancelProbe: (() => void) | undefined;
  /** Probes handed out in this outage (for logs and tests). */
  #probes = 0;

  /** A health with its own timers and randomness (both replaceable for tests). */
  constructor(
    readonly clock: Clock = realClock,
    readonly random: () => number = Math.random,
  ) {}

  /** Whether the last outcome on the store was a failure. */
  get failing(): boolean {
    return this.#failing;
  }

  /** Probes handed out since the store last worked. */
  get probes(): number {
    return this.#probes;
  }

  /** Replicas waiting to retry. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** The wait before the next probe: 4.5–5 s. */
  probeDelay(): number {
    return MAX_PROBE_MS * (1 - PROBE_JITTER * this.random());
  }

  /** Records that an operation on the store failed. */
  failed(): void {
    this.#failing = true;
  }

  /** Records that an operation on the store succeeded: releases every waiter, staggered. */
  succeeded(): void {
    this.#failing = false;
    this.#probes = 0;
    this.#stopProbing();
    const now = this.clock.now();
    for (const w of this.#waiters.splice(0)) {
      w.cancel = this.clock.after(
        Math.max(this.random() * w.spreadMs, w.notBefore - now),
        w.resolve,
      );
    }
  }

  /**
   * Waits until a replica whose sync just failed should try again: when it is
   * its turn to probe, or soon after the store works again (within
   * `spreadMs`, jittered), or when `signal` aborts. Never rejects.
   */
  wait(spreadMs: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const w: Waiter = {
        spreadMs,
        notBefore: this.clock.now() + this.probeDelay(),
        resolve: () => {
          signal.removeEventListener("abort", w.resolve);
          w.cancel?.();
          this.#waiters = this.#waiters.filter((x) => x !== w);
          if (this.#waiters.length === 0) this.#stopProbing();
          resolve();
        },
      };
      signal.addEventListener("abort", w.resolve, { once: true });
      if (!this.#failing) {
        // The store worked since this replica failed: retry as after a success.
        w.cancel = this.clock.after(w.notBefore - this.clock.now(), w.resolve);
        return;
      }
      this.#waiters.push(w);
      this.#cancelProbe ??= this.clock.after(this.probeDelay(), () => this.#probe());
    });
  }

  #stopProbing(): void {
    this.#cancelProbe?.();
    this.#cancelProbe = undefined;
  }

  /** Lets the longest waiter try the store, and schedules the next probe. */
  #probe(): void {
    this.#cancelProbe = undefined;
    const head = this.#waiters[0];
    if (!head) return;
    this.#probes++;
    head.resolve();
    if (this.#waiters.length > 0) {
      this.#cancelProbe = this.clock.after(this.probeDelay(), () => this.#probe());
    }
  }
}

/**
 * One `StoreHealth` per store, for the replicas of a server: an S3 bucket
 * (`s3://bucket`) or a replica directory.
 */
export class StoreHealthRegistry {
  readonly #byKey = new Map<string, StoreHealth>();

  /**
   * The health of the store behind `location` (`s3://bucket/prefix` or a directory path), or of
   * `store` when the client names one (see `ReplicaClient.store`).
   */
  for(location: string, store?: string): StoreHealth {
    // URL-like locations share per host (the bucket); a directory is its own store.
    const key = store ?? /^[a-z0-9]+:\/\/[^/]*/i.exec(location)?.[0] ?? location;
    let health = this.#byKey.get(key);
    if (!health) this.#byKey.set(key, health = new StoreHealth());
    return health;
  }
}
