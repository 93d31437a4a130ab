/**
 * The benchmark's git-ignored cache, `<repo>/.cache/bench/`: scratch directories of the
 * scenarios, build-once directories (built in a staging directory renamed into place, so the
 * cache holds either a complete build or nothing) and the test databases cached there.
 *
 * @module
 */

import { REPO_ROOT } from "../../tests/support/litestream_v0313.ts";
import { sqlite } from "../../tests/support/sqlite_cli.ts";

export { REPO_ROOT };

/** Git-ignored directory holding cached replicas and databases, and scratch outputs. */
export const BENCH_CACHE = `${REPO_ROOT}/.cache/bench`;

/** Removes `path` recursively, ignoring a missing path. */
export async function removeTree(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}

/** Scratch directory `<BENCH_CACHE>/runs/<name>` of a scenario, emptied first. */
export async function scratchDir(name: string): Promise<string> {
  const dir = `${BENCH_CACHE}/runs/${name}`;
  await removeTree(dir);
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/**
 * Returns `<BENCH_CACHE>/<key>`, the text of its file `marker` and whether it was built just
 * now, running `build` the first time: `build` fills a staging directory and returns the marker's text, which is written last;
 * then the staging directory is renamed to its place. A failed build leaves nothing behind.
 */
export async function cachedBuild(
  key: string,
  marker: string,
  build: (staging: string) => Promise<string>,
): Promise<{ dir: string; marker: string; built: boolean }> {
  const dir = `${BENCH_CACHE}/${key}`;
  try {
    return { dir, marker: await Deno.readTextFile(`${dir}/${marker}`), built: false };
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(BENCH_CACHE, { recursive: true });
  await removeTree(dir);
  const staging = await Deno.makeTempDir({ dir: BENCH_CACHE, prefix: `${key}.tmp-` });
  try {
    const text = await build(staging);
    await Deno.writeTextFile(`${staging}/${marker}`, text);
    await Deno.rename(staging, dir);
    return { dir, marker: text, built: true };
  } catch (err) {
    await removeTree(staging);
    throw err;
  }
}

/**
 * Returns `<BENCH_CACHE>/<key>/app.db`, a WAL-mode database of about `bytes` bytes (table
 * `t(id INTEGER PRIMARY KEY, v BLOB)`, one 3,000-byte random blob per 4 KiB page), building it
 * with the sqlite3 CLI the first time.
 */
export async function cachedDatabase(
  key: string,
  bytes: number,
  log: (m: string) => void,
): Promise<string> {
  const { dir } = await cachedBuild(key, "ready", async (staging) => {
    log(`[${key}] creating a ${(bytes / 1e6).toFixed(0)} MB database`);
    await createDatabase(`${staging}/app.db`, bytes);
    return new Date().toISOString() + "\n";
  });
  return `${dir}/app.db`;
}

/** Creates a WAL-mode database of about `bytes` bytes of random rows (see {@link cachedDatabase}). */
export async function createDatabase(path: string, bytes: number): Promise<void> {
  const rows = Math.ceil(bytes / 4096);
  await sqlite(
    path,
    [
      "PRAGMA page_size = 4096;",
      "PRAGMA journal_mode = WAL;",
      "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);",
      "BEGIN;",
      `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ${rows})`,
      `  INSERT INTO t (id, v) SELECT i, randomblob(3000) FROM c;`,
      "COMMIT;",
      "PRAGMA wal_checkpoint(TRUNCATE);",
    ].join("\n"),
  );
}

/**
 * Makes a database that a replicator used look fresh again: checkpoints its WAL (TRUNCATE) and
 * removes the replicator's shadow directory (`.<name>-litestream`), so the next replicator
 * starts a new generation with a snapshot.
 */
export async function resetDatabase(path: string): Promise<void> {
  await sqlite(path, "PRAGMA wal_checkpoint(TRUNCATE);");
  const slash = path.lastIndexOf("/");
  await removeTree(`${path.slice(0, slash)}/.${path.slice(slash + 1)}-litestream`);
}
