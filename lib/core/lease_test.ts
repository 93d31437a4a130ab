/**
 * The replica lease on the in-memory client with a fake clock: who may take it, what each
 * side logs, when it expires (with hosts' clocks apart), and how few requests it makes.
 */

import assert from "node:assert/strict";
import { Lease, type LeaseClock, PARKED_TTL_FACTOR } from "./lease.ts";
import { decodeLease, encodeLease, type LeaseIdentity } from "./lease_record.ts";
import { Logger } from "../log.ts";
import { newGeneration } from "../names.ts";
import { MemoryReplicaClient } from "../../replicas/memory/mod.ts";
import { waitFor } from "../../tests/support/poll.ts";

const TTL = 60_000;
const RENEW = TTL / 3;
const SYNC = 1_000;
const BASE = Date.parse("2026-12-05T00:00:00Z");

/** Shared time; each replicator's wall clock may be off by its own skew. */
class Time {
  t = 0;
  clock(skew = 0): LeaseClock {
    return { now: () => BASE + this.t + skew, monotonic: () => this.t };
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

interface Line {
  level: string;
  msg: string;
  [k: string]: unknown;
}

/** A replicator's view of the lease, with its log lines. */
function replicator(
  client: MemoryReplicaClient,
  time: Time,
  me: LeaseIdentity,
  opts: { skew?: number; force?: boolean } = {},
) {
  const lines: Line[] = [];
  const log = new Logger({
    level: "debug",
    format: "json",
    write: (l) => lines.push(JSON.parse(l)),
  });
  const lease = new Lease(
    client,
    () => Promise.resolve(me),
    { ttl: TTL, force: opts.force },
    log,
    time.clock(opts.skew),
  );
  const generation = newGeneration();
  const errors = () => lines.filter((l) => l.level === "ERROR");
  return { lease, lines, errors, generation, me };
}

function setup() {
  const client = new MemoryReplicaClient("lease-test");
  const time = new Time();
  return { client, time };
}

const A: LeaseIdentity = {
  id: "aaaaaaaaaaaaaaaa",
  host: "host-a",
  pid: 101,
  meta: "/a/.db-litestream",
};
const B: LeaseIdentity = {
  id: "bbbbbbbbbbbbbbbb",
  host: "host-b",
  pid: 202,
  meta: "/b/.db-litestream",
};

Deno.test("lease: a second replicator is refused at once, the holder hears of it at its next upload", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  const b = replicator(client, time, B);
  assert.equal(await a.lease.beforeWrite(a.generation), "acquired");
  assert.equal(await b.lease.beforeWrite(b.generation), "refused");
  const [refused] = b.errors();
  assert.match(refused.msg, /written by another replicator/);
  assert.match(
    String(refused.holder),
    new RegExp(`host host-a pid 101 generation ${a.generation}`),
  );
  assert.match(String(refused.resolve), /-force/);

  // Before each upload the holder reads the lease (one read, no write), and finds B noted.
  const reads = client.faults.calls.readLease;
  const writes = client.faults.calls.writeLease;
  assert.equal(await a.lease.beforeWrite(a.generation), "write", "the first keeps writing");
  assert.equal(client.faults.calls.readLease, reads + 1);
  assert.equal(client.faults.calls.writeLease, writes);
  const [heard] = a.errors();
  assert.match(heard.msg, /tried to write this replica and was refused/);
  assert.match(
    String(heard.contender),
    new RegExp(`host host-b pid 202 generation ${b.generation}`),
  );

  // The refused one tries again only after a renewal period, without a request before.
  const calls = client.faults.calls.readLease;
  time.advance(SYNC);
  assert.equal(await b.lease.beforeWrite(b.generation), "refused");
  assert.equal(client.faults.calls.readLease, calls);
  assert.equal(await a.lease.beforeWrite(a.generation), "write");
  assert.equal(a.errors().length, 1, "one contender, logged once");
});

Deno.test("lease: a restart of the same replicator (same meta directory and host) is no conflict", async () => {
  const { client, time } = setup();
  const old = replicator(client, time, A);
  assert.equal(await old.lease.beforeWrite(old.generation), "acquired");
  time.advance(5_000); // killed: no release
  const restarted = replicator(client, time, { ...A, pid: 999 });
  assert.equal(await restarted.lease.beforeWrite(old.generation), "acquired");
  assert.deepEqual(restarted.errors(), []);
  assert.ok(restarted.lines.some((l) => /previous run/.test(l.msg)));
  assert.equal(decodeLease((await client.readLease())!.data)!.pid, 999);
});

Deno.test("lease: the same meta directory id on another host is refused until its lease expires", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  const clone = replicator(client, time, { ...A, host: "host-c", pid: 5 });
  assert.equal(await a.lease.beforeWrite(a.generation), "acquired");
  assert.equal(await clone.lease.beforeWrite(a.generation), "refused");
  assert.match(String(clone.errors()[0].resolve), /copied meta directory/);
  // A copy on the same host, in another directory, is no restart either.
  const copy = replicator(client, time, { ...A, pid: 6, meta: "/copy/.db-litestream" });
  assert.equal(await copy.lease.beforeWrite(a.generation), "refused");
});

