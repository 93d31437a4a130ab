/**
 * Load and readers for follow mode (`restore -f`): a writer process committing transactions
 * that keep invariants on the primary, and reader processes of three SQLite implementations
 * (the `sqlite3` CLI, Python's `sqlite3`, Deno's `node:sqlite`) sampling a followed copy in a
 * loop. Every sample is checked by {@linkcode checkSamples}.
 *
 * The invariants, each true of every state the writer commits:
 * - the ledger's total is {@linkcode LEDGER_TOTAL};
 * - the counter `n` equals the log's highest row and the log holds `min(n, LOG_WINDOW)` rows;
 * - after the migration (at transaction `migrateAt`), `meta.schema` is 2, table `v2` exists and
 *   the connection's own parsed schema (`pragma_table_info`) shows the new column `note`;
 *   before it none of these;
 * - per reader, `n` never decreases.
 *
 * @module
 */

import assert from "node:assert/strict";
import { integrityCheck, readLines, SQLITE3 } from "./sqlite_cli.ts";
import { MAIN_TS } from "./cli.ts";
import { waitFor } from "./poll.ts";
import { type LoggedProcess, startLogged } from "./logged_process.ts";

/** The ledger's constant total. */
export const LEDGER_TOTAL = 2000;
/** Rows the log keeps (older ones are deleted, so pages are freed and the file shrinks). */
export const LOG_WINDOW = 300;

const WRITER_PY = `
import os, random, sqlite3, sys, time
db, stop, migrate_at, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
limit, rate = int(sys.argv[5]), float(sys.argv[6])
c = sqlite3.connect(db, timeout=30, isolation_level=None)
c.execute("PRAGMA auto_vacuum=FULL")
c.execute("PRAGMA journal_mode=WAL")
if rate > 0:
    c.execute("PRAGMA synchronous=NORMAL")
c.execute("BEGIN IMMEDIATE")
c.execute("CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)")
c.execute("CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
c.execute("CREATE TABLE IF NOT EXISTS log(n INTEGER PRIMARY KEY, pad BLOB)")
c.execute("CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER)")
if c.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0:
    c.executemany("INSERT INTO accounts VALUES (?, 100)", [(i,) for i in range(20)])
    c.execute("INSERT INTO counter VALUES (1, 0)")
    c.execute("INSERT INTO meta VALUES ('schema', 1)")
c.execute("COMMIT")
n = c.execute("SELECT n FROM counter").fetchone()[0]
print("ready", n, flush=True)
start, done = time.time(), 0
while not os.path.exists(stop) and (limit == 0 or n < limit):
    if rate > 0:
        # Paced: transaction k is due at start + k / rate; a late writer does not sleep.
        wait = start + done / rate - time.time()
        if wait > 0:
            time.sleep(wait)
    c.execute("BEGIN IMMEDIATE")
    a, b = random.sample(range(20), 2)
    amt = random.randint(1, 50)
    c.execute("UPDATE accounts SET bal = bal - ? WHERE id = ?", (amt, a))
    c.execute("UPDATE accounts SET bal = bal + ? WHERE id = ?", (amt, b))
    n += 1
    c.execute("UPDATE counter SET n = ?", (n,))
    c.execute("INSERT INTO log VALUES (?, randomblob(?))", (n, random.randint(100, 3000)))
    c.execute("DELETE FROM log WHERE n <= ?", (n - ${LOG_WINDOW},))
    if n == migrate_at:
        c.execute("CREATE TABLE v2(x INTEGER)")
        c.execute("INSERT INTO v2 VALUES (1), (2)")
        c.execute("ALTER TABLE accounts ADD COLUMN note TEXT DEFAULT 'x'")
        c.execute("UPDATE meta SET v = 2 WHERE k = 'schema'")
    c.execute("COMMIT")
    done += 1
    print(n, "%.3f" % (time.time() * 1000), flush=True)
    if pause > 0:
        time.sleep(pause)
print("done", n, flush=True)
`;

