/**
 * Runs replication for every configured database: a monitor loop per
 * database and the loops of each replica, each independent of the others,
 * and an orderly shutdown that ships everything before closing.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { sleep } from "../os/async.ts";
import { trimNativeHeap } from "../os/libc.ts";
import { inotifyUnavailable, WatchLimitError } from "../os/inotify.ts";
import type { DirWake } from "../os/dir_watch.ts";
import type { DbConfig } from "./config.ts";
import type { ShutdownSync } from "./config_ops.ts";
import { DB } from "../core/db.ts";
import { SyncPace } from "../core/sync_pace.ts";
import { checkDatabaseFile, MetaLockedError } from "../core/handles.ts";
import { ConfigError, LitestreamError } from "../errors.ts";
import { fileLimitMessage } from "../os/rlimit.ts";
import { removeIfExists } from "../os/fs.ts";
import type { Logger } from "../log.ts";
import { Replica } from "../core/replica.ts";
import { StoreHealthRegistry } from "../core/store_health.ts";
import { replicaClientFromConfig } from "./replica_client_from_config.ts";
import { formatDuration } from "./duration.ts";
import { validateInProcess } from "../core/validation.ts";
import { DEFAULT_LEASE_TTL, Lease } from "../core/lease.ts";
import { admitCheckpointsEnabled } from "../core/checkpoint.ts";
import { replicatorIdentity } from "../core/lease_identity.ts";
import { parseDuration } from "./duration.ts";

/** A database with its replicas and monitor interval. */
export interface Managed {
  db: DB;
  replicas: Replica[];
  monitorInterval: number;
}

/** Options of `buildManaged`. */
export interface BuildOptions {
  /** Take every replica's lease from a live holder (`replicate -force`). */
  force?: boolean;
}

/** Builds the monitors and replicas for `dbs`, checking what can be checked before starting. */
export async function buildManaged(
  dbs: DbConfig[],
  log: Logger,
  options: BuildOptions = {},
  stores: StoreHealthRegistry = new StoreHealthRegistry(),
): Promise<Managed[]> {
  const out: Managed[] = [];
  for (const cfg of dbs) out.push(await buildManagedDb(cfg, log, stores, options));
  return out;
}

/**
 * Builds the monitor and replicas of one database; throws (naming it) when its path or a
 * replica cannot be used. Replicas of one store share `stores`' retry pacing.
 */
export async function buildManagedDb(
  cfg: DbConfig,
  log: Logger,
  stores: StoreHealthRegistry,
  options: BuildOptions = {},
): Promise<Managed> {
  const ttl = leaseTtl();
  // A bad value fails at start-up, naming the variable.
  const admitCheckpoints = admitCheckpointsEnabled();
  await checkDatabaseFile(cfg.path); // bad paths fail at start-up, naming the file
  const dbLog = log.with({ db: cfg.path });
  const db = new DB({ ...cfg, admitCheckpoints }, dbLog);
  const modes = await modesFor(cfg.path);
  const replicas: Replica[] = [];
  for (const r of cfg.replicas) {
    if (r.age && r.age.recipients.length === 0) {
      // v0.3.13 would write such a replica unencrypted, then fail to read it back.
      throw new ConfigError(
        r.age.file,
        `${r.age.key}.recipients`,
        "replicate needs at least one age recipient to encrypt to (identities alone only read)",
      );
    }
    const replicaLog = dbLog.with({ replica: r.name });
    const client = await replicaClientFromConfig(r, modes, replicaLog);
    if (client.type === "file") await checkWritable(client.location, r.name);
    const lease = new Lease(
      client,
      () => replicatorIdentity(db.metaPath),
      { ttl, force: options.force },
      replicaLog,
    );
    const replica = new Replica(
      db,
      client,
      r,
      replicaLog,
      stores.for(client.location, client.store),
      lease,
    );
    db.replicas.push(replica);
    replicas.push(replica);
    dbLog.info("replicating to", {
      name: r.name,
      type: r.type,
      "sync-interval": formatDuration(r.syncInterval),
      location: client.location,
    });
  }
  return { db, replicas, monitorInterval: cfg.monitorInterval };
}

/** How `Server.#finish` tries final replica syncs again (see {@link finalSync}). */
interface FinalRetry {
  /** No attempt starts after this (ms since the epoch). */
  deadline: number;
  interval: number;
  /** Called as each replica's final sync ends, before its lease is released. */
  ended?: (r: Replica) => void;
}

/** One attempt per replica, however long it takes (v0.3.13's shutdown, and closing a database). */
const ONE_ATTEMPT: FinalRetry = { deadline: Infinity, interval: 0 };

