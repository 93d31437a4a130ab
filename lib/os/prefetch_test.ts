/**
 * Ordered prefetching (lib/os/prefetch.ts): results come back in input order however the
 * fetches finish, no more than `concurrency` run at once, a budget bounds what they hold
 * together (one fetch may always run), and a failure surfaces at its turn.
 *
 * Fetches here are promises the test settles itself, latest first, so completion order is
 * the reverse of start order; `settle()` lets the generator run between steps.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { prefetch, type PrefetchBudget } from "./prefetch.ts";

/** Lets every pending promise reaction run (one macrotask turn), nothing more. */
const settle = () => new Promise<void>((r) => setTimeout(r, 0));

/** Fetches that the test completes by hand, recording what ran at once. */
class ManualFetches {
  pending: { item: number; resolve: (v: string) => void; reject: (e: Error) => void }[] = [];
  started: number[] = [];
  inFlight = 0;
  maxInFlight = 0;
  weight = 0;
  maxWeight = 0;

  constructor(readonly weigh: (item: number) => number = () => 0) {}

  fetch = (item: number): Promise<string> => {
    this.started.push(item);
    this.inFlight++;
    this.weight += this.weigh(item);
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.maxWeight = Math.max(this.maxWeight, this.weight);
    const { promise, resolve, reject } = Promise.withResolvers<string>();
    this.pending.push({ item, resolve, reject });
    return promise.finally(() => {
      this.inFlight--;
      this.weight -= this.weigh(item);
    });
  };

  /** Completes the most recently started fetch (or fails it when `failOn` is its item). */
  finishLatest(failOn?: number): void {
    const p = this.pending.pop()!;
    if (p.item === failOn) p.reject(new Error(`fetch ${p.item} failed`));
    else p.resolve(`r${p.item}`);
  }
}

/** Consumes `prefetch` fully while completing fetches latest-first; returns what it yielded. */
async function drive(
  items: number[],
  concurrency: number,
  f: ManualFetches,
  budget?: PrefetchBudget<number>,
): Promise<string[]> {
  const out: string[] = [];
  let done = false;
  const consumer = (async () => {
    for await (const r of prefetch(items, concurrency, f.fetch, budget)) out.push(r);
  })().finally(() => done = true);
  while (!done) {
    await settle();
    if (f.pending.length > 0) f.finishLatest();
  }
  await consumer;
  return out;
}

Deno.test("results keep input order although fetches finish in reverse", async () => {
  const f = new ManualFetches();
  const out = await drive([1, 2, 3, 4, 5, 6, 7], 3, f);
  assert.deepEqual(out, ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]);
  assert.deepEqual(f.started, [1, 2, 3, 4, 5, 6, 7], "each item fetched once, in order");
  assert.equal(f.maxInFlight, 3);
});

Deno.test("concurrency bounds fetches in flight; 0 still makes progress", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.nat(100), { maxLength: 12 }),
      fc.integer({ min: 0, max: 5 }),
      async (items, concurrency) => {
        const f = new ManualFetches();
        const out = await drive(items, concurrency, f);
        assert.deepEqual(out, items.map((i) => `r${i}`));
        assert.ok(f.maxInFlight <= Math.max(1, concurrency), `${f.maxInFlight} in flight`);
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("a budget bounds the weight in flight; one fetch over it may still run alone", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 1, max: 150 }),
      async (items, max) => {
        const f = new ManualFetches((i) => i);
        const out = await drive(items, 8, f, { weigh: (i) => i, max });
        assert.deepEqual(out, items.map((i) => `r${i}`));
        const heaviest = Math.max(...items);
        assert.ok(f.maxWeight <= Math.max(max, heaviest), `weight ${f.maxWeight} over ${max}`);
      },
    ),
    { numRuns: 25 },
  );
  // Concretely, under a budget of 100: 40 and 50 run together, 30 waits for room, 200 runs
  // only alone, and 10 waits for it.
  const f = new ManualFetches((i) => i);
  await drive([40, 50, 30, 200, 10], 5, f, { weigh: (i) => i, max: 100 });
  assert.equal(f.maxInFlight, 2);
  assert.equal(f.maxWeight, 200);
});

Deno.test("a failed fetch throws at its turn, after the results before it", async () => {
  const f = new ManualFetches();
  const out: string[] = [];
  const consumer = (async () => {
    for await (const r of prefetch([1, 2, 3, 4], 4, f.fetch)) out.push(r);
  })();
  await settle();
  f.finishLatest(); // 4
  f.finishLatest(3); // 3 fails before 1 and 2 are done
  f.finishLatest(); // 2
  f.finishLatest(); // 1
  await assert.rejects(consumer, { message: "fetch 3 failed" });
  assert.deepEqual(out, ["r1", "r2"]);
});

Deno.test("stopping early leaves in-flight failures handled (no unhandled rejection)", async () => {
  const f = new ManualFetches();
  const first = (async () => {
    for await (const r of prefetch([1, 2, 3], 3, f.fetch)) return r;
  })();
  await settle();
  f.pending[0].resolve("r1");
  assert.equal(await first, "r1");
  // Items 2 and 3 were in flight when the consumer stopped: their failures reach no one, and
  // an unhandled rejection would fail this test.
  for (const p of f.pending.slice(1)) p.reject(new Error(`late ${p.item}`));
  await settle();
  assert.deepEqual(f.started, [1, 2, 3]);
});