/** The query every reader runs, one read transaction: `S|total|n|count|max|schema|v2|note`. */
export const SAMPLE_SQL = "SELECT 'S', (SELECT sum(bal) FROM accounts), (SELECT n FROM counter), " +
  "(SELECT count(*) FROM log), (SELECT coalesce(max(n), 0) FROM log), " +
  "(SELECT v FROM meta WHERE k = 'schema'), " +
  "(SELECT count(*) FROM sqlite_master WHERE name = 'v2'), " +
  "(SELECT count(*) FROM pragma_table_info('accounts') WHERE name = 'note');";

const READER_PY = `
import os, sqlite3, sys, time
db, stop, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = sqlite3.connect("file:" + db + "?mode=ro", uri=True, timeout=10, isolation_level=None)
while not os.path.exists(stop):
    t = time.perf_counter()
    try:
        row = c.execute(${JSON.stringify(SAMPLE_SQL)}).fetchone()
        ms = (time.perf_counter() - t) * 1000
        print("|".join(str(v) for v in row) + "|%.3f|%.3f" % (ms, time.time() * 1000), flush=True)
    except Exception as e:
        print("E|" + str(e).replace("\\n", " "), flush=True)
    time.sleep(pause)
`;

const READER_DENO = `
import { DatabaseSync } from "node:sqlite";
const [db, stop, pause] = Deno.args;
const c = new DatabaseSync(db, { readOnly: true, timeout: 10000 });
const q = c.prepare(${JSON.stringify(SAMPLE_SQL)});
const out = (s: string) => Deno.stdout.writeSync(new TextEncoder().encode(s + "\\n"));
const stopped = () => { try { Deno.statSync(stop); return true; } catch { return false; } };
while (!stopped()) {
  const t = performance.now();
  try {
    const row = q.all().map((r) => Object.values(r as Record<string, unknown>))[0];
    const ms = (performance.now() - t).toFixed(3);
    out(row.join("|") + "|" + ms + "|" + (performance.timeOrigin + performance.now()).toFixed(3));
  } catch (e) {
    out("E|" + String((e as Error).message).replaceAll("\\n", " "));
  }
  await new Promise((r) => setTimeout(r, Number(pause) * 1000));
}
`;

/** Reader implementations. */
export type ReaderKind = "sqlite3-cli" | "python" | "node-sqlite";

/** All three. */
export const READER_KINDS: ReaderKind[] = ["sqlite3-cli", "python", "node-sqlite"];

/** A running reader: its lines are collected until it is stopped. */
export interface Reader {
  kind: ReaderKind;
  lines: string[];
  /** Resolves once the process ended and all its output was read. */
  done: Promise<void>;
  child: Deno.ChildProcess;
}

/** Writes the helper scripts into `dir` (once per directory) and returns their paths. */
async function scripts(dir: string): Promise<{ writer: string; py: string; deno: string }> {
  const paths = { writer: `${dir}/writer.py`, py: `${dir}/reader.py`, deno: `${dir}/reader.ts` };
  await Deno.writeTextFile(paths.writer, WRITER_PY);
  await Deno.writeTextFile(paths.py, READER_PY);
  await Deno.writeTextFile(paths.deno, READER_DENO);
  return paths;
}

/**
 * Starts a reader of `kind` on `db`, sampling until the file `stop` exists. The CLI reader is
 * one long-lived `sqlite3 -readonly` connection fed the query in a loop (with a 10 s busy
 * timeout, as the others).
 */
export async function startReader(
  kind: ReaderKind,
  db: string,
  stop: string,
  dir: string,
  pauseMs = 3,
): Promise<Reader> {
  const pause = String(pauseMs / 1000);
  const s = await scripts(dir);
  let cmd: string;
  let args: string[];
  if (kind === "sqlite3-cli") {
    cmd = "/bin/sh";
    const loop = `while [ ! -e "$2" ]; do echo "$3"; sleep ${pause}; done`;
    args = [
      "-c",
      `(${loop}) | "$4" -readonly -batch -cmd ".timeout 10000" "$1" 2>&1 | sed -u 's/^Error/E|Error/'`,
      "sh",
      db,
      stop,
      SAMPLE_SQL,
      SQLITE3,
    ];
  } else if (kind === "python") {
    cmd = "python3";
    args = ["-u", s.py, db, stop, pause];
  } else {
    cmd = Deno.execPath();
    args = ["run", "-A", s.deno, db, stop, pause];
  }
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).spawn();
  const lines: string[] = [];
  const done = (async () => {
    const err = new Response(child.stderr).text();
    for await (const line of readLines(child.stdout)) lines.push(line);
    const e = (await err).trim();
    if (e) lines.push(`E|stderr: ${e}`);
    await child.status;
  })();
  return { kind, lines, done, child };
}