/**
 * The final sync of `r`, tried again every `interval` ms after a failure while the next attempt
 * would start before `deadline`; false (logged) when it did not succeed. Only a replica whose
 * store was working when the shutdown began is tried again: one that never reached it (a wrong
 * key or credentials file) or was failing already (an outage) gets one attempt, as waiting on
 * it would only hold the exit.
 */
async function finalSync(r: Replica, deadline: number, interval: number): Promise<boolean> {
  const retry = deadline !== Infinity && r.activity.failingSince === undefined &&
    r.lastKnownPos() !== undefined;
  for (;;) {
    try {
      await r.sync();
      return true;
    } catch (err) {
      if (!retry || Date.now() + interval >= deadline) {
        r.log.error("final replica sync failed", { error: err });
        return false;
      }
      r.log.warn("final replica sync failed; retrying", {
        error: err,
        in: formatDuration(interval),
      });
      await sleep(interval);
    }
  }
}

/** Runs the loops of every managed database until `stop()`. */
export class Server {
  readonly #abort = new AbortController();
  /** The loops of each started database, and what ends them alone (see `remove`). */
  readonly #running = new Map<Managed, { abort: AbortController; done: Promise<unknown> }>();
  #started = false;
  /** The pending trim of the C heap (see `#changed`); none while every database is idle. */
  #trimTimer: ReturnType<typeof setTimeout> | undefined;
  /** A database changed since the pending trim was armed. */
  #changedSinceTrim = false;

  /**
   * Creates a server for the managed databases; call `start()`. `managed` is the live list:
   * `add` and `remove` change it (metrics read it).
   */
  constructor(readonly managed: Managed[], readonly log: Logger) {}

  /** Starts every loop. */
  start(): void {
    this.#started = true;
    for (const m of this.managed) this.#run(m);
  }

