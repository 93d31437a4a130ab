/**
 * `waitForDirChange` on the real file system (inotify on Linux): what wakes it, what does not,
 * and how a change that no event announces is caught. The `unchanged` callbacks stand for the
 * monitor's WAL check; each test acts only once the watch is in place (the first call).
 */

import assert from "node:assert/strict";
import { type DirWake, waitForDirChange } from "./dir_watch.ts";
import { openDatabase } from "../sqlite/driver.ts";
import { tempDir } from "../../tests/support/poll.ts";
import { createWriterTable, sqlite } from "../../tests/support/sqlite_cli.ts";

/** Starts a wait on `dir`; `armed` resolves once the watch is in place (first `unchanged()`). */
function startWait(
  dir: string,
  opts: {
    recheckMs?: number;
    maxWaitMs?: number;
    graceMs?: number;
    signal?: AbortSignal;
    unchanged?: () => boolean;
  },
): { armed: Promise<void>; woke: Promise<DirWake> } {
  let arm = () => {};
  const armed = new Promise<void>((resolve) => arm = resolve);
  let calls = 0;
  const woke = waitForDirChange(dir, () => {
    if (calls++ === 0) arm();
    return Promise.resolve(opts.unchanged?.() ?? true);
  }, {
    recheckMs: opts.recheckMs ?? 60_000,
    maxWaitMs: opts.maxWaitMs,
    graceMs: opts.graceMs ?? 60_000,
    signal: opts.signal ?? new AbortController().signal,
  });
  return { armed, woke };
}

Deno.test("dir watch: a change found once the watch is in place returns at once", async () => {
  await using dir = await tempDir("dir-watch-");
  const { woke } = startWait(dir.path, { unchanged: () => false });
  assert.equal(await woke, "changed");
});

Deno.test("dir watch: a write to a file in the directory wakes the wait", async () => {
  await using dir = await tempDir("dir-watch-");
  const file = `${dir.path}/app.db-wal`;
  await Deno.writeFile(file, new Uint8Array(32));
  const { armed, woke } = startWait(dir.path, {});
  await armed;
  using f = await Deno.open(file, { write: true });
  await f.write(new Uint8Array([1, 2, 3]));
  assert.equal(await woke, "event");
});

Deno.test("dir watch: creating, renaming over and removing files each wake the wait", async () => {
  await using dir = await tempDir("dir-watch-");
  const steps: [string, () => Promise<void>][] = [
    ["create", () => Deno.writeFile(`${dir.path}/app.db-wal`, new Uint8Array(0))],
    ["rename over", async () => {
      await Deno.writeFile(`${dir.path}/other`, new Uint8Array(0));
      await Deno.rename(`${dir.path}/other`, `${dir.path}/app.db`);
    }],
    ["remove", () => Deno.remove(`${dir.path}/app.db-wal`)],
  ];
  for (const [name, act] of steps) {
    if (name === "rename over") await Deno.writeFile(`${dir.path}/app.db`, new Uint8Array(0));
    const { armed, woke } = startWait(dir.path, {});
    await armed;
    await act();
    assert.equal(await woke, "event", name);
  }
});

Deno.test("dir watch: reads do not wake it; it re-checks until its longest wait is over", async () => {
  await using dir = await tempDir("dir-watch-");
  const file = `${dir.path}/app.db-wal`;
  await Deno.writeFile(file, new Uint8Array(32));
  let checks = 0;
  const { armed, woke } = startWait(dir.path, {
    recheckMs: 100,
    maxWaitMs: 500,
    unchanged: () => (checks++, true),
  });
  await armed;
  for (let i = 0; i < 20; i++) {
    using f = Deno.openSync(file, { read: true });
    f.readSync(new Uint8Array(32));
  }
  assert.equal(await woke, "timeout");
  assert.ok(checks >= 2, `checked when the watch was in place and again while waiting (${checks})`);
});

Deno.test("dir watch: events on a database's files leave this process's SQLite locks in place", async () => {
  await using dir = await tempDir("dir-watch-");
  const db = `${dir.path}/app.db`;
  await createWriterTable(db);
  // A read transaction, as the monitor holds: POSIX locks on the database and its -shm file.
  const reader = await openDatabase(db, { busyTimeoutMs: 1000 });
  try {
    await reader.exec("BEGIN");
    await reader.queryRow("SELECT count(*) FROM t");
    // Only the locks on this test's files: under `deno test --parallel` other modules' tests run
    // in this process too, and their databases' locks come and go in /proc/locks meanwhile.
    const inodes = await inodesOf([db, `${db}-wal`, `${db}-shm`]);
    const before = await posixLocksOf(Deno.pid, inodes);
    assert.ok(before.length > 0, "the read transaction holds POSIX locks");
    const { armed, woke } = startWait(dir.path, {});
    await armed;
    // Another process writes: events on the WAL, the -shm file (opened, closed) and more.
    await sqlite(db, "INSERT INTO t VALUES (1, randomblob(10));");
    assert.equal(await woke, "event");
    assert.deepEqual(await posixLocksOf(Deno.pid, inodes), before, "no lock released");
  } finally {
    await reader.close();
  }
});

