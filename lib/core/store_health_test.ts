/**
 * StoreHealth on a fake clock: replicas simulated as retry loops against a
 * store that is down for a while, counting attempts and catch-up times.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Clock, StoreHealth, StoreHealthRegistry } from "./store_health.ts";

/** A clock whose timers run only when the test advances it. */
class FakeClock implements Clock {
  #now = 0;
  #next = 1;
  #timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.#now;
  }
  after(ms: number, fn: () => void): () => void {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return () => this.#timers.delete(id);
  }
  get pending(): number {
    return this.#timers.size;
  }

  /** Runs every timer due up to `now + ms` in time order, letting promise reactions run between. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    await settle();
    for (;;) {
      const due = [...this.#timers].filter(([, t]) =>
        t.at <= end
      ).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) {
        break;
      }
      this.#timers.delete(due[0]);
      this.#now = due[1].at;
      due[1].fn();
      await settle();
    }
    this.#now = end;
  }
}

/** Lets pending promise reactions run (a real macrotask turn). */
const settle = () => new Promise((r) => setTimeout(r, 0));

/** A seeded generator, so runs are repeatable. */
function seeded(seed = 42): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** A store that fails until `up` is set. */
interface Store {
  up: boolean;
  attempts: number;
}

/** A replica's upload loop in miniature: try, report, wait on failure; returns when it caught up. */
async function replica(
  health: StoreHealth,
  clock: FakeClock,
  store: Store,
  signal: AbortSignal,
  times: number[] = [],
): Promise<number | undefined> {
  while (!signal.aborted) {
    store.attempts++;
    times.push(clock.now());
    if (store.up) {
      health.succeeded();
      return clock.now();
    }
    health.failed();
    await health.wait(1000, signal);
  }
  return undefined;
}

Deno.test("store health: one replica, 10-minute outage: retries 4.5–5 s apart; catches up within 5 s", async () => {
  const clock = new FakeClock();
  const health = new StoreHealth(clock, seeded());
  const store: Store = { up: false, attempts: 0 };
  const times: number[] = [];
  const done = replica(health, clock, store, new AbortController().signal, times);
  await clock.advance(600_000);
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  assert.ok(gaps.every((g) => g >= 4500 && g <= 5000), `gaps ${gaps}`);
  assert.ok(store.attempts <= 600_000 / 4500 + 1, `${store.attempts} attempts in 10 minutes`);
  store.up = true;
  const upAt = clock.now();
  await clock.advance(5000);
  const caughtUp = await done;
  assert.ok(caughtUp !== undefined && caughtUp - upAt <= 5000, `caught up at ${caughtUp}`);
  assert.equal(clock.pending, 0, "no timers left");
});

Deno.test("store health: 1,000 replicas of one store: one probe per period in all; recovery releases every replica within its sync interval + 5 s, spread out", async () => {
  const clock = new FakeClock();
  const health = new StoreHealth(clock, seeded(7));
  const store: Store = { up: false, attempts: 0 };
  const signal = new AbortController().signal;
  const all = Array.from({ length: 1000 }, () => replica(health, clock, store, signal));
  await settle();
  assert.equal(store.attempts, 1000, "each replica failed once on its own");
  await clock.advance(600_000);
  const probes = store.attempts - 1000;
  assert.ok(probes <= 600_000 / 4500 + 1, `${probes} probes in 10 minutes for 1,000 replicas`);
  assert.ok(probes >= 600_000 / 5000 - 1, `${probes} probes: the store is still probed`);
  store.up = true;
  const upAt = clock.now();
  await clock.advance(5000 + 1000);
  const caughtUp = await Promise.all(all);
  assert.ok(caughtUp.every((t) => t !== undefined && t - upAt <= 6000), "all caught up");
  // Staggered: released over the sync interval, not in one burst.
  const perMs = new Map<number, number>();
  for (const t of caughtUp) perMs.set(t!, (perMs.get(t!) ?? 0) + 1);
  assert.ok(Math.max(...perMs.values()) <= 5, `at most 5 resume in the same ms`);
  assert.ok(perMs.size >= 500, `${perMs.size} distinct resume times`);
  assert.equal(clock.pending, 0, "no timers left");
});

Deno.test("store health: a replica failing on its own retries at the probe rate while others succeed, and does not hold them", async () => {
  const clock = new FakeClock();
  const health = new StoreHealth(clock, seeded(3));
  const broken: Store = { up: false, attempts: 0 };
  const ac = new AbortController();
  const done = replica(health, clock, broken, ac.signal);
  // A healthy neighbour syncs every second; each sync works.
  for (let s = 0; s < 60; s++) {
    await clock.advance(1000);
    health.succeeded();
    assert.equal(health.failing, false, "the neighbour's success stands");
  }
  assert.ok(broken.attempts <= 60_000 / 4500 + 1, `${broken.attempts} attempts in a minute`);
  ac.abort();
  assert.equal(await done, undefined);
  await clock.advance(10_000);
  assert.equal(clock.pending, 0, "no timers left after abort");
});

Deno.test("store health: waiters rotate (the longest waiter probes), and abort ends a wait", async () => {
  const clock = new FakeClock();
  const health = new StoreHealth(clock, seeded(9));
  const ac = new AbortController();
  const order: string[] = [];
  health.failed();
  const a = health.wait(1000, ac.signal).then(() => order.push("a"));
  const b = health.wait(1000, ac.signal).then(() => order.push("b"));
  await clock.advance(5000);
  assert.deepEqual(order, ["a"], "one probe in the first period, by the first waiter");
  await clock.advance(5000);
  assert.deepEqual(order, ["a", "b"]);
  await Promise.all([a, b]);
  const c = health.wait(1000, ac.signal);
  assert.equal(health.waiting, 1);
  ac.abort();
  await c;
  assert.equal(health.waiting, 0);
  assert.equal(clock.pending, 0, "no timers left after abort");
});

Deno.test("store health registry: replicas share per bucket, per directory, per named store", () => {
  const reg = new StoreHealthRegistry();
  assert.equal(reg.for("s3://bucket/a/db"), reg.for("s3://bucket/b/db"));
  assert.notEqual(reg.for("s3://bucket/a/db"), reg.for("s3://other/a/db"));
  assert.equal(reg.for("/backups/a"), reg.for("/backups/a"));
  assert.notEqual(reg.for("/backups/a"), reg.for("/backups/b"));
  // Two logins to one SFTP server and user: one may fail while the other works.
  assert.equal(reg.for("sftp://u@h:22/a", "login 1"), reg.for("sftp://u@h:22/b", "login 1"));
  assert.notEqual(reg.for("sftp://u@h:22/a", "login 1"), reg.for("sftp://u@h:22/a", "login 2"));
});
