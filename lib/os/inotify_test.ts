/**
 * The process's one inotify instance on the real file system: one watch per directory shared by
 * its databases, each waiter woken by its own files, watches and the instance released with
 * their last waiter, and running out of watches. The instance and its watches are checked where
 * Linux shows them (/proc/self/fd and fdinfo), by tests run in a process of their own: under
 * `deno test --parallel` other modules' instances would show up there too.
 */

import assert from "node:assert/strict";
import { IN_ISDIR, IN_NAME_CHANGES, Inotify, WatchLimitError } from "./inotify.ts";
import { tempDir, waitFor } from "../../tests/support/poll.ts";
import { inotifyInstances } from "../../tests/support/proc_inotify.ts";
import { inOwnProcess } from "../../tests/support/own_process.ts";

/** Long enough never to end a wait an event should end. */
const EVENT_MS = 10_000;

/** Watches per inotify instance this process holds beyond `before` (instances open at start). */
async function instancesSince(before: number[]): Promise<number[]> {
  return (await inotifyInstances()).filter((i) => !before.includes(i.fd)).map((i) => i.watches);
}

/** Descriptors of the inotify instances open now. */
async function openInstances(): Promise<number[]> {
  return (await inotifyInstances()).map((i) => i.fd);
}

Deno.test(
  "inotify: two databases in one directory share a watch; each is woken by its own files",
  inOwnProcess(async () => {
    await using dir = await tempDir("inotify-");
    const before = await openInstances();
    const hub = new Inotify();
    const a = hub.watch(dir.path, "a.db");
    const b = hub.watch(dir.path, "b.db");
    try {
      assert.deepEqual(await instancesSince(before), [1], "one instance, one watch");
      // Files that are not b's (a name b.db is a prefix of, another file), then a's WAL: once
      // a's event has been handed out, every earlier one has been too.
      await Deno.writeFile(`${dir.path}/b.db2`, new Uint8Array(8));
      await Deno.writeFile(`${dir.path}/other`, new Uint8Array(8));
      await Deno.writeFile(`${dir.path}/a.db-wal`, new Uint8Array(8));
      assert.equal(await a.wait(EVENT_MS), "event");
      assert.equal(await b.wait(0), "timeout", "b not woken by other files");
      await Deno.writeFile(`${dir.path}/b.db-wal`, new Uint8Array(8));
      assert.equal(await b.wait(EVENT_MS), "event");
    } finally {
      await a.close();
      await b.close();
    }
    assert.deepEqual(await instancesSince(before), [], "closed with its last waiter");
  }),
);

Deno.test(
  "inotify: databases in different directories share the instance, a watch per directory",
  inOwnProcess(async () => {
    await using one = await tempDir("inotify-");
    await using two = await tempDir("inotify-");
    const before = await openInstances();
    const hub = new Inotify();
    const a = hub.watch(one.path, "app.db");
    const b = hub.watch(two.path, "app.db");
    try {
      assert.deepEqual(await instancesSince(before), [2], "one instance, two watches");
      assert.equal(hub.watchedDirs, 2);
      await Deno.writeFile(`${two.path}/app.db-wal`, new Uint8Array(8));
      assert.equal(await b.wait(EVENT_MS), "event");
      assert.equal(await a.wait(0), "timeout", "a not woken by the other directory");
      await Deno.writeFile(`${one.path}/app.db-wal`, new Uint8Array(8));
      assert.equal(await a.wait(EVENT_MS), "event");
    } finally {
      await a.close();
      await b.close();
    }
  }),
);

Deno.test(
  "inotify: a watch goes with its directory's last waiter, the instance with the last watch",
  inOwnProcess(async () => {
    await using one = await tempDir("inotify-");
    await using two = await tempDir("inotify-");
    const before = await openInstances();
    const hub = new Inotify();
    const a = hub.watch(one.path, "a.db");
    const b = hub.watch(one.path, "b.db");
    const c = hub.watch(two.path);
    assert.deepEqual(await instancesSince(before), [2]);
    await a.close();
    assert.deepEqual(await instancesSince(before), [2], "b still waits on the first directory");
    await b.close();
    assert.deepEqual(await instancesSince(before), [1], "the first directory's watch removed");
    assert.equal(hub.watchedDirs, 1);
    await c.close();
    assert.deepEqual(await instancesSince(before), [], "nothing waits: the instance is closed");
    assert.equal(hub.isOpen, false);
    assert.equal(await c.wait(EVENT_MS), "woken", "a closed waiter never waits");

    // The next waiter opens a fresh instance, which works as the first did.
    const d = hub.watch(one.path, "a.db");
    try {
      assert.deepEqual(await instancesSince(before), [1]);
      await Deno.writeFile(`${one.path}/a.db`, new Uint8Array(8));
      assert.equal(await d.wait(EVENT_MS), "event");
    } finally {
      await d.close();
    }
    assert.equal(hub.isOpen, false);
  }),
);

Deno.test("inotify: a database's waiter is not woken by its files being opened, closed or chowned; a write wakes it", async () => {
  await using dir = await tempDir("inotify-");
  const wal = `${dir.path}/a.db-wal`;
  await Deno.writeFile(wal, new Uint8Array(8));
  const hub = new Inotify();
  const a = hub.watch(dir.path, "a.db");
  const marker = hub.watch(dir.path, "m.db");
  try {
    // What an application that only opens and closes the database does (as root, SQLite
    // chowns the -wal and -shm it opens); then the marker's event: every earlier one is out.
    (await Deno.open(wal, { read: true, write: true })).close();
    await Deno.chown(wal, Deno.uid(), Deno.gid());
    await Deno.chmod(wal, 0o644);
    await Deno.writeFile(`${dir.path}/m.db-wal`, new Uint8Array(8));
    assert.equal(await marker.wait(EVENT_MS), "event");
    assert.equal(await a.wait(0), "timeout", "no content changed: not woken");
    await Deno.writeFile(wal, new Uint8Array(8), { append: true });
    assert.equal(await a.wait(EVENT_MS), "event");
  } finally {
    await a.close();
    await marker.close();
  }
});

