/**
 * Directory entries of the config (`dbs[]` with `dir`, Litestream v0.5's keys): their
 * parsing, the configuration of each database found under one (its meta directory and its
 * replicas' locations, the database's path relative to `dir` appended), and the check that no
 * two databases share a meta directory or a replica location. Pure.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { ConfigError, LitestreamError } from "../errors.ts";
import { compileGlob } from "../dirs/glob.ts";
import { type DirRule, relativeUnder } from "../dirs/discover.ts";

export { relativeUnder };
import { defaultMetaPath } from "../core/meta.ts";
import { replicaForSubpath, replicaLocationKey } from "./config_replica.ts";
import type { Validator } from "./config_validator.ts";
import type { DbConfig } from "./config.ts";

/** The keys only a directory entry takes. */
export const DIR_KEYS = ["dir", "pattern", "recursive", "watch", "meta-dir"];

/** A `dbs[]` entry with `dir`: every database found under it shares `db`'s settings. */
export interface DirConfig extends DirRule {
  /** Where it is in the config, for messages (`dbs[2]`). */
  key: string;
  /** Absolute directory. */
  dir: string;
  /** Glob on file names (Go's `filepath.Match`). */
  pattern: string;
  /** `pattern` compiled. */
  matches: (name: string) => boolean;
  recursive: boolean;
  watch: boolean;
  /** Absolute root of the meta directories; default: each beside its database. */
  metaDir?: string;
  /** Settings and replicas of every database found (`path` is the dir itself). */
  db: DbConfig;
}

/**
 * Reads the directory keys of entry `o` (`key` names it). Returns undefined for a `path`
 * entry, after checking that it uses none of them; `expand` makes paths absolute.
 */
export function parseDirKeys(
  v: Validator,
  o: Record<string, unknown>,
  key: string,
  expand: (p: string) => string,
): Omit<DirConfig, "db"> | undefined {
  const dir = v.string(o.dir, `${key}.dir`);
  if (dir === undefined || dir === "") {
    for (const k of DIR_KEYS.slice(1)) {
      if (o[k] !== undefined) throw new ConfigError(v.file, `${key}.${k}`, "requires dir");
    }
    if (dir === "") throw new ConfigError(v.file, `${key}.dir`, "must not be empty");
    return undefined;
  }
  if (o.path !== undefined) {
    throw new ConfigError(v.file, `${key}.dir`, "cannot specify both path and dir");
  }
  if (o["meta-path"] !== undefined) {
    throw new ConfigError(
      v.file,
      `${key}.meta-path`,
      "cannot be used with dir (use meta-dir for the databases found)",
    );
  }
  const pattern = v.string(o.pattern, `${key}.pattern`);
  if (!pattern) throw new ConfigError(v.file, `${key}.pattern`, 'required with dir (e.g. "*.db")');
  const matches = compileGlob(pattern);
  if (typeof matches === "string") throw new ConfigError(v.file, `${key}.pattern`, matches);
  const metaDir = v.string(o["meta-dir"], `${key}.meta-dir`);
  return {
    key,
    dir: expand(dir),
    pattern,
    matches,
    recursive: v.bool(o.recursive, `${key}.recursive`) ?? false,
    watch: v.bool(o.watch, `${key}.watch`) ?? false,
    metaDir: metaDir ? expand(metaDir) : undefined,
  };
}

/** The configuration of the database at `path` (absolute, covered by `entry`). */
export function dbConfigUnder(entry: DirConfig, path: string): DbConfig {
  const rel = relativeUnder(entry, path);
  if (rel === undefined) {
    throw new LitestreamError(`${path} is not a database of ${entry.key} (${entry.dir})`);
  }
  const metaPath = entry.metaDir
    ? join(entry.metaDir, dirname(rel), `.${basename(rel)}-litestream`)
    : undefined;
  return {
    ...entry.db,
    path,
    metaPath,
    replicas: entry.db.replicas.map((r) => replicaForSubpath(r, rel)),
  };
}

/**
 * What each database claims for itself (its meta directory and every replica location), so
 * that two that would share one are refused, naming both.
 */
export class LocationClaims {
  readonly #owners = new Map<string, string>();
  readonly #byDb = new Map<string, string[]>();

  /** Claims `db`'s locations; returns an error naming the other database when one is taken. */
  claim(db: DbConfig): LitestreamError | undefined {
    const keys = [
      `meta|${db.metaPath ?? defaultMetaPath(db.path)}`,
      ...db.replicas.map((r) => `replica|${replicaLocationKey(r)}`),
    ];
    for (const k of keys) {
      const owner = this.#owners.get(k);
      if (owner !== undefined && owner !== db.path) {
        const what = k.startsWith("meta|") ? "meta directory" : "replica location";
        return new LitestreamError(
          `${db.path} and ${owner} would share a ${what} (${k.slice(k.indexOf("|") + 1)})`,
        );
      }
    }
    for (const k of keys) this.#owners.set(k, db.path);
    this.#byDb.set(db.path, keys);
    return undefined;
  }

  /** Gives up what `path` claimed (its database is no longer replicated). */
  release(path: string): void {
    for (const k of this.#byDb.get(path) ?? []) this.#owners.delete(k);
    this.#byDb.delete(path);
  }
}
