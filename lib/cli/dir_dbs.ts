/**
 * Replicating the databases under the config's `dir` entries: found at start-up and, with
 * `watch`, while running (created, renamed in, `VACUUM INTO`), each with its own monitor on
 * the {@link Server}; a deleted one's monitor is stopped and its replica left as it is. One
 * database's failure is logged with its path and never stops the others.
 *
 * Watching uses the process's one inotify instance (`lib/os/inotify.ts`): one waiter per
 * directory, woken only by names appearing or going away, subdirectories, and writes to files
 * that may become databases; never by the WAL writes of the databases replicated. Where
 * events cannot be had, the directories are read again every {@link POLL_MS}.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { sleep } from "../os/async.ts";
import { IN_ISDIR, IN_NAME_CHANGES, sharedInotify, WatchLimitError } from "../os/inotify.ts";
import type { DirWatch } from "../os/watch.ts";
import {
  beginsWithSqliteHeader,
  findDatabases,
  isCompanionName,
  listDir,
  type ListedEntry,
  planDir,
} from "../dirs/discover.ts";
import { FDS_PER_DB, fileLimitMessage, fitsOpenFileLimit, openFileLimit } from "../os/rlimit.ts";
import { StoreHealthRegistry } from "../core/store_health.ts";
import { type Config, dbConfigUnder, type DirConfig } from "./config.ts";
import { LocationClaims } from "./config_dir.ts";
import { buildManagedDb, type Managed, type Server } from "./server.ts";

/** How often directories are read again where file-system events cannot be had. */
export const POLL_MS = 1000;

/**
 * Events arriving within this long after a wake are taken in by the same read of the directory:
 * a directory is read at most 5 times a second, however busily a file the pattern matches (but
 * that is not a database) is written.
 */
const SETTLE_MS = 200;

/** The databases of every `dir` entry of a config, added to and removed from a server. */
export class DirDbs {
  readonly #abort = new AbortController();
  /** Databases replicated by this, by path. */
  readonly #dbs = new Map<string, { managed: Managed; entry: DirConfig }>();
  /** Directories searched with `watch`, by path. */
  readonly #dirs = new Map<string, DirState>();
  /** The last problem logged per path, so a repeated one is logged once. */
  readonly #reported = new Map<string, string>();
  readonly #claims = new LocationClaims();
  /** Databases left out for want of descriptors (see `#refuse`). */
  #refused = 0;
  readonly #pathDbs: Set<string>;
  /** Adds and removals one at a time: a database is never added twice or while removed. */
  #queue: Promise<unknown> = Promise.resolve();

  /** For `config`'s `dir` entries; `server` runs the monitors, `stores` paces retries. */
  constructor(
    readonly config: Config,
    readonly server: Server,
    readonly log: Logger,
    readonly stores: StoreHealthRegistry = new StoreHealthRegistry(),
  ) {
    this.#pathDbs = new Set(config.dbs.map((d) => d.path));
    for (const db of config.dbs) this.#claims.claim(db);
  }

  /** How many databases the `dir` entries replicate now. */
  get size(): number {
    return this.#dbs.size;
  }

