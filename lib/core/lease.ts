/**
 * One writer per replica: a lease object in the replica (`ReplicaClient.readLease` /
 * `writeLease`, a compare-and-swap) names the replicator that writes it. A second replicator
 * finds it on its first sync, refuses to write, logs the holder and how to resolve it, and
 * notes itself in the lease; the holder reads the lease before its next upload (at most once a
 * sync interval, and only when it has something to upload) and logs the contender. While it
 * uploads, the holder renews the lease every third of its time-to-live and lists the
 * generations (to notice a writer that takes no lease, such as v0.3.13). A holder that uploaded
 * nothing since its last renewal parks the lease instead: one renewal with a time-to-live
 * {@linkcode PARKED_TTL_FACTOR} times longer, after which it makes no request until its next
 * upload, which wakes the renewal (a parked lease is alive, so the upload does not wait for it).
 * Idle replicas cost nothing, and a second replicator still
 * finds an idle holder's lease alive; the price is that a holder killed while idle keeps its
 * replica from another host for the longer time-to-live (or until `-force`).
 *
 * Who may take the lease: anyone when there is none, it was released by a clean shutdown, or it
 * expired; the same replicator (same meta directory, id and host) after a restart; anyone with
 * `-force`, which makes the caller start a new generation. A lease expires when the contender
 * has watched it go unrenewed for its time-to-live on its own clock, or when its last renewal
 * stamp is older than twice that by the contender's clock: hosts' clocks may disagree by up to
 * one time-to-live without a live lease being taken.
 *
 * @module
 */

import { ChangeSignal, Mutex, sleep } from "../os/async.ts";
import { LitestreamError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { LeaseObject, ReplicaClient } from "../replica_client.ts";
import {
  decodeLease,
  describeHolder,
  encodeLease,
  type LeaseIdentity,
  type LeaseRecord,
  sameProcess,
} from "./lease_record.ts";

/** Wall-clock time (lease stamps) and a monotonic clock (intervals), in milliseconds. */
export interface LeaseClock {
  now(): number;
  monotonic(): number;
}

/** The system's clocks. */
export const SYSTEM_CLOCK: LeaseClock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
};

/** Default time-to-live of a lease (renewed every third of it). */
export const DEFAULT_LEASE_TTL = 15 * 60_000;

/** A parked lease lasts this many time-to-lives: 24 hours at the default. */
export const PARKED_TTL_FACTOR = 96;

/** Lease timing and policy. */
export interface LeaseSettings {
  /** How long the lease lasts unrenewed (ms); it is renewed every third of this. */
  ttl: number;
  /** Take the lease from a live holder (`replicate -force`). */
  force?: boolean;
}

/** A replica write refused because another replicator holds the replica's lease. */
export class LeaseRefusedError extends LitestreamError {}

/** What `beforeWrite` allows: keep writing, write after re-reading the replica, or nothing. */
export type LeaseVerdict = "write" | "acquired" | "refused";

/** `off`: the store denies access to the lease object; replication goes on without it. */
type State = "none" | "held" | "refused" | "lost" | "off";

const RESOLVE_LATER = "stop one of the two replicators, or restart this one with -force to " +
  "take the replica over (it starts a new generation and the other stops writing to it)";
const RESOLVE_HOLDER = "stop one of the two replicators; to move replication to the other one, " +
  "stop this one (its lease is released at shutdown) or restart the other with -force";