Deno.test("lease: a clean shutdown releases it and the waiting replicator takes over at its next try", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  const b = replicator(client, time, B);
  await a.lease.beforeWrite(a.generation);
  assert.equal(await b.lease.beforeWrite(b.generation), "refused");
  await a.lease.release();
  assert.equal(a.lease.held, false);
  assert.ok(b.lease.dueIn() > 0);
  time.advance(b.lease.dueIn());
  assert.equal(await b.lease.tick(b.generation), true);
  assert.equal(b.errors().length, 1, "only the first refusal");
  // A fresh start after a release takes it at once.
  await b.lease.release();
  const c = replicator(client, time, { ...A, pid: 7 });
  assert.equal(await c.lease.beforeWrite(c.generation), "acquired");
});

Deno.test("lease: a crashed holder's lease expires once watched unrenewed for its TTL; the holder, back, stops", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  const b = replicator(client, time, B);
  await a.lease.beforeWrite(a.generation);
  // A stops renewing (crashed, or paused).
  assert.equal(await b.lease.beforeWrite(b.generation), "refused");
  let watched = 0;
  while (watched + b.lease.dueIn() < TTL) {
    watched += b.lease.dueIn();
    time.advance(b.lease.dueIn());
    assert.equal(await b.lease.tick(b.generation), false, `refused after ${watched} ms`);
  }
  time.advance(b.lease.dueIn());
  assert.equal(await b.lease.tick(b.generation), true);
  assert.ok(b.lines.some((l) => l.level === "WARN" && /taken over \(expired\)/.test(l.msg)));
  // A resumes: its next upload reads the lease and stops.
  time.advance(SYNC);
  assert.equal(await a.lease.beforeWrite(a.generation), "refused");
  const [lost] = a.errors();
  assert.match(lost.msg, /taken over by another replicator/);
  assert.match(String(lost.holder), /host host-b pid 202/);
  assert.equal(a.lease.held, false);
});

Deno.test("lease: hosts' clocks apart by less than a TTL never take a live lease; a dead one still expires", async () => {
  for (const skew of [-0.9 * TTL, 0.9 * TTL, 3_600_000]) {
    const { client, time } = setup();
    const a = replicator(client, time, A, { skew });
    const b = replicator(client, time, B);
    await a.lease.beforeWrite(a.generation);
    assert.equal(await b.lease.beforeWrite(b.generation), "refused");
    // Both alive for ten TTLs: A uploads every sync interval and renews when due, B tries
    // when due.
    for (let i = 0; i < 10 * TTL / SYNC; i++) {
      time.advance(SYNC);
      assert.equal(await a.lease.beforeWrite(a.generation), "write");
      if (a.lease.dueIn() === 0) assert.equal(await a.lease.tick(a.generation), true);
      if (b.lease.dueIn() === 0) {
        assert.equal(await b.lease.tick(b.generation), false, `skew ${skew}`);
      }
    }
    // A dies: B takes over within a TTL and a renewal period.
    for (let waited = 0; !b.lease.held; waited += b.lease.dueIn()) {
      assert.ok(waited <= TTL + RENEW, `skew ${skew}: still refused after ${waited} ms`);
      time.advance(b.lease.dueIn());
      await b.lease.tick(b.generation);
    }
  }
});