  /**
   * Finds every entry's databases and starts them (watching the directories of `watch`
   * entries). Throws, naming the entry, when a `dir` cannot be read, or when an entry without
   * `watch` has no database.
   */
  async start(): Promise<void> {
    for (const entry of this.config.dirs) {
      const key = `${entry.key}.dir`;
      const st = await Deno.stat(entry.dir).catch((err) => err as Error);
      if (st instanceof Error || !st.isDirectory) {
        const why = st instanceof Error ? st.message : "not a directory";
        throw new ConfigError(this.config.file, key, `cannot use ${entry.dir}: ${why}`);
      }
      if (entry.watch) {
        await this.#watchDir(entry, entry.dir);
      } else {
        const { dbs, problems } = await findDatabases(entry, (p) => this.#known(p));
        for (const p of problems) this.#report(p.path, "cannot read", p.error);
        for (const path of dbs) await this.#add(entry, path);
      }
      if (!entry.watch && ![...this.#dbs.values()].some((d) => d.entry === entry)) {
        throw new ConfigError(
          this.config.file,
          key,
          `no database matching ${JSON.stringify(entry.pattern)} in ${entry.dir} ` +
            `(set watch: true to wait for them)`,
        );
      }
      this.log.info("replicating directory", {
        dir: entry.dir,
        pattern: entry.pattern,
        recursive: entry.recursive,
        watch: entry.watch,
        databases: [...this.#dbs.values()].filter((d) => d.entry === entry).length,
        ...(this.#refused > 0 ? { "not-replicated-open-file-limit": this.#refused } : {}),
      });
    }
  }

  /** Stops watching; the server stops the databases. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await Promise.all([...this.#dirs.values()].map((d) => d.loop));
    await this.#queue;
  }

  /** True for a database replicated already (by this or by a `path` entry): never opened here. */
  #known(path: string): boolean {
    return this.#dbs.has(path) || this.#pathDbs.has(path);
  }

  /**
   * Starts watching `dir` and searches it; resolves once its first search (and that of its
   * subdirectories) is done. The watch is in place before the search, so nothing created
   * meanwhile is missed.
   */
  async #watchDir(entry: DirConfig, dir: string): Promise<void> {
    if (this.#dirs.has(dir) || this.#abort.signal.aborted) return;
    const state: DirState = { watch: undefined, loop: Promise.resolve(), stopped: false };
    this.#dirs.set(dir, state);
    try {
      state.watch = sharedInotify.watch(
        dir,
        (name, mask) => this.#concerns(entry, dir, name, mask),
      );
    } catch (err) {
      if (err instanceof WatchLimitError && err.first) this.log.warn(err.message);
      this.log.info("polling directory", { dir, every: `${POLL_MS}ms`, reason: err });
    }
    const first = Promise.withResolvers<void>();
    state.loop = this.#dirLoop(entry, dir, state, first.resolve);
    await first.promise;
  }

  /** Whether an event in `dir` may change which databases it holds. */
  #concerns(entry: DirConfig, dir: string, name: string, mask: number): boolean {
    if (mask & IN_ISDIR) return entry.recursive && (mask & IN_NAME_CHANGES) !== 0;
    if (isCompanionName(name) || !entry.matches(name)) return false;
    // A database replicated already: only its deletion or replacement matters here (its own
    // writes wake its monitor, not this).
    if (this.#dbs.has(join(dir, name))) return (mask & IN_NAME_CHANGES) !== 0;
    return true;
  }

  async #dirLoop(
    entry: DirConfig,
    dir: string,
    state: DirState,
    searched: () => void,
  ): Promise<void> {
    const signal = this.#abort.signal;
    const onAbort = () => state.watch?.wake();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal.aborted && !state.stopped) {
        state.watch?.rearm();
        await this.#search(entry, dir);
        searched();
        if (state.watch) await state.watch.wait(2 ** 31 - 1);
        else await sleep(POLL_MS, signal);
        await sleep(SETTLE_MS, signal);
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      searched();
      await state.watch?.close();
    }
  }

  /** Reads `dir` once: new databases added, deleted ones removed, subdirectories followed. */
  async #search(entry: DirConfig, dir: string): Promise<void> {
    let listing: ListedEntry[];
    try {
      listing = await listDir(dir);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
        if (dir === entry.dir) this.log.warn("directory removed", { dir });
        return await this.#dropDir(dir);
      }
      return this.#report(dir, "cannot read directory", err);
    }
    this.#reported.delete(dir);
    const plan = planDir(entry, dir, listing);
    if (entry.recursive) {
      const subdirs = new Set(plan.subdirs);
      for (const d of this.#dirs.keys()) {
        if (dirname(d) === dir && !subdirs.has(d)) await this.#dropDir(d);
      }
      for (const d of plan.subdirs) await this.#watchDir(entry, d);
    }
    const candidates = new Set(plan.candidates);
    for (const [path, { entry: owner }] of this.#dbs) {
      if (owner === entry && dirname(path) === dir && !candidates.has(path)) {
        await this.#remove(path, "database deleted");
      }
    }
    for (const path of plan.candidates) {
      if (this.#known(path)) continue;
      let isDb: boolean;
      try {
        isDb = await beginsWithSqliteHeader(path);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) this.#report(path, "cannot read", err);
        continue;
      }
      if (isDb) await this.#add(entry, path);
    }
  }

  /** Stops searching `dir` and its subdirectories; their databases are removed (deleted). */
  async #dropDir(dir: string): Promise<void> {
    for (const [d, state] of this.#dirs) {
      if (d === dir || d.startsWith(dir + "/")) {
        state.stopped = true;
        state.watch?.wake();
        this.#dirs.delete(d);
      }
    }
    for (const path of [...this.#dbs.keys()]) {
      if (path.startsWith(dir + "/")) await this.#remove(path, "directory removed");
    }
  }

  /** Starts replicating `path`; a failure is logged with its path, the others go on. */
  #add(entry: DirConfig, path: string): Promise<void> {
    return this.#serial(async () => {
      if (this.#known(path) || this.#abort.signal.aborted) return;
      if (!fitsOpenFileLimit(this.#dbs.size + this.#pathDbs.size)) return this.#refuse(path);
      const cfg = dbConfigUnder(entry, path);
      const clash = this.#claims.claim(cfg);
      if (clash) return this.#report(path, "not replicated", clash);
      let managed: Managed;
      try {
        managed = await buildManagedDb(cfg, this.log, this.stores);
      } catch (err) {
        this.#claims.release(path);
        return this.#report(path, "not replicated", err);
      }
      this.#reported.delete(path);
      this.#dbs.set(path, { managed, entry });
      this.server.add(managed);
      this.log.debug("database found", { db: path });
    });
  }

  /**
   * Leaves `path` out: the databases replicated already hold nearly every descriptor the
   * open-file limit allows. Said once with the limit, then once per database at debug level.
   */
  #refuse(path: string): void {
    const limit = openFileLimit();
    const msg = `not replicated: ${this.#dbs.size + this.#pathDbs.size} databases hold about ` +
      `${FDS_PER_DB} descriptors each, the open-file limit is ${limit?.soft}; raise it ` +
      `(ulimit -n, systemd LimitNOFILE=) and restart`;
    if (this.#refused++ === 0) this.log.error(msg, { db: path });
    else this.log.debug(msg, { db: path });
  }

  /** Stops replicating `path` (deleted); its replicas are left as they are. */
  #remove(path: string, why: string): Promise<void> {
    return this.#serial(async () => {
      const found = this.#dbs.get(path);
      if (!found) return;
      this.#dbs.delete(path);
      await this.server.remove(found.managed);
      this.#claims.release(path);
      this.log.info(`${why}: monitor stopped, replicas kept`, { db: path });
    });
  }

  #serial(fn: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Logs a problem with `path` once (again only when it changes). */
  #report(path: string, what: string, err: unknown): void {
    const msg = fileLimitMessage(err) ?? (err instanceof Error ? err.message : String(err));
    if (this.#reported.get(path) === msg) return;
    this.#reported.set(path, msg);
    this.log.error(what, { db: path, error: msg });
  }
}

/** One directory searched with `watch`. */
interface DirState {
  /** Undefined where events cannot be had: the directory is read every {@link POLL_MS}. */
  watch: DirWatch | undefined;
  loop: Promise<void>;
  stopped: boolean;
}
