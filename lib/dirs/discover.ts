/**
 * Finding the databases under a `dir` entry. Pure rules (which names are databases, which
 * subdirectories are descended into, what a database file begins with) and a thin I/O edge
 * that lists directories and reads the first 16 bytes of candidate files.
 *
 * Only a file that begins with the SQLite header is a database; `-wal`, `-shm` and `-journal`
 * files, and meta directories (ours, `.<name>-litestream`, or the entry's `meta-dir`), never
 * are. A file this process already replicates is never opened here: closing any descriptor of
 * a file drops every POSIX lock the process holds on it, SQLite's included (spec §10.1).
 *
 * @module
 */

import { join, relative, sep } from "node:path";
import { isHeldFile } from "../os/held_files.ts";

/** What decides which files under a directory are databases. */
export interface DirRule {
  /** Absolute directory. */
  dir: string;
  /** The name pattern (see `glob.ts`). */
  matches: (name: string) => boolean;
  recursive: boolean;
  /** Absolute root of the meta directories, never searched. */
  metaDir?: string;
}

/** One entry of a directory listing. */
export interface ListedEntry {
  name: string;
  isDirectory: boolean;
  isFile: boolean;
}

/** What to do with a directory's listing. */
export interface DirPlan {
  /** Subdirectories to search (with `recursive`). */
  subdirs: string[];
  /** Files whose first bytes decide whether they are databases. */
  candidates: string[];
}

/** "SQLite format 3\0": the first 16 bytes of every database file. */
const MAGIC = new TextEncoder().encode("SQLite format 3\0");

/** True for a name the rule's pattern matches that is not a companion (`-wal`, `-shm`, `-journal`). */
export function isDatabaseName(rule: DirRule, name: string): boolean {
  return rule.matches(name) && !isCompanionName(name);
}

/** True for SQLite's companion files of a database. */
export function isCompanionName(name: string): boolean {
  return /-(wal|shm|journal)$/.test(name);
}

/** True for the name of a meta directory (`.<name>-litestream`). */
export function isMetaDirName(name: string): boolean {
  return name.startsWith(".") && name.endsWith("-litestream");
}

/** True when `bytes` begin with the SQLite header's magic string. */
export function hasSqliteMagic(bytes: Uint8Array): boolean {
  return bytes.length >= MAGIC.length && MAGIC.every((b, i) => bytes[i] === b);
}

/** Splits a listing of `dir` (under `rule.dir`) into subdirectories to search and candidate files. */
export function planDir(rule: DirRule, dir: string, listing: ListedEntry[]): DirPlan {
  const plan: DirPlan = { subdirs: [], candidates: [] };
  for (const e of listing) {
    const path = join(dir, e.name);
    if (e.isDirectory) {
      if (rule.recursive && !isMetaDirName(e.name) && path !== rule.metaDir) {
        plan.subdirs.push(path);
      }
    } else if (e.isFile && isDatabaseName(rule, e.name)) plan.candidates.push(path);
  }
  return plan;
}

/**
 * `path` relative to the rule's directory with `/` separators, or undefined when the rule
 * does not cover it (outside `dir`, in a subdirectory without `recursive`, a name the pattern
 * does not match, a companion, or inside a meta directory).
 */
export function relativeUnder(rule: DirRule, path: string): string | undefined {
  const rel = relative(rule.dir, path);
  if (rel === "" || rel.startsWith("..") || rel.startsWith(sep)) return undefined;
  const parts = rel.split(sep);
  if (parts.length > 1 && !rule.recursive) return undefined;
  if (parts.slice(0, -1).some(isMetaDirName)) return undefined;
  if (rule.metaDir && !relative(rule.metaDir, path).startsWith("..")) return undefined;
  return isDatabaseName(rule, parts.at(-1)!) ? parts.join("/") : undefined;
}

/** Lists `dir` (the I/O edge of {@link planDir}); throws as `Deno.readDir` does. */
export async function listDir(dir: string): Promise<ListedEntry[]> {
  const out: ListedEntry[] = [];
  for await (const e of Deno.readDir(dir)) {
    // A symbolic link counts as what it points to; a dangling one is skipped.
    if (e.isSymlink) {
      const st = await Deno.stat(join(dir, e.name)).catch(() => undefined);
      if (st) out.push({ name: e.name, isDirectory: st.isDirectory, isFile: st.isFile });
    } else out.push({ name: e.name, isDirectory: e.isDirectory, isFile: e.isFile });
  }
  return out;
}

/**
 * True when the file at `path` begins with the SQLite header; false while it is shorter
 * (being created) or holds something else; throws when it cannot be read (EACCES, …). A file
 * this process's SQLite has open, under this name or another (renamed while replicated), is a
 * database and is not opened (see the module doc).
 */
export async function beginsWithSqliteHeader(path: string): Promise<boolean> {
  if (isHeldFile(path)) return true;
  using file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(MAGIC.length);
  let n = 0;
  while (n < buf.length) {
    const r = await file.read(buf.subarray(n));
    if (r === null) break;
    n += r;
  }
  return hasSqliteMagic(buf.subarray(0, n));
}

/** One problem met while searching, with the path it concerns. */
export interface ScanProblem {
  path: string;
  error: unknown;
}

/**
 * Every database under `rule.dir` now (a one-off search, for start-up without `watch` and for
 * the commands). `known(path)` names databases already replicated: they are taken as they are,
 * never opened. Unreadable directories and files are reported in `problems`, the rest searched.
 */
export async function findDatabases(
  rule: DirRule,
  known: (path: string) => boolean = () => false,
): Promise<{ dbs: string[]; problems: ScanProblem[] }> {
  const dbs: string[] = [];
  const problems: ScanProblem[] = [];
  const pending = [rule.dir];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    let listing: ListedEntry[];
    try {
      listing = await listDir(dir);
    } catch (error) {
      if (dir === rule.dir) throw error;
      problems.push({ path: dir, error });
      continue;
    }
    const plan = planDir(rule, dir, listing);
    pending.push(...plan.subdirs);
    for (const path of plan.candidates) {
      try {
        if (known(path) || await beginsWithSqliteHeader(path)) dbs.push(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) problems.push({ path, error });
      }
    }
  }
  return { dbs: dbs.sort(), problems };
}