Deno.test("lease: a renewal stamp older than two TTLs by the contender's clock is expired at once", async () => {
  const { client, time } = setup();
  const stale = replicator(client, time, A, { skew: -3 * TTL });
  await stale.lease.beforeWrite(stale.generation);
  const b = replicator(client, time, B);
  assert.equal(await b.lease.beforeWrite(b.generation), "acquired");
});

Deno.test("lease: -force takes a live lease once and the holder stops at its next upload, however soon", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  const b = replicator(client, time, B, { force: true });
  await a.lease.beforeWrite(a.generation);
  assert.equal(await b.lease.beforeWrite(b.generation), "acquired");
  assert.equal(b.lease.takeForced(), true);
  assert.equal(b.lease.takeForced(), false, "one new generation");
  assert.equal(decodeLease((await client.readLease())!.data)!.forced, true);
  // No time has passed since the holder's last read: an upload now would make its abandoned
  // generation the newest, which a restore would pick.
  assert.equal(await a.lease.beforeWrite(a.generation), "refused");
  assert.equal(a.errors()[0].forced, true);
  assert.match(String(a.errors()[0].resolve), /-force; stop this one/);
  // Without a holder, -force is no takeover: no new generation.
  const { client: empty } = setup();
  const c = replicator(empty, time, B, { force: true });
  assert.equal(await c.lease.beforeWrite(c.generation), "acquired");
  assert.equal(c.lease.takeForced(), false);
});

Deno.test("lease: while uploading, the holder makes one write and one listing per renewal period", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  await a.lease.beforeWrite(a.generation);
  const before = { ...client.faults.calls };
  for (let i = 0; i < 10; i++) {
    time.advance(a.lease.dueIn());
    assert.equal(await a.lease.tick(a.generation), true);
    assert.equal(await a.lease.tick(a.generation), true, "not due again: no request");
    assert.equal(await a.lease.beforeWrite(a.generation), "write", "an upload");
  }
  const calls = client.faults.calls;
  assert.deepEqual(
    [calls.writeLease - before.writeLease, calls.generations - before.generations],
    [10, 10],
  );
});

Deno.test("lease: an idle holder parks its lease with one write, then makes no request at all", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  await a.lease.beforeWrite(a.generation);
  time.advance(a.lease.dueIn());
  assert.equal(await a.lease.tick(a.generation), true, "uploaded since: an ordinary renewal");
  const before = { ...client.faults.calls };
  time.advance(a.lease.dueIn());
  assert.equal(await a.lease.tick(a.generation), true, "nothing uploaded since: parked");
  const parked = decodeLease((await client.readLease())!.data)!;
  assert.deepEqual([parked.parked, parked.ttl], [true, TTL * PARKED_TTL_FACTOR]);
  const afterPark = { ...client.faults.calls, readLease: client.faults.calls.readLease - 1 };
  assert.equal(afterPark.writeLease - before.writeLease, 1);
  assert.equal(afterPark.generations, before.generations, "no listing while idle");
  assert.equal(a.lease.dueIn(), Infinity);
  time.advance(100 * TTL);
  assert.equal(await a.lease.tick(a.generation), true);
  assert.deepEqual(
    { ...client.faults.calls, readLease: client.faults.calls.readLease - 1 },
    afterPark,
  );

  // The next upload does not wait for a write; the renewal, unparked with the ordinary
  // time-to-live, is due at once.
  const writes = client.faults.calls.writeLease;
  assert.equal(await a.lease.beforeWrite(a.generation), "write");
  assert.equal(client.faults.calls.writeLease, writes);
  assert.equal(a.lease.dueIn(), 0);
  assert.equal(await a.lease.tick(a.generation), true);
  const renewed = decodeLease((await client.readLease())!.data)!;
  assert.deepEqual([renewed.parked, renewed.ttl], [undefined, TTL]);
  assert.equal(a.lease.dueIn(), RENEW);
});