Deno.test("inotify: a waiter leaving while another joins keeps the instance; its close still returns", async () => {
  await using dir = await tempDir("inotify-");
  const hub = new Inotify();
  const a = hub.watch(dir.path, "a.db");
  const closed = a.close();
  const b = hub.watch(dir.path, "b.db");
  try {
    await closed;
    assert.equal(hub.isOpen, true);
    await Deno.writeFile(`${dir.path}/b.db-wal`, new Uint8Array(8));
    assert.equal(await b.wait(EVENT_MS), "event");
  } finally {
    await b.close();
  }
  assert.equal(hub.isOpen, false);
});

Deno.test("inotify: a wait times out without events; wake ends it and every later one", async () => {
  await using dir = await tempDir("inotify-");
  const hub = new Inotify();
  const a = hub.watch(dir.path, "a.db");
  try {
    assert.equal(await a.wait(50), "timeout");
    const waiting = a.wait(EVENT_MS);
    a.wake();
    assert.equal(await waiting, "woken");
    assert.equal(await a.wait(EVENT_MS), "woken");
  } finally {
    await a.close();
  }
});

Deno.test("inotify: removing a watched directory wakes its waiters and drops its watch", async () => {
  await using parent = await tempDir("inotify-");
  const dir = `${parent.path}/data`;
  await Deno.mkdir(dir);
  const hub = new Inotify();
  const a = hub.watch(dir, "a.db");
  try {
    await Deno.remove(dir);
    assert.equal(await a.wait(EVENT_MS), "event");
    await waitFor("the watch dropped and the instance closed", () => !hub.isOpen);
    assert.equal(hub.watchedDirs, 0);
  } finally {
    await a.close();
  }
  assert.throws(() => hub.watch(dir, "a.db"), /data: cannot watch with inotify \(missing\)/);
  assert.equal(hub.isOpen, false, "a failed watch leaves no instance open");
});

Deno.test(
  "inotify: out of watches, new directories fail once-reported while watched ones still share",
  inOwnProcess(async () => {
    await using one = await tempDir("inotify-");
    await using two = await tempDir("inotify-");
    const before = await openInstances();
    const hub = new Inotify({ maxWatches: 1 });
    const a = hub.watch(one.path, "a.db");
    try {
      const first = assertLimit(() => hub.watch(two.path, "b.db"));
      assert.equal(first.first, true, "the first failure is the one to report");
      assert.match(first.message, /raise \/proc\/sys\/fs\/inotify\/max_user_watches/);
      assert.match(first.message, new RegExp(two.path));
      assert.equal(assertLimit(() => hub.watch(two.path, "c.db")).first, false, "reported once");
      // A database in a directory already watched needs no new watch.
      const b = hub.watch(one.path, "b.db");
      await b.close();
      assert.deepEqual(await instancesSince(before), [1], "no watch left behind by the failures");
      await Deno.writeFile(`${one.path}/a.db-wal`, new Uint8Array(8));
      assert.equal(await a.wait(EVENT_MS), "event", "the watched database still gets events");
    } finally {
      await a.close();
    }
    assert.deepEqual(await instancesSince(before), []);
    // Failing the very first watch leaves no instance open either.
    assertLimit(() => new Inotify({ maxWatches: 0 }).watch(one.path));
    assert.deepEqual(await instancesSince(before), []);
  }),
);

/** Runs `fn`, asserting it throws a {@link WatchLimitError}, and returns the error. */
function assertLimit(fn: () => unknown): WatchLimitError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof WatchLimitError, `a WatchLimitError, got ${err}`);
    return err;
  }
  assert.fail("no WatchLimitError thrown");
}

Deno.test("inotify: a predicate filter sees each event's name and mask; rearm waits for a new one", async () => {
  await using dir = await tempDir("inotify-");
  const hub = new Inotify();
  const seen: string[] = [];
  // Names appearing or going away, and subdirectories: what a directory search cares about.
  const w = hub.watch(dir.path, (name, mask) => {
    const wanted = (mask & IN_NAME_CHANGES) !== 0 && !name.endsWith("-wal");
    if (wanted) seen.push(`${name}${mask & IN_ISDIR ? "/" : ""}`);
    return wanted;
  });
  try {
    await Deno.writeFile(`${dir.path}/x.db-wal`, new Uint8Array(8));
    await Deno.mkdir(`${dir.path}/sub`);
    assert.equal(await w.wait(EVENT_MS), "event");
    assert.deepEqual(seen, ["sub/"]);
    assert.equal(await w.wait(0), "event", "kept until rearmed");
    w.rearm();
    assert.equal(await w.wait(0), "timeout");
    await Deno.writeFile(`${dir.path}/sub/inner`, new Uint8Array(8)); // another directory's
    await Deno.remove(`${dir.path}/sub/inner`);
    await Deno.writeFile(`${dir.path}/new.db`, new Uint8Array(8));
    assert.equal(await w.wait(EVENT_MS), "event");
    assert.deepEqual(seen, ["sub/", "new.db"]);
  } finally {
    await w.close();
  }
});
