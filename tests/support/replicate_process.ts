/**
 * Runs our `litestream` (main.ts) the way a user does, in subprocesses: `replicate` as a
 * long-running process whose stdout and stderr go to a log file that tests poll with deadlines,
 * and one-shot commands (`restore`, failing `replicate`s) with a hard time limit. Also a
 * long-lived `sqlite3` shell for application-like statements (checkpoints) and log parsing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { waitFor } from "./poll.ts";
import { integrityCheck, readLines, sqlite, SQLITE3 } from "./sqlite_cli.ts";
import { type CliResult, describeResult, MAIN_TS, runLitestream } from "./cli.ts";
import { type LoggedProcess, startLogged } from "./logged_process.ts";
export { type CliResult, describeResult, MAIN_TS, runLitestream } from "./cli.ts";

/** Environment for every child: no colours, no config from the caller's environment. */
export const CHILD_ENV = { NO_COLOR: "1", LITESTREAM_CONFIG: "" };

/** A `sync: new generation` line of our log. */
export interface NewGeneration {
  generation: string;
  reason: string;
}

/** Every `sync: new generation` line in `log` (plain or slog text format), in order. */
export function newGenerations(log: string): NewGeneration[] {
  const re = /sync: new generation.*?\bgeneration=([0-9a-f]{16}) reason=("(?:[^"\\]|\\.)*"|\S+)/g;
  return [...log.matchAll(re)].map((m) => ({
    generation: m[1],
    reason: m[2].startsWith('"') ? JSON.parse(m[2]) : m[2],
  }));
}

/** A running `litestream replicate` (ours). */
export type ReplicateProcess = LoggedProcess;

/**
 * Starts `deno run -A main.ts replicate ...args`, its output appended to `options.logPath`;
 * `options.env` adds to the child's environment.
 */
export function startReplicate(
  args: string[],
  options: { logPath: string; cwd?: string; env?: Record<string, string> },
): ReplicateProcess {
  return startLogged(Deno.execPath(), ["run", "-A", MAIN_TS, "replicate", ...args], {
    ...options,
    name: "replicate",
    env: { ...CHILD_ENV, ...options.env },
  });
}

/**
 * Stops replicate with SIGTERM, asserts it exited 0 (quoting its log otherwise) and returns how
 * long the shutdown took.
 */
export async function stopOk(rep: ReplicateProcess): Promise<number> {
  const { status, ms } = await rep.stop();
  assert.equal(status.code, 0, `replicate exit code ${status.code}; log:\n${await rep.log()}`);
  return ms;
}

/** A restore's outcome: the output path when it succeeded, and the command's result. */
export interface RestoreOutcome {
  path?: string;
  result: CliResult;
}

let restoreCounter = 0;

/**
 * Restores `source` (a replica URL, or a DB path with `-config`) into a fresh file under `dir`
 * with any extra flags, and extra environment (credentials, an emulator's address).
 */
export async function restoreTo(
  dir: string,
  source: string[],
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<RestoreOutcome> {
  const path = `${dir}/restored-${++restoreCounter}-${crypto.randomUUID().slice(0, 8)}.db`;
  const result = await runLitestream(["restore", "-o", path, ...extra, ...source], { env });
  return result.code === 0 ? { path, result } : { result };
}

/** Restores like {@link restoreTo} and returns the output path; throws when the restore fails. */
export async function restoreOk(
  dir: string,
  source: string[],
  extra: string[] = [],
): Promise<string> {
  const r = await restoreTo(dir, source, extra);
  if (!r.path) throw new Error(`restore ${source.join(" ")} failed: ${describeResult(r.result)}`);
  return r.path;
}

/** What a table should hold after restore: row count = last id (ids 1..lastId, no gaps). */
export interface TableExpectation {
  table: string;
  lastId: number;
}

/**
 * Polls restores of `source` until one passes `PRAGMA integrity_check` and holds exactly the
 * expected rows of every table (count and max id equal to `lastId`). Returns the restored path
 * and how long it took. Throws with the last restore's output on timeout.
 */
export async function waitForRestore(
  dir: string,
  source: string[],
  tables: TableExpectation[],
  timeoutMs = 20_000,
  env: Record<string, string> = {},
): Promise<{ path: string; ms: number }> {
  const started = performance.now();
  let last = "";
  try {
    const path = await waitFor(
      `a restore of ${source.join(" ")} holding ${JSON.stringify(tables)}`,
      async () => {
        const { path, result } = await restoreTo(dir, source, [], env);
        if (!path) {
          last = describeResult(result);
          return undefined;
        }
        const ok = await integrityCheck(path).catch((e) => (e as Error).message.split("\n")[0]);
        let got = `integrity: ${ok}`;
        let match = ok === "ok";
        for (const t of tables) {
          const counts = await sqlite(
            path,
            `SELECT count(*), coalesce(max(id), 0) FROM "${t.table}";`,
          ).catch((e) => `error ${(e as Error).message}`);
          got += `; ${t.table}: ${counts}`;
          if (counts !== `${t.lastId}|${t.lastId}`) {
            match = false;
            got += ` missing ids: ${await missingIds(path, t).catch((e) => e.message)}`;
          }
        }
        last = got;
        if (match) return path;
        await Deno.remove(path).catch(() => {});
        return undefined;
      },
      timeoutMs,
      100,
    );
    return { path, ms: performance.now() - started };
  } catch (err) {
    throw new Error(`${(err as Error).message}\nlast attempt: ${last}`, { cause: err });
  }
}

/** Ids in 1..lastId absent from the table (at most 20, comma-separated). */
function missingIds(path: string, t: TableExpectation): Promise<string> {
  return sqlite(
    path,
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${t.lastId}) ` +
      `SELECT group_concat(i) FROM (SELECT i FROM n WHERE i NOT IN (SELECT id FROM "${t.table}") ` +
      `LIMIT 20);`,
  );
}

/**
 * A long-lived `sqlite3` shell on one database, like an application's connection: statements
 * run in order on one connection; `run` returns the output lines of one batch.
 */
export class SqliteShell {
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;
  #stderr: Promise<string>;
  #batch = 0;

  /** Opens `dbPath` in a new `sqlite3` process with the given busy timeout. */
  constructor(readonly dbPath: string, busyTimeoutMs = 1000) {
    this.#child = new Deno.Command(SQLITE3, {
      args: ["-batch", "-cmd", `.timeout ${busyTimeoutMs}`, dbPath],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#lines = readLines(this.#child.stdout);
    this.#stderr = new Response(this.#child.stderr).text();
  }

  /** Runs `sql` and returns its output lines (errors do not stop the shell: see `close`). */
  async run(sql: string): Promise<string[]> {
    const tag = `__done_${++this.#batch}`;
    await this.#stdin.write(new TextEncoder().encode(`${sql}\nSELECT '${tag}';\n`));
    const out: string[] = [];
    while (true) {
      const next = await this.#lines.next();
      if (next.done) throw new Error(`sqlite3 exited: ${(await this.#stderr).trim()}`);
      if (next.value === tag) return out;
      out.push(next.value);
    }
  }

  /** Ends the shell (closing its connection) and returns what it printed on stderr. */
  async close(): Promise<string> {
    await this.#stdin.close().catch(() => {});
    await this.#child.status;
    while (!(await this.#lines.next()).done) { /* drain */ }
    return (await this.#stderr).trim();
  }
}

/** Writes a config file with the given YAML text and returns its path. */
export async function writeConfig(path: string, yaml: string): Promise<string> {
  await Deno.writeTextFile(path, yaml);
  return path;
}