Deno.test("lease: a parked lease is alive for its longer time-to-live, then expires with its holder gone", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  const b = replicator(client, time, B);
  await a.lease.beforeWrite(a.generation);
  time.advance(a.lease.dueIn());
  await a.lease.tick(a.generation);
  time.advance(a.lease.dueIn());
  await a.lease.tick(a.generation); // parked, and A is killed
  assert.equal(await b.lease.beforeWrite(b.generation), "refused");
  assert.match(String(b.errors()[0].parked), /idle/);
  let waited = 0;
  for (; waited < 10 * TTL; waited += b.lease.dueIn()) {
    time.advance(b.lease.dueIn());
    assert.equal(await b.lease.tick(b.generation), false, `refused after ${waited} ms`);
  }
  for (; !b.lease.held; waited += b.lease.dueIn()) {
    assert.ok(waited <= TTL * PARKED_TTL_FACTOR + RENEW, `still refused after ${waited} ms`);
    time.advance(b.lease.dueIn());
    await b.lease.tick(b.generation);
  }
});

Deno.test("lease: an upload finding the lease parked wakes run() to renew it, unparked", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  await a.lease.beforeWrite(a.generation);
  time.advance(a.lease.dueIn());
  await a.lease.tick(a.generation);
  time.advance(a.lease.dueIn());
  await a.lease.tick(a.generation); // parked
  const stop = new AbortController();
  const running = a.lease.run(() => a.generation, () => {}, stop.signal);
  try {
    const writes = client.faults.calls.writeLease;
    assert.equal(await a.lease.beforeWrite(a.generation), "write");
    await waitFor("run() to renew the lease", () => client.faults.calls.writeLease === writes + 1);
    const renewed = decodeLease((await client.readLease())!.data)!;
    assert.deepEqual([renewed.parked, renewed.ttl], [undefined, TTL]);
  } finally {
    stop.abort();
    await running;
  }
});

Deno.test("lease: a generation nobody holding the lease wrote is reported once (v0.3.13 takes none)", async () => {
  const { client, time } = setup();
  const earlier = newGeneration();
  await client.writeSnapshot(earlier, 0, ReadableStream.from([new Uint8Array(1)]));
  const a = replicator(client, time, A);
  await a.lease.beforeWrite(a.generation);
  await client.writeSnapshot(a.generation, 0, ReadableStream.from([new Uint8Array(1)]));
  const foreign = newGeneration();
  await client.writeSnapshot(foreign, 0, ReadableStream.from([new Uint8Array(1)]));
  for (let i = 0; i < 3; i++) {
    time.advance(a.lease.dueIn());
    await a.lease.tick(a.generation);
  }
  const warned = a.lines.filter((l) => /did not write appeared/.test(l.msg));
  assert.deepEqual(warned.map((l) => l.generation), [foreign]);
});

Deno.test("lease: two replicators starting together: exactly one holds it", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  const b = replicator(client, time, B);
  const verdicts = await Promise.all([
    a.lease.beforeWrite(a.generation),
    b.lease.beforeWrite(b.generation),
  ]);
  assert.deepEqual(verdicts.sort(), ["acquired", "refused"]);
});

Deno.test("lease: an unreadable lease object is replaced, with a warning", async () => {
  const { client, time } = setup();
  client.putRaw("lease.json", new TextEncoder().encode("not json"));
  const a = replicator(client, time, A);
  assert.equal(await a.lease.beforeWrite(a.generation), "acquired");
  assert.ok(a.lines.some((l) => l.level === "WARN" && /unreadable/.test(String(l.previous))));
  assert.equal(decodeLease(encodeLease(decodeLease((await client.readLease())!.data)!))!.id, A.id);
});