/** The lease of one replica, as seen by one replicator. */
export class Lease {
  #state: State = "none";
  #version: string | undefined;
  #record: LeaseRecord | undefined;
  #me: LeaseIdentity | undefined;
  #lastRenew = -Infinity;
  #lastAttempt = -Infinity;
  /** Uploads since the last renewal: none when the next one is due means the holder is idle. */
  #wrote = false;
  /** Parked: renewed with the long time-to-live; nothing to do until the next upload. */
  #parked = false;
  /** Notified when an upload finds the lease parked, to wake `run` for its renewal. */
  readonly #wake = new ChangeSignal();
  /** The unrenewed lease being watched for expiry, since when (monotonic). */
  #watch: { key: string; since: number } | undefined;
  /** Contenders already logged. */
  readonly #reported = new Set<string>();
  /** Generations accounted for (present at acquisition, or ours). */
  #known = new Set<string>();
  #forced = false;
  /**
   * Set when the lease object vanished under the holder and was taken again: whoever removed it
   * may have removed the replica's objects too, so the next upload re-reads the replica.
   */
  #retaken = false;
  readonly #mutex = new Mutex();

  /**
   * A lease of the replica behind `client`; `identity` gives this replicator's identity when
   * first needed (its meta directory exists by then). No request is made until used.
   */
  constructor(
    readonly client: ReplicaClient,
    readonly identity: () => Promise<LeaseIdentity>,
    readonly settings: LeaseSettings,
    readonly log: Logger,
    readonly clock: LeaseClock = SYSTEM_CLOCK,
  ) {}

  /** Renewal period: a third of the time-to-live. */
  get renewInterval(): number {
    return this.settings.ttl / 3;
  }

  /** Whether this replicator may write (it holds the lease, or the store denies access to it). */
  get held(): boolean {
    return this.#state === "held" || this.#state === "off";
  }

  /** Whether another replicator held the lease at this one's last look (makes no request). */
  get refused(): boolean {
    return this.#state === "refused" || this.#state === "lost";
  }

  /**
   * Notified each time this replicator stops being allowed to write (`refused` turns true): an
   * idle database monitor must look, to stand by (see `DB.interruptIdle`).
   */
  readonly refusals: ChangeSignal = new ChangeSignal();

