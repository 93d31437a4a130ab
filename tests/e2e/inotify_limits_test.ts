/**
 * `replicate` with many databases against the user's inotify limits: however many databases
 * and directories, the process holds one inotify instance (Linux allows a user 128, and one per
 * database once took them all from the application beside us), with one watch per directory,
 * seen in /proc/<pid>/fd and fdinfo. When watches run out (a real ENOSPC, from a lowered limit
 * in a user namespace of the test's own), the limit to raise is named once and only the
 * databases without a watch poll. Commits reach the replicas either way.
 */

import assert from "node:assert/strict";
import { tempDir, waitFor } from "../support/poll.ts";
import { createWriterTable, sqlite } from "../support/sqlite_cli.ts";
import { startLogged } from "../support/logged_process.ts";
import {
  MAIN_TS,
  type ReplicateProcess,
  startReplicate,
  waitForRestore,
} from "../support/replicate_process.ts";
import { inotifyInstances } from "../support/proc_inotify.ts";

/** A database and its one file replica. */
interface Db {
  path: string;
  replica: string;
}

/** `dirs` directories under `root`/data holding `perDir` databases each (WAL mode, table t). */
async function createDbs(root: string, dirs: number, perDir: number): Promise<Db[]> {
  const dbs: Db[] = [];
  for (let d = 0; d < dirs; d++) {
    await Deno.mkdir(`${root}/data/d${d}`, { recursive: true });
    for (let j = 0; j < perDir; j++) {
      dbs.push({ path: `${root}/data/d${d}/db${j}.db`, replica: `${root}/replicas/d${d}-db${j}` });
    }
  }
  // A few sqlite3 processes at a time: the machine's cores are shared.
  for (let i = 0; i < dbs.length; i += 8) {
    await Promise.all(dbs.slice(i, i + 8).map((db) => createWriterTable(db.path)));
  }
  return dbs;
}

/** A config for `dbs` with debug logging (the idle lines) and short intervals; returns its path. */
async function writeConfig(root: string, dbs: Db[]): Promise<string> {
  let y = "logging:\n  level: debug\ndbs:\n";
  for (const db of dbs) {
    y += `  - path: ${db.path}\n    monitor-interval: 200ms\n    replicas:\n`;
    y += `      - path: ${db.replica}\n        sync-interval: 500ms\n`;
  }
  await Deno.writeTextFile(`${root}/litestream.yml`, y);
  return `${root}/litestream.yml`;
}

const IDLE = /idle: waiting for file-system events.*? db=(\S+)/g;

/** The databases that have logged going idle on events; throws with the log if replicate exited. */
async function idleDbs(rep: ReplicateProcess): Promise<Set<string>> {
  const log = await rep.log();
  if (rep.exited) throw new Error(`replicate exited; log:\n${log}`);
  return new Set([...log.matchAll(IDLE)].map((m) => m[1]));
}

/** Commits one row to each of `dbs` and waits until a restore of each replica holds it. */
async function commitAndRestore(root: string, dbs: Db[]): Promise<void> {
  for (const db of dbs) await sqlite(db.path, "INSERT INTO t VALUES (1, randomblob(100));");
  for (const db of dbs) {
    await waitForRestore(root, [`file://${db.replica}`], [{ table: "t", lastId: 1 }]);
  }
}

/** Log lines at warn or error level. */
function problems(log: string): string[] {
  return log.split("\n").filter((l) => /level=(ERROR|WARN)| (ERROR|WARN) /.test(l));
}