Deno.test("lease: a lease object removed under its holder is taken again, and the replica re-read", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  assert.equal(await a.lease.beforeWrite(a.generation), "acquired");
  assert.equal(await a.lease.beforeWrite(a.generation), "write");
  client.clear();
  assert.equal(
    await a.lease.beforeWrite(a.generation),
    "acquired",
    "what the replica holds changed",
  );
  assert.ok(a.lines.some((l) => l.level === "WARN" && /removed/.test(l.msg)));
  assert.equal(await a.lease.beforeWrite(a.generation), "write");
  assert.equal(decodeLease((await client.readLease())!.data)!.id, A.id);
});

Deno.test("lease: a store failure is thrown to the writer each time, never taken for a refusal", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  client.faults.fail("readLease");
  await assert.rejects(a.lease.beforeWrite(a.generation), /injected readLease failure/);
  // The write of a first lease failing (a full disk, say) is no refusal either.
  client.faults.fail("writeLease");
  await assert.rejects(a.lease.beforeWrite(a.generation), /injected writeLease failure/);
  assert.equal(await a.lease.beforeWrite(a.generation), "acquired", "tried again at once");
  assert.deepEqual(a.errors(), []);
});

Deno.test("lease: a refusal racing the holder's renewal still reaches the holder", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  const b = replicator(client, time, B);
  await a.lease.beforeWrite(a.generation);
  const stall = client.faults.stall("writeLease"); // B's note, held until A has renewed
  const refused = b.lease.beforeWrite(b.generation);
  await stall.reached;
  time.advance(a.lease.dueIn());
  assert.equal(await a.lease.tick(a.generation), true);
  stall.release();
  assert.equal(await refused, "refused");
  time.advance(SYNC);
  assert.equal(await a.lease.beforeWrite(a.generation), "write");
  assert.match(String(a.errors()[0]?.contender), /host host-b pid 202/);
});

Deno.test("lease: a store that denies access to the lease object turns it off, with one warning", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  const denied = Object.assign(new Error("Access Denied"), { code: "AccessDenied" });
  client.faults.fail("writeLease", 1, denied);
  assert.equal(await a.lease.beforeWrite(a.generation), "write");
  assert.equal(a.lease.held, true);
  const calls = { ...client.faults.calls };
  time.advance(10 * TTL);
  assert.equal(await a.lease.beforeWrite(a.generation), "write");
  assert.equal(await a.lease.tick(a.generation), true);
  assert.deepEqual(client.faults.calls, calls, "no more lease requests");
  assert.equal(a.lines.filter((l) => /access denied/.test(l.msg)).length, 1);
});

Deno.test("lease: a backend error marked accessDenied (SFTP's PERMISSION_DENIED) turns it off too", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  client.faults.fail("readLease", 1, Object.assign(new Error("denied"), { accessDenied: true }));
  assert.equal(await a.lease.beforeWrite(a.generation), "write");
  assert.equal(a.lines.filter((l) => /access denied/.test(l.msg)).length, 1);
});

Deno.test("lease: refusals are announced once as each refusal begins, for an idle monitor to stand by", async () => {
  const { client, time } = setup();
  const a = replicator(client, time, A);
  const b = replicator(client, time, B, { force: true });
  const c = replicator(client, time, { ...B, id: "cccccccccccccccc", host: "host-c" });
  assert.equal(await a.lease.beforeWrite(a.generation), "acquired");
  assert.equal(a.lease.refusals.version, 0, "holding it: nothing announced");
  assert.equal(await c.lease.beforeWrite(c.generation), "refused");
  assert.equal(c.lease.refusals.version, 1);
  time.advance(RENEW);
  assert.equal(await c.lease.beforeWrite(c.generation), "refused");
  assert.equal(c.lease.refusals.version, 1, "still refused: not announced again");
  // The holder, taken over with -force, is refused at its next upload: announced.
  assert.equal(await b.lease.beforeWrite(b.generation), "acquired");
  assert.equal(await a.lease.beforeWrite(a.generation), "refused");
  assert.equal(a.lease.refusals.version, 1);
});