  #setState(state: State): void {
    const was = this.refused;
    this.#state = state;
    if (!was && this.refused) this.refusals.notify();
  }

  /** The current lease content as last read or written, for status displays. */
  get record(): LeaseRecord | undefined {
    return this.#record;
  }

  /** True once after the lease was taken from a live holder with `-force`: start a new generation. */
  takeForced(): boolean {
    const forced = this.#forced;
    this.#forced = false;
    return forced;
  }

  /**
   * Before uploading to the replica in `generation`: takes the lease when not held (at most
   * one attempt per renewal period after a refusal), renews it when due or when the generation
   * changed, else reads it to catch a contender or a takeover.
   * `acquired` means the lease was just taken: what the replica holds must be re-read.
   */
  beforeWrite(generation: string): Promise<LeaseVerdict> {
    return this.#mutex.run(async () => {
      const verdict = await this.#orOff(() => this.#beforeWrite(generation), "write");
      if (verdict === "refused") return verdict;
      this.#wrote = true;
      const retaken = this.#retaken;
      this.#retaken = false;
      return retaken ? "acquired" : verdict;
    });
  }

  async #beforeWrite(generation: string): Promise<LeaseVerdict> {
    const now = this.clock.monotonic();
    if (this.#state === "off") return "write";
    if (this.#state !== "held") {
      if (now - this.#lastAttempt < this.renewInterval) return "refused";
      return await this.#acquire(generation) ? "acquired" : "refused";
    }
    if (this.#parked && this.#record?.generation === generation) {
      // Alive for its long time-to-live: the upload need not wait for the renewal (an fsynced
      // write before the first upload of every database after an idle spell), which `run`
      // makes next, woken here.
      this.#wake.notify();
    } else if (
      this.#record?.generation !== generation || now - this.#lastRenew >= this.renewInterval
    ) {
      return await this.#renew(generation) ? "write" : "refused";
    }
    // Read before every upload: a takeover between this read and the upload's end is the only
    // one this holder can miss, so nothing of its lands more than an upload's time after it (a
    // restore picks the generation updated last).
    return await this.#verify(generation) ? "write" : "refused";
  }

  /**
   * Runs `fn`; when the store denies access to the lease object (a policy that allows only
   * `generations/`, say), turns the lease off with one warning and returns `fallback`, so
   * replication goes on as before this safeguard existed.
   */
  async #orOff<T>(fn: () => Promise<T>, fallback: T): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      // A file system's EACCES, S3's AccessDenied, a backend error marked `accessDenied` (SFTP's).
      const e = err as { code?: string; accessDenied?: boolean };
      const denied = err instanceof Deno.errors.PermissionDenied || e.code === "AccessDenied" ||
        e.accessDenied === true;
      if (!denied) throw err;
      this.#setState("off");
      this.log.warn(
        "cannot use the replica lease (access denied): a second replicator writing this " +
          "replica would go unnoticed; allow this replicator to read and write the lease object",
        { replica: this.client.location, error: err },
      );
      return fallback;
    }
  }

  /**
   * Milliseconds until `tick` has something to do (a renewal, or another attempt); while the
   * lease is parked, Infinity until an upload makes its renewal due at once.
   */
  dueIn(): number {
    if (this.#state === "held" && this.#parked) return this.#wrote ? 0 : Infinity;
    const last = this.#state === "held" ? this.#lastRenew : this.#lastAttempt;
    return Math.max(0, last + this.renewInterval - this.clock.monotonic());
  }

  /**
   * The periodic part, run every `dueIn()`: the holder renews the lease and lists the
   * generations (warning about one nobody holding a lease wrote), or parks it when it uploaded
   * nothing since the last renewal; any other replicator tries to take it. Returns whether the
   * lease is held afterwards.
   */
  tick(generation: string | undefined): Promise<boolean> {
    return this.#mutex.run(() => this.#orOff(() => this.#tick(generation), true));
  }

  async #tick(generation: string | undefined): Promise<boolean> {
    if (this.#state === "off" || this.dueIn() > 0) return this.held;
    if (this.#state === "held") {
      const idle = !this.#wrote;
      if (await this.#renew(generation ?? this.#record?.generation, idle) && !idle) {
        await this.#foreign();
      }
    } else if (generation) {
      await this.#acquire(generation);
    }
    return this.held;
  }

  /**
   * Runs `tick` whenever due until `signal` aborts, for the database's current `generation()`;
   * `taken()` runs when the lease was just taken. A failed request is retried after a quarter
   * of the renewal period.
   */
  async run(
    generation: () => string | undefined,
    taken: () => void,
    signal: AbortSignal,
  ): Promise<void> {
    while (!signal.aborted && this.#state !== "off") {
      const due = this.dueIn();
      if (due === Infinity) await this.#wake.wait(this.#wake.version, signal);
      else await sleep(due, signal);
      if (signal.aborted) return;
      const held = this.held;
      try {
        // Taken, or taken again after it vanished: the replica is re-read at once, even when idle.
        if (await this.tick(generation()) && (!held || this.#retaken)) taken();
      } catch (err) {
        // Not holding the lease, the replica's sync reports the store's failure already.
        this.log.log(this.held ? "warn" : "debug", "replica lease renewal failed", { error: err });
        await sleep(this.renewInterval / 4, signal);
      }
    }
  }

  /** At a clean shutdown: marks the lease released, so the next replicator takes it at once. */
  release(): Promise<void> {
    return this.#mutex.run(async () => {
      if (this.#state !== "held") return;
      this.#setState("none");
      const { contender: _, ...rest } = this.#record!;
      const record = { ...rest, released: true, renewed: this.#stamp() };
      let version = this.#version;
      for (let attempt = 0; attempt < 3; attempt++) {
        if (await this.client.writeLease(encodeLease(record), version)) {
          this.log.info("replica lease released", { replica: this.client.location });
          return;
        }
        // A contender noted itself since: still ours to release; taken by another: not ours.
        const current = await this.client.readLease();
        const now = current && decodeLease(current.data);
        if (!now || !sameProcess(now, this.#me!)) return;
        version = current.version;
      }
    });
  }

  async #acquire(generation: string): Promise<boolean> {
    const me = this.#me ??= await this.identity();
    for (let attempt = 0; attempt < 3; attempt++) {
      // A failed read throws to the caller and paces nothing: the next sync tries again.
      const current = await this.client.readLease();
      const readAt = this.clock.monotonic();
      const record = current && decodeLease(current.data);
      const why = this.#mayTake(current, record, me);
      if (why === undefined) {
        // Only a refusal paces the next attempt: a failed write throws, and the sync retries.
        this.#lastAttempt = readAt;
        await this.#refuse(current!, record!, me, generation);
        return false;
      }
      const forced = why === "force";
      if (await this.#take(generation, current?.version, forced)) {
        const attrs = { replica: this.client.location, generation };
        if (why === "force" || why === "expired" || why === "unreadable") {
          this.log.warn(`replica lease taken over (${why})`, {
            ...attrs,
            previous: record ? describeHolder(record) : "unreadable lease object",
          });
        } else if (why === "restart") {
          this.log.info("replica lease taken over from this replicator's previous run", {
            ...attrs,
            previous: describeHolder(record!),
          });
        } else this.log.info("replica lease acquired", attrs);
        this.#forced = forced;
        return true;
      }
    }
    this.#setState(this.#state === "lost" ? "lost" : "refused");
    this.#lastAttempt = this.clock.monotonic();
    this.log.error("replica lease keeps changing under this replicator; not writing to it", {
      replica: this.client.location,
      resolve: RESOLVE_LATER,
    });
    return false;
  }

  /** Why this replicator may take the lease now, or undefined when it may not. */
  #mayTake(
    current: LeaseObject | undefined,
    record: LeaseRecord | undefined,
    me: LeaseIdentity,
  ): "none" | "unreadable" | "released" | "restart" | "expired" | "force" | undefined {
    if (!current) return "none";
    if (!record) return "unreadable";
    if (record.released) return "released";
    if (record.id === me.id && record.host === me.host && record.meta === me.meta) {
      return "restart";
    }
    if (this.#expired(record)) return "expired";
    if (this.settings.force) return "force";
    return undefined;
  }

  #expired(record: LeaseRecord): boolean {
    const key = `${record.id}/${record.host}/${record.pid}/${record.renewed}`;
    const now = this.clock.monotonic();
    if (this.#watch?.key !== key) this.#watch = { key, since: now };
    return now - this.#watch.since >= record.ttl ||
      this.clock.now() - Date.parse(record.renewed) > 2 * record.ttl;
  }

  async #refuse(
    current: LeaseObject,
    record: LeaseRecord,
    me: LeaseIdentity,
    generation: string,
  ): Promise<void> {
    this.#setState(this.#state === "lost" ? "lost" : "refused");
    const sameId = record.id === me.id;
    this.log.error("replica is written by another replicator; this one does not write to it", {
      replica: this.client.location,
      holder: describeHolder(record),
      renewed: record.renewed,
      ...(record.parked
        ? { parked: "the holder is idle: its lease is renewed when it uploads" }
        : {}),
      resolve: sameId
        ? `the other has this replicator's meta directory id on another host (a copied meta ` +
          `directory, or a replaced container whose lease expires ${
            Math.round(record.ttl / 1000)
          } s after its last renewal); ${RESOLVE_LATER}`
        : RESOLVE_LATER,
    });
    // Tell the holder: it reads the lease before its next upload. A renewal racing the note
    // changes the version: note it again on the renewed lease.
    let [object, held] = [current, record];
    for (let attempt = 0; attempt < 2; attempt++) {
      if (held.contender && sameProcess(held.contender, me)) return;
      const noted = { ...held, contender: { ...me, generation, at: this.#stamp() } };
      const written = await this.client.writeLease(encodeLease(noted), object.version).catch(
        (err) =>
          this.log.warn("cannot note this replicator in the replica's lease", { error: err }),
      );
      if (written !== undefined) return;
      const again = await this.client.readLease().catch(() => undefined);
      const now = again && decodeLease(again.data);
      if (!now || !sameProcess(now, held)) return;
      [object, held] = [again, now];
    }
  }

  async #take(generation: string, expected: string | undefined, forced: boolean) {
    const me = this.#me!;
    const now = this.#stamp();
    const record: LeaseRecord = {
      v: 1,
      ...me,
      generation,
      acquired: now,
      renewed: now,
      ttl: this.settings.ttl,
      ...(forced ? { forced } : {}),
    };
    const version = await this.client.writeLease(encodeLease(record), expected);
    if (version === undefined) return false;
    this.#setState("held");
    this.#parked = false;
    this.#version = version;
    this.#record = record;
    this.#lastRenew = this.clock.monotonic();
    this.#watch = undefined;
    this.#known = new Set([...await this.client.generations(), generation]);
    return true;
  }

  /** Renews the lease, or with `park` parks it (see the module's documentation). */
  async #renew(generation: string | undefined, park = false): Promise<boolean> {
    const { contender: _, parked: __, ...rest } = this.#record!;
    const record: LeaseRecord = {
      ...rest,
      generation,
      renewed: this.#stamp(),
      ttl: park ? this.settings.ttl * PARKED_TTL_FACTOR : this.settings.ttl,
      ...(park ? { parked: true } : {}),
    };
    const version = await this.client.writeLease(encodeLease(record), this.#version);
    if (version === undefined) return await this.#verify(generation);
    this.#version = version;
    this.#record = record;
    this.#lastRenew = this.clock.monotonic();
    this.#wrote = false;
    this.#parked = park;
    if (park) this.log.debug("replica lease parked: idle", { replica: this.client.location });
    if (generation) this.#known.add(generation);
    return true;
  }

  /** Reads the lease: still ours (perhaps with a contender noted), or taken by another. */
  async #verify(generation: string | undefined): Promise<boolean> {
    const current = await this.client.readLease();
    if (current?.version === this.#version) return true;
    const record = current && decodeLease(current.data);
    const me = this.#me!;
    if (!record) {
      this.log.warn("replica lease object removed or unreadable; taking it again", {
        replica: this.client.location,
      });
      this.#setState("none");
      this.#retaken = true;
      return generation ? await this.#acquire(generation) : false;
    }
    if (sameProcess(record, me)) {
      this.#version = current!.version;
      this.#record = record;
      const c = record.contender;
      const key = c && `${c.id}/${c.host}/${c.pid}/${c.at}`;
      if (c && !sameProcess(c, me) && !this.#reported.has(key!)) {
        this.#reported.add(key!);
        this.log.error("another replicator tried to write this replica and was refused", {
          replica: this.client.location,
          contender: describeHolder(c),
          resolve: RESOLVE_HOLDER,
        });
      }
      return true;
    }
    this.#setState("lost");
    this.#lastAttempt = this.clock.monotonic();
    this.#record = record;
    this.log.error("replica taken over by another replicator; this one no longer writes to it", {
      replica: this.client.location,
      holder: describeHolder(record),
      forced: record.forced ?? false,
      resolve: record.forced
        ? "the other was started with -force; stop this one"
        : "stop one of the two replicators (this one takes the replica back when the other " +
          "releases its lease at shutdown, or when that lease expires)",
    });
    return false;
  }

  /** Warns once about each generation nobody holding a lease wrote (v0.3.13 takes no lease). */
  async #foreign(): Promise<void> {
    for (const generation of await this.client.generations()) {
      if (this.#known.has(generation)) continue;
      this.#known.add(generation);
      this.log.warn(
        "a generation this replicator did not write appeared in the replica: another writer " +
          "that takes no lease (Litestream v0.3.13?) is writing it",
        {
          replica: this.client.location,
          generation,
          resolve: "stop the other writer; a restore uses one generation, the newest",
        },
      );
    }
  }

  #stamp(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