  /**
   * Arms the process's one trim of the C heap, every {@link TRIM_INTERVAL_MS} while databases
   * change and once after they stop: glibc keeps what snapshots and syncs freed mapped for reuse,
   * which at a thousand databases was some 60 MB of resident memory holding nothing. Idle, no
   * timer runs: each trim makes the next allocations fault their pages in again.
   */
  #changed(): void {
    if (this.#trimTimer !== undefined) {
      this.#changedSinceTrim = true;
      return;
    }
    if (this.#abort.signal.aborted) return;
    this.#trimTimer = setTimeout(() => {
      this.#trimTimer = undefined;
      trimNativeHeap();
      if (this.#changedSinceTrim) {
        this.#changedSinceTrim = false;
        this.#changed();
      }
    }, TRIM_INTERVAL_MS);
    Deno.unrefTimer(this.#trimTimer);
  }

  /** Adds a database found while running (see `dir_dbs.ts`) and starts its loops. */
  add(m: Managed): void {
    this.managed.push(m);
    if (this.#started && !this.#abort.signal.aborted) this.#run(m);
  }

  /**
   * Stops one database's loops, ships what its shadow WAL holds, and closes it; its replicas
   * are left as they are. For a database deleted while replicated.
   */
  async remove(m: Managed): Promise<void> {
    const i = this.managed.indexOf(m);
    if (i < 0) return;
    this.managed.splice(i, 1);
    const running = this.#running.get(m);
    this.#running.delete(m);
    running?.abort.abort();
    await running?.done;
    await this.#finish(m, false);
  }

  #run(m: Managed): void {
    m.db.changed.listen(() => this.#changed());
    const abort = new AbortController();
    const signal = AbortSignal.any([this.#abort.signal, abort.signal]);
    const done = Promise.all([
      this.#monitor(m, signal),
      ...m.replicas.map((r) => r.run(signal)),
      ...m.replicas.map((r) => validationLoop(m.db, r, signal)),
    ]).catch((err) => m.db.log.error("replication stopped", { error: err }));
    this.#running.set(m, { abort, done });
  }

  /**
   * Stops the loops, runs a final sync of each database and replica, and closes the databases.
   * Resolves false when a final sync failed (it is logged): something committed may be unshipped.
   *
   * With a `timeout` (`shutdown-sync-timeout`), a failed replica sync is tried again every
   * `interval` while time is left (unless the replica was failing already), and whatever is
   * still under way when the time is up (an upload to a store that stopped answering) is logged
   * and given up: resolves false then, and the process can exit. Without one, each replica gets
   * one attempt, however long it takes.
   */
  async stop(sync: ShutdownSync): Promise<boolean> {
    clearTimeout(this.#trimTimer);
    this.#abort.abort();
    const deadline = sync.timeout > 0 ? Date.now() + sync.timeout : Infinity;
    // Replicas whose final sync has not ended (a lease release after it may still be under way).
    const syncing = new Set(this.managed.flatMap((m) => m.replicas.filter((r) => !r.refused())));
    const retry: FinalRetry = {
      deadline,
      interval: sync.interval,
      ended: (r) => syncing.delete(r),
    };
    const work = (async () => {
      await Promise.all([...this.#running.values()].map((r) => r.done));
      const results = await Promise.all(this.managed.map((m) => this.#finish(m, true, retry)));
      return results.every(Boolean);
    })();
    if (deadline === Infinity) return await work;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeUp = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), sync.timeout);
    });
    const ok = await Promise.race([work, timeUp]);
    clearTimeout(timer);
    if (ok !== undefined) return ok;
    const timeout = formatDuration(sync.timeout);
    for (const r of syncing) {
      r.log.error("final replica sync unfinished at shutdown-sync-timeout; given up", { timeout });
    }
    // Every final sync ended: only lease releases were left (their leases expire on their own).
    if (syncing.size === 0) this.log.warn("lease releases unfinished at shutdown-sync-timeout");
    return syncing.size === 0;
  }

  /**
   * A final sync (of the database too when `syncDb`) and its replicas, then close; false if a
   * sync failed. A replica whose final sync failed keeps its lease (it expires on its own):
   * releasing it would take the store that just failed.
   */
  async #finish(
    { db, replicas }: Managed,
    syncDb: boolean,
    retry: FinalRetry = ONE_ATTEMPT,
  ): Promise<boolean> {
    // Standing by (see `standBy`): nothing to ship, and no reason to open the database again.
    if (!db.open && replicas.length > 0 && replicas.every((r) => r.refused())) return true;
    let ok = true;
    try {
      if (syncDb) await db.sync();
      await Promise.all(
        replicas.map(async (r) => {
          const synced = await finalSync(r, retry.deadline, retry.interval);
          retry.ended?.(r);
          if (!synced) {
            ok = false;
            return;
          }
          await r.release().catch((err) => r.log.warn("lease not released", { error: err }));
        }),
      );
    } catch (err) {
      // Waiting for the process that holds the database: that one ships what is committed.
      if (err instanceof MetaLockedError) return true;
      ok = false;
      db.log.error("final sync failed", { error: err });
    } finally {
      await db.close().catch((err) => db.log.error("close failed", { error: err }));
    }
    return ok;
  }

  /**
   * Syncs the database at most once per monitor interval that finds something new (see
   * `SyncPace`). Once a tick finds nothing new, the loop waits on file-system events instead of
   * ticking, re-checking the WAL every {@link IDLE_RECHECK_TICKS} intervals and less often the
   * longer it stays idle; the first change events miss, or events being unavailable, sends it
   * back to polling.
   */
  async #monitor(m: Managed, signal: AbortSignal): Promise<void> {
    const { db, monitorInterval } = m;
    if (monitorInterval <= 0) return; // v0.3.13: 0 disables monitoring
    let lastError = "";
    const unavailable = inotifyUnavailable();
    if (unavailable) {
      db.log.info("polling every monitor-interval while idle", { reason: unavailable });
    }
    let watch = !unavailable;
    let watching = false;
    const pace = new SyncPace(monitorInterval);
    while (!signal.aborted) {
      if (await standBy(m, signal)) continue;
      const started = performance.now();
      try {
        await db.sync();
        lastError = "";
      } catch (err) {
        const msg = fileLimitMessage(err) ?? (err instanceof Error ? err.message : String(err));
        // Log a repeating failure once, not every second.
        if (msg !== lastError) db.log.error("sync error", { error: msg });
        lastError = msg;
      }
      pace.synced(started, db.quietSyncs === 0);
      const idle = watch && db.quietSyncs >= QUIET_TICKS_BEFORE_WATCH;
      if (idle && !watching) db.log.debug("idle: waiting for file-system events on the WAL");
      watching = idle;
      let woke: DirWake | undefined;
      if (watching) {
        try {
          woke = await db.waitForWalChange({
            recheckMs: IDLE_RECHECK_TICKS * monitorInterval,
            maxRecheckMs: IDLE_RECHECK_MAX_TICKS * monitorInterval,
            probeMs: monitorInterval,
            graceMs: EVENT_GRACE_MS,
            signal,
          });
          if (woke === "missed") {
            watch = false;
            db.log.warn(
              "file-system events missed a change to the WAL; polling every monitor-interval",
            );
          }
        } catch (err) {
          watch = false;
          // Out of watches: the limit to raise is named once for the whole process.
          if (err instanceof WatchLimitError && err.first) db.log.warn(err.message);
          db.log.info("polling every monitor-interval while idle", { reason: err });
        }
      }
      // A checkpointer found waiting on us is let through at once, as a pause's probe does.
      if (woke === "interrupted") continue;
      await db.pause(pace.delay(woke, performance.now()), signal, woke === "event");
    }
  }
}

/**
 * While another replicator holds every replica of the database, this one stands by: it closes
 * the database (no read transaction, no checkpoints: two replicators' read transactions keep
 * each other's checkpoints from restarting the WAL, which then grows without bound) and waits
 * until a replica's lease is taken (see `lease.ts`). Returns whether it waited.
 */
async function standBy({ db, replicas }: Managed, signal: AbortSignal): Promise<boolean> {
  if (replicas.length === 0 || !replicas.every((r) => r.refused())) return false;
  const seen = db.changed.version;
  if (db.open) {
    await db.close();
    db.log.warn(
      "another replicator writes every replica of this database: standing by (database closed, " +
        "no checkpoints) until one of them is free",
    );
  }
  await db.changed.wait(seen, signal);
  return true;
}

/** How often the C heap's free memory is given back to the OS (see `Server.start`). */
const TRIM_INTERVAL_MS = 5000;

/**
 * Quiet ticks in a row before the monitor stops polling and waits on file-system events. One:
 * a commit that comes more than an interval after the last one then ships at once, not at the
 * next tick (0–1 s later); commits closer together keep the ticks' rate.
 */
const QUIET_TICKS_BEFORE_WATCH = 1;

/**
 * While waiting on events, the WAL is still checked after this many monitor intervals, then
 * after twice as many each time it was found unchanged, up to {@link IDLE_RECHECK_MAX_TICKS}.
 * The re-checks only find file systems that do not report writes, a property of the mount, not
 * of one database; each costs about 0.2 ms, so at a thousand idle databases a cap of 60
 * intervals spent 0.3 % of a core on them (`bench/RESULTS.md`), and 300 spends a fifth of that.
 */
const IDLE_RECHECK_TICKS = 10;
const IDLE_RECHECK_MAX_TICKS = 300;

/**
 * How long an event may trail a change before it counts as missed. The kernel queues it within
 * the writer's system call; generous all the same, as a false "missed" ends watching for good.
 */
const EVENT_GRACE_MS = 1000;

/** Validates a replica every `validation-interval`, logging the outcome (never a false mismatch: see validate.ts). */
async function validationLoop(db: DB, replica: Replica, signal: AbortSignal): Promise<void> {
  const interval = replica.settings.validationInterval ?? 0;
  if (interval <= 0) return;
  while (!signal.aborted) {
    await sleep(interval, signal);
    if (signal.aborted || !db.pos() || replica.refused()) continue;
    try {
      const r = await validateInProcess(db, replica, Math.max(30_000, interval));
      replica.stats.validations[r.ok ? "ok" : "error"]++;
      const attrs = {
        position: r.position,
        primary: r.primary,
        replica: r.restored,
        ms: r.ms,
        error: r.error,
      };
      if (r.ok) replica.log.info("validator: status=ok", attrs);
      else replica.log.error("validator: status=mismatch", attrs);
    } catch (err) {
      replica.stats.validations.error++;
      replica.log.error("validator: failed", { error: err });
    }
  }
}

/**
 * The replica lease's time-to-live: `LITESTREAM_LEASE_TTL` (a duration, at least 3s), else
 * {@link DEFAULT_LEASE_TTL}. A replicator that crashed holds its replicas this long.
 */
function leaseTtl(): number {
  const value = Deno.env.get("LITESTREAM_LEASE_TTL");
  if (!value) return DEFAULT_LEASE_TTL;
  const ms = parseDuration(value);
  if (ms === undefined || ms < 3000) {
    throw new LitestreamError(
      `LITESTREAM_LEASE_TTL: invalid duration "${value}" (expected e.g. 6m, at least 3s)`,
    );
  }
  return ms;
}

/** File and directory modes for replica objects: the database's, as v0.3.13 does. */
async function modesFor(dbPath: string): Promise<{ fileMode: number; dirMode: number }> {
  const mode = async (p: string, fallback: number) =>
    await Deno.stat(p).then((s) => (s.mode ?? fallback) & 0o777, () => fallback);
  return { fileMode: await mode(dbPath, 0o600), dirMode: await mode(dirname(dbPath), 0o700) };
}

/** Fails early, naming the replica, when its directory cannot be created or written. */
async function checkWritable(dir: string, name: string): Promise<void> {
  const probe = join(dir, `.litestream-write-check-${crypto.randomUUID().slice(0, 8)}`);
  try {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeFile(probe, new Uint8Array(0));
    await removeIfExists(probe);
  } catch (err) {
    throw new LitestreamError(`replica ${name}: cannot write to ${dir}: ${(err as Error).message}`);
  }
}