/** Whether a fresh process can create an inotify instance (libc's inotify_init1 via FFI). */
async function anotherProcessGetsInotify(): Promise<string> {
  const code = 'const l = Deno.dlopen("libc.so.6", { inotify_init1: { parameters: ["i32"], ' +
    'result: "i32" } }).symbols; console.log(l.inotify_init1(0));';
  const out = await new Deno.Command(Deno.execPath(), { args: ["eval", "--allow-ffi", code] })
    .output();
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("replicate: 150 idle databases in 50 directories hold one inotify instance, a watch per directory", async () => {
  await using dir = await tempDir("inotify-limits-");
  const DIRS = 50;
  const dbs = await createDbs(dir.path, DIRS, 3);
  const cfg = await writeConfig(dir.path, dbs);
  await using rep = startReplicate(["-config", cfg], { logPath: `${dir.path}/replicate.log` });
  await waitFor(
    "every database idle on file-system events",
    async () => (await idleDbs(rep)).size === dbs.length,
    45_000,
    250,
  );
  // Every directory's watch is in place once each of its databases waits (they may still be
  // arming when the last idle line is written).
  const instances = await waitFor("a watch per directory", async () => {
    const found = await inotifyInstances(rep.pid);
    return found.length === 1 && found[0].watches === DIRS ? found : undefined;
  }, 10_000);
  assert.equal(instances.length, 1, "one inotify instance for the whole process");
  // The user's instances are not used up: another process of this user still gets one.
  assert.match(await anotherProcessGetsInotify(), /^\d+$/, "inotify_init1 in another process");

  // Commits to databases sharing a directory and in other directories all ship.
  await commitAndRestore(dir.path, [dbs[0], dbs[1], dbs[dbs.length - 1]]);
  assert.equal((await inotifyInstances(rep.pid)).length, 1, "still one instance");
  const { status } = await rep.stop();
  assert.equal(status.code, 0, `replicate exit code ${status.code}`);
  assert.deepEqual(problems(await rep.log()), [], "no warnings or errors");
});

/** Whether this machine lets an unprivileged user create a user namespace (for its own limits). */
const userNamespaces = new Deno.Command("unshare", { args: ["-Ur", "true"] }).outputSync().success;

Deno.test({
  name:
    "replicate: out of inotify watches, the limit is named once and only databases without a watch poll",
  ignore: !userNamespaces,
  async fn() {
    await using dir = await tempDir("inotify-limits-");
    const dbs = await createDbs(dir.path, 4, 1);
    const cfg = await writeConfig(dir.path, dbs);
    // A user namespace whose own watch limit is 2: inotify_add_watch fails with ENOSPC there
    // from the third watch on, while the system's limits stay as they are.
    const script = 'echo 2 > /proc/sys/user/max_inotify_watches && exec "$0" "$@"';
    const args = ["-Ur", "sh", "-c", script, Deno.execPath(), "run", "-A", MAIN_TS, "replicate"];
    await using rep = startLogged("unshare", [...args, "-config", cfg], {
      logPath: `${dir.path}/replicate.log`,
      name: "replicate",
      env: { NO_COLOR: "1", LITESTREAM_CONFIG: "" },
    });
    const polling = /polling every monitor-interval while idle.*? db=(\S+)/g;
    // All four go idle; the two that found no watch left say so and poll.
    await waitFor(
      "four databases idle, two of them polling",
      async () => {
        const log = await rep.log();
        return (await idleDbs(rep)).size === 4 && [...log.matchAll(polling)].length === 2;
      },
      30_000,
      250,
    );
    const warned = problems(await rep.log());
    assert.equal(warned.length, 1, `one warning:\n${warned.join("\n")}`);
    assert.match(
      warned[0],
      /inotify watches ran out; raise \/proc\/sys\/fs\/inotify\/max_user_watches/,
    );
    const instances = await waitFor("the two watches in place", async () => {
      const found = await inotifyInstances(rep.pid);
      return found.length === 1 && found[0].watches === 2 ? found : undefined;
    }, 10_000);
    assert.equal(instances.length, 1);

    await commitAndRestore(dir.path, dbs);
    const { status } = await rep.stop();
    assert.equal(status.code, 0, `replicate exit code ${status.code}`);
    assert.equal(problems(await rep.log()).length, 1, "no other warning or error");
  },
});
