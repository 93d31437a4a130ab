/**
 * The replication loops' concurrency primitives (lib/os/async.ts): a FIFO mutex, a change
 * signal, and sleeps that end on abort.
 */

import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { ChangeSignal, Mutex, Pacer, sleep } from "./async.ts";

Deno.test("Mutex runs holders one at a time, in call order, past a failing one", async () => {
  const mutex = new Mutex();
  const log: string[] = [];
  let holders = 0;
  const hold = (name: string, fail = false) =>
    mutex.run(async () => {
      holders++;
      assert.equal(holders, 1, "never two holders");
      log.push(`${name} in`);
      await Promise.resolve(); // give any other caller the chance to barge in
      log.push(`${name} out`);
      holders--;
      if (fail) throw new Error(`${name} failed`);
      return name;
    });
  const results = await Promise.allSettled([hold("a"), hold("b", true), hold("c")]);
  assert.deepEqual(log, ["a in", "a out", "b in", "b out", "c in", "c out"]);
  assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.equal((results[2] as PromiseFulfilledResult<string>).value, "c");
});

Deno.test("ChangeSignal: a wait ends on the next change, or at once if one came after `seen`", async () => {
  const signal = new ChangeSignal();
  assert.equal(signal.version, 0);
  let woke = 0;
  const waiters = [signal.wait(0).then(() => woke++), signal.wait(0).then(() => woke++)];
  await Promise.resolve();
  assert.equal(woke, 0, "no change yet");
  signal.notify();
  await Promise.all(waiters);
  assert.equal(woke, 2, "every waiter wakes");
  assert.equal(signal.version, 1);
  await signal.wait(0); // version 1 > 0: returns at once
  const first = signal.at;
  while (performance.now() === first) await Promise.resolve();
  signal.notify();
  await signal.wait(1);
  assert.equal(signal.version, 2);
  assert.ok(signal.at > first, "`at` is the time of the latest change");
});

Deno.test("ChangeSignal: an abort ends a wait without a change", async () => {
  const signal = new ChangeSignal();
  const ac = new AbortController();
  const waiting = signal.wait(0, ac.signal);
  ac.abort();
  await waiting;
  assert.equal(signal.version, 0);
  await signal.wait(0, ac.signal); // already aborted: returns at once
});

Deno.test("sleep ends early on abort and leaves no timer behind", async () => {
  const ac = new AbortController();
  // A minute-long sleep: the test finishes only because the abort ends it, and Deno's
  // sanitizer fails the test if its timer were left running.
  const long = sleep(60_000, ac.signal);
  ac.abort();
  await long;
  await sleep(60_000, ac.signal); // already aborted: returns at once
  await sleep(1); // without a signal it simply ends
});

Deno.test("Semaphore: at most limit holders, in call order, past a failing one", async () => {
  const { Semaphore } = await import("./async.ts");
  const s = new Semaphore(2);
  let holders = 0;
  let most = 0;
  const order: number[] = [];
  const task = (i: number) =>
    s.run(async () => {
      holders++;
      most = Math.max(most, holders);
      order.push(i);
      await sleep(5);
      holders--;
      if (i === 1) throw new Error("fails");
      return i;
    });
  const results = await Promise.allSettled([0, 1, 2, 3, 4].map(task));
  assert.equal(most, 2);
  assert.deepEqual(order, [0, 1, 2, 3, 4]);
  assert.equal(results.filter((r) => r.status === "rejected").length, 1);
  assert.equal(await task(5), 5, "the failing holder freed its place");
});

Deno.test("Pacer: an event-loop turn once per budget of bytes, none below it", async () => {
  const pacer = new Pacer(100);
  let turns = 0;
  // Immediates run in order: one queued before `add` has run once `add` let the loop turn.
  const queue = () => setImmediate(() => turns++);
  queue();
  await pacer.add(60);
  assert.equal(turns, 0);
  await pacer.add(40);
  assert.equal(turns, 1);
  queue();
  await pacer.add(99);
  assert.equal(turns, 1);
  await pacer.add(1);
  assert.equal(turns, 2);
});