/** A running writer. */
export interface LoadWriter {
  /** The last committed `n`. */
  last(): number;
  /** Epoch milliseconds just after each transaction `n` committed. */
  commits: Map<number, number>;
  /** Waits until `n` reaches `target`. */
  reach(target: number, timeoutMs?: number): Promise<void>;
  /** Stops after the transaction in flight and returns the final `n`. */
  stop(): Promise<number>;
}

/**
 * Starts the writer on `db` (created in WAL mode if missing), committing until stopped, with
 * `pauseMs` between transactions (or paced to `rate` a second, with `synchronous = NORMAL`)
 * and the migration at transaction `migrateAt`. Every commit's wall-clock time is kept.
 */
export async function startWriter(
  db: string,
  dir: string,
  options: { migrateAt: number; pauseMs: number; limit?: number; rate?: number },
): Promise<LoadWriter> {
  const s = await scripts(dir);
  const stop = `${dir}/writer.stop.${crypto.randomUUID().slice(0, 6)}`;
  const child = new Deno.Command("python3", {
    args: [
      "-u",
      s.writer,
      db,
      stop,
      String(options.migrateAt),
      String(options.pauseMs / 1000),
      String(options.limit ?? 0),
      String(options.rate ?? 0),
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let n = -1;
  let finished = false;
  const commits = new Map<number, number>();
  const waiters: (() => void)[] = [];
  const stderr = new Response(child.stderr).text();
  const pump = (async () => {
    for await (const line of readLines(child.stdout)) {
      const m = /^(?:ready |done )?(\d+)(?: ([\d.]+))?$/.exec(line);
      if (m) n = Number(m[1]);
      if (m?.[2]) commits.set(n, Number(m[2]));
      if (line.startsWith("done")) finished = true;
      waiters.splice(0).forEach((w) => w());
    }
    finished = true;
    waiters.splice(0).forEach((w) => w());
  })();
  const reach = async (target: number, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (n < target) {
      if (finished) throw new Error(`writer ended at ${n}: ${await stderr}`);
      if (Date.now() > deadline) throw new Error(`writer reached only ${n} of ${target}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
  await reach(0);
  return {
    last: () => n,
    commits,
    reach,
    async stop() {
      await Deno.writeTextFile(stop, "");
      const status = await child.status;
      await pump;
      const e = (await stderr).trim();
      if (!status.success) throw new Error(`writer failed (${status.code}): ${e}`);
      return n;
    },
  };
}

/** A parsed sample. */
export interface Sample {
  total: number;
  n: number;
  count: number;
  max: number;
  schema: number;
  v2: number;
  note: number;
  /** Query time in ms, when the reader measures it. */
  ms?: number;
  /** Epoch ms when the sample was taken, when the reader says. */
  at?: number;
}

/** Parses a reader's line: a sample, or the error text. */
export function parseSample(line: string): Sample | string {
  const p = line.split("|");
  if (p[0] !== "S" || p.length < 8) return line;
  const [total, n, count, max, schema, v2, note, ms, at] = p.slice(1).map(Number);
  return {
    total,
    n,
    count,
    max,
    schema,
    v2,
    note,
    ms: p.length > 8 ? ms : undefined,
    at: p.length > 9 ? at : undefined,
  };
}

/** What a reader's samples showed. */
export interface SampleReport {
  samples: number;
  errors: string[];
  violations: string[];
  /** Highest `n` seen. */
  maxN: number;
  /** Query times in ms (readers that measure them). */
  latencies: number[];
}

/** Checks every line of a reader against the invariants (see the module doc). */
export function checkSamples(lines: string[], migrateAt: number): SampleReport {
  const r: SampleReport = { samples: 0, errors: [], violations: [], maxN: -1, latencies: [] };
  let prev = -1;
  for (const line of lines) {
    const s = parseSample(line);
    if (typeof s === "string") {
      if (line.trim()) r.errors.push(line);
      continue;
    }
    r.samples++;
    if (s.ms !== undefined) r.latencies.push(s.ms);
    const bad: string[] = [];
    if (s.total !== LEDGER_TOTAL) bad.push(`ledger total ${s.total}`);
    if (s.max !== s.n) bad.push(`counter ${s.n} but log max ${s.max}`);
    if (s.count !== Math.min(s.n, LOG_WINDOW)) bad.push(`log rows ${s.count} at n=${s.n}`);
    const migrated = s.n >= migrateAt;
    if (s.schema !== (migrated ? 2 : 1) || s.v2 !== (migrated ? 1 : 0)) {
      bad.push(`schema ${s.schema}, v2 ${s.v2} at n=${s.n}`);
    }
    if (s.note !== s.v2) bad.push(`parsed schema stale: note column ${s.note}, v2 ${s.v2}`);
    if (s.n < prev) bad.push(`counter went back from ${prev} to ${s.n}`);
    if (bad.length) r.violations.push(`${line}: ${bad.join("; ")}`);
    prev = Math.max(prev, s.n);
    r.maxN = Math.max(r.maxN, s.n);
  }
  return r;
}

/** Starts `deno run -A main.ts restore -f ...args` (ours) with its output appended to `logPath`. */
export function startFollower(args: string[], logPath: string): LoggedProcess {
  return startLogged(Deno.execPath(), ["run", "-A", MAIN_TS, "restore", "-f", ...args], {
    logPath,
    name: "restore -f",
    env: { NO_COLOR: "1", LITESTREAM_CONFIG: "" },
  });
}

/** A database's content as `sqlite3 .dump` prints it (schema and every row), read-only. */
export async function dumpOf(db: string): Promise<string> {
  const out = await new Deno.Command(SQLITE3, {
    args: ["-readonly", "-batch", "-cmd", ".timeout 10000", db, ".dump"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr).trim();
  if (!out.success || err) throw new Error(`sqlite3 .dump ${db}: ${err}`);
  return new TextDecoder().decode(out.stdout);
}

/** Waits until the file replica at `replica` holds a snapshot (a follower can start then). */
export function waitForSnapshot(replica: string, timeoutMs = 30_000): Promise<boolean> {
  return waitFor("the first snapshot in the replica", async () => {
    for await (const g of Deno.readDir(`${replica}/generations`)) {
      for await (const _ of Deno.readDir(`${replica}/generations/${g.name}/snapshots`)) {
        return true;
      }
    }
    return false;
  }, timeoutMs);
}

/**
 * Waits until the follower's output `out` holds the primary `db`'s exact content (`.dump`, read
 * afresh each time: replicate itself writes to the primary) and passes `integrity_check`, and
 * every reader has seen the writer's last commit `last` (`migrateAt` as the writer was given).
 */
export async function waitForConvergence(
  { out, db, readers, last, migrateAt, timeoutMs }: {
    out: string;
    db: string;
    readers: Reader[];
    last: number;
    migrateAt: number;
    timeoutMs: number;
  },
): Promise<void> {
  await waitFor(
    "the follower to reach the primary's content",
    async () => await dumpOf(out) === await dumpOf(db),
    timeoutMs,
    200,
  );
  assert.equal(await integrityCheck(out), "ok");
  try {
    await waitFor(
      "every reader to see the last commit",
      () => readers.every((r) => checkSamples(r.lines, migrateAt).maxN === last),
      20_000,
      100,
    );
  } catch (err) {
    // Which reader lags, and what it last printed: a stuck connection, errors, or an exit.
    const state = readers.map((r) =>
      `${r.kind}: max n ${checkSamples(r.lines, migrateAt).maxN} of ${last}, ` +
      `${r.lines.length} lines, last: ${JSON.stringify(r.lines.slice(-3))}`
    );
    throw new Error(`${(err as Error).message}\n${state.join("\n")}`, { cause: err });
  }
}