/** `pid`'s POSIX locks on files with the given inode numbers, as `file type range` strings, sorted. */
async function posixLocksOf(pid: number, inodes: Set<string>): Promise<string[]> {
  const lines = (await Deno.readTextFile("/proc/locks")).split("\n");
  return lines.map((l) => l.split(/\s+/))
    .filter((f) => f[1] === "POSIX" && f[4] === String(pid) && inodes.has(f[5]?.split(":")[2]))
    .map((f) => `${f[5]} ${f[3]} ${f[6]}-${f[7]}`).sort();
}

/**
 * The inode numbers of the existing `paths`. /proc/locks names a file `major:minor:inode`; the
 * inode alone is compared, as `stat`'s device need not be the one shown there (btrfs subvolumes).
 * Every test's files live in temporary directories on one file system: none shares these numbers.
 */
async function inodesOf(paths: string[]): Promise<Set<string>> {
  const found = await Promise.all(paths.map((p) => Deno.stat(p).catch(() => undefined)));
  return new Set(found.filter((st) => st !== undefined).map((st) => String(st.ino)));
}

Deno.test("dir watch: an overflowing burst of writes still wakes it", async () => {
  await using dir = await tempDir("dir-watch-");
  const file = `${dir.path}/app.db-wal`;
  await Deno.writeFile(file, new Uint8Array(0));
  const { armed, woke } = startWait(dir.path, {});
  await armed;
  // Synchronous: the events pile up in Deno's queue, unread, far beyond its capacity.
  using f = Deno.openSync(file, { write: true });
  for (let i = 0; i < 5000; i++) f.writeSync(new Uint8Array([i & 0xff]));
  assert.equal(await woke, "event");
});

Deno.test("dir watch: a change no event announced is reported as missed", async () => {
  await using dir = await tempDir("dir-watch-");
  // A watch covers the directory itself, not its subdirectories: a write in one stands for a
  // file system whose changes raise no events.
  await Deno.mkdir(`${dir.path}/sub`);
  const hidden = `${dir.path}/sub/app.db-wal`;
  await Deno.writeFile(hidden, new Uint8Array([0]));
  const { armed, woke } = startWait(dir.path, {
    recheckMs: 300,
    graceMs: 300,
    unchanged: () => Deno.readFileSync(hidden)[0] === 0,
  });
  await armed;
  await Deno.writeFile(hidden, new Uint8Array([1]));
  assert.equal(await woke, "missed");
});

Deno.test("dir watch: an abort ends the wait", async () => {
  await using dir = await tempDir("dir-watch-");
  const abort = new AbortController();
  const { armed, woke } = startWait(dir.path, { signal: abort.signal });
  await armed;
  abort.abort();
  assert.equal(await woke, "aborted");
});

Deno.test("dir watch: a directory that cannot be watched throws, so the caller polls", async () => {
  await using dir = await tempDir("dir-watch-");
  await assert.rejects(
    waitForDirChange(`${dir.path}/missing`, () => Promise.resolve(true), {
      recheckMs: 1000,
      graceMs: 1000,
      signal: new AbortController().signal,
    }),
    /missing: cannot watch with inotify/,
  );
});

Deno.test("dir watch: each quiet re-check doubles the period up to maxRecheckMs", async () => {
  await using dir = await tempDir("dir-watch-");
  const at: number[] = [];
  const t0 = performance.now();
  const woke = await waitForDirChange(dir.path, () => {
    at.push(performance.now() - t0);
    return Promise.resolve(true);
  }, {
    recheckMs: 20,
    maxRecheckMs: 80,
    maxWaitMs: 500,
    graceMs: 1000,
    signal: new AbortController().signal,
  });
  assert.equal(woke, "timeout");
  // Checks at about 0, 20, 60, 140, 220, 300, 380, 460 ms (every 20 ms would be 26 checks).
  assert.ok(at.length >= 5 && at.length <= 10, `${at.length} checks at ${at.map(Math.round)}`);
  const gaps = at.slice(1).map((t, i) => t - at[i]);
  assert.ok(Math.max(...gaps) >= 70, `the longest gap reaches the cap: ${gaps.map(Math.round)}`);
});
