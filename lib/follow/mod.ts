/**
 * Follow mode (`restore -f`): keeps a restored database up to date with its replica, as a
 * read replica any SQLite library may query. The latest state is restored once (with
 * `lib/restore/`), then the replica is polled every interval and each batch of new WAL
 * segments (whole transactions) is applied under SQLite's EXCLUSIVE lock (see `output.ts`).
 * A new generation, or a gap the WAL cannot bridge, is recovered in place from the newest
 * snapshot under the same lock. The position kept beside the output (see `position.ts`) lets a
 * restarted follower resume.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { CorruptionError, LitestreamError } from "../errors.ts";
import { formatPos } from "../names.ts";
import type { Logger } from "../log.ts";
import type { ReplicaClient, WalSegmentInfo } from "../replica_client.ts";
import {
  fetchSegment,
  findRestorePlan,
  listGenerations,
  restoreDatabase,
} from "../restore/restore.ts";
import { chooseGeneration } from "../restore/plan.ts";
import { prefetch } from "../os/prefetch.ts";
import { WalReplayer } from "../restore/replay.ts";
import { PageMap } from "../restore/page_map.ts";
import { decodeFrameBlocks, lz4FrameDecoder, releaseDecodeBuffers } from "../lz4/mod.ts";
import { BufferPool } from "../os/buffer_pool.ts";
import type { DirWatch } from "../os/watch.ts";
import { exists, removeIfExists } from "../os/fs.ts";
import { sleep } from "../os/async.ts";
import { trimNativeHeap } from "../os/libc.ts";
import { FollowedOutput, prepareImage } from "./output.ts";
import { type FollowPosition, positionPath, readPosition, writePosition } from "./position.ts";
import { nextSegments } from "./batch.ts";

export { type FollowPosition, positionPath } from "./position.ts";

/** Options of {@linkcode follow}. */
export interface FollowOptions {
  /** Replicas to follow (the one holding the newest generation is followed). */
  clients: ReplicaClient[];
  /** The output database path. */
  output: string;
  /** Poll interval in milliseconds. */
  intervalMs: number;
  log: Logger;
  /** Ends following after the batch in progress. */
  signal: AbortSignal;
  /** Segments fetched in parallel (default 8). */
  parallelism?: number;
}

/** What the follower reports (for metrics). */
export interface FollowStatus {
  position?: FollowPosition;
  /** Batches applied, recoveries done, failed polls. */
  batches: number;
  recoveries: number;
  errors: number;
  /** Time (ms since epoch) of the last poll that found everything applied. */
  caughtUpAt?: number;
  /** Seconds from the newest applied segment's upload to its application, at the last batch. */
  applyLagSeconds?: number;
}

/** Stored size of the WAL segments one batch fetches at most (a larger segment goes alone). */
const BATCH_BYTES = 2 * 1024 * 1024;
/** Segments of a batch fetched at once at most: batches are small, memory matters more. */
const BATCH_PARALLELISM = 4;
/** After a watch's wake: no new segment for this long ends the burst (see `#pause`). */
const SETTLE_QUIET_MS = 30;
/** After a watch's wake: the longest wait for a burst of segments to end. */
const SETTLE_MAX_MS = 200;
/** Idle this long (no new segment), the follower gives its buffers up until the next batch. */
const RELEASE_IDLE_MS = 30_000;
/** Longest wait between retries while the replica fails. */
const MAX_BACKOFF_MS = 30_000;

/** A running follower; {@linkcode Follower.run} resolves once stopped. */
export class Follower {
  readonly status: FollowStatus = { batches: 0, recoveries: 0, errors: 0 };
  #pos: FollowPosition | undefined;
  #out: FollowedOutput | undefined;
  #client: ReplicaClient;
  /** Sorted generation names at the last full listing that chose our generation. */
  #checkedGenerations = "";
  /** Why the next step must recover from a snapshot, when it must. */
  #recover: string | undefined;
  /**
   * Buffers segments are fetched into, reused by every batch (emptied when idle). Room for a
   * batch's segments and one larger segment beside them: a pool too small for the working set
   * drops buffers each batch, garbage until V8's next full collection.
   */
  readonly #buffers = new BufferPool(BATCH_PARALLELISM, 3 * BATCH_BYTES);
  /** The watch on the followed generation's WAL, when the client has one (see `#pause`). */
  #watch: { key: string; watch: DirWatch | undefined } | undefined;
  /** When the last batch was applied (`performance.now()`). */
  #appliedAt = 0;
  /** Where batches gather their pages, its slabs reused by every batch (dropped when idle). */
  #pages: PageMap | undefined;

  constructor(readonly options: FollowOptions) {
    if (options.clients.length === 0) throw new LitestreamError("no replica to follow");
    this.#client = options.clients[0];
  }

  /** Restores or resumes, then follows until the signal aborts. */
  async run(): Promise<void> {
    const { output, log, signal } = this.options;
    await this.#start();
    log.info("following", {
      output,
      replica: this.#client.location,
      position: formatPos(this.#pos),
      interval: `${this.options.intervalMs}ms`,
    });
    let backoff = 0;
    try {
      while (!signal.aborted) {
        let more = false;
        const began = performance.now();
        try {
          more = await this.#step();
          if (backoff > 0) {
            log.info("follow: replica reachable again", { replica: this.#client.location });
          }
          backoff = 0;
        } catch (err) {
          if (signal.aborted && isAbort(err)) break;
          this.status.errors++;
          backoff = Math.min(MAX_BACKOFF_MS, Math.max(this.options.intervalMs, backoff * 2 || 500));
          log.error("follow: poll failed; serving the last state and retrying", {
            replica: this.#client.location,
            error: (err as Error).message,
            retry: `${(backoff / 1000).toFixed(1)}s`,
          });
        }
        // Polls start every interval (a slow poll shortens the wait), not an interval after one
        // ends: the lag stays within one interval plus one poll.
        const wait = backoff || Math.max(0, this.options.intervalMs - (performance.now() - began));
        if (!more) await this.#pause(wait);
      }
    } finally {
      if (this.#out?.dirty) {
        log.error("follow: stopped inside a batch; its journal is settled at the next start", {
          output,
        });
      }
      this.#out?.close();
      this.#out = undefined;
      await this.#watch?.watch?.close();
    }
    log.info("follow stopped", { output, position: formatPos(this.#pos) });
  }

  /**
   * Waits `ms` for the next poll, or less when the client can tell that segments were added
   * to the followed generation's WAL (a local directory: the follower then applies an upload as
   * it lands, not up to an interval later).
   */
  async #pause(ms: number): Promise<void> {
    const { signal } = this.options;
    const generation = this.#pos?.generation;
    const key = `${this.#client.location}\n${generation}`;
    if (this.#watch?.key !== key || !this.#watch.watch) {
      await this.#watch?.watch?.close();
      const watch = generation ? this.#client.watchWal?.(generation) : undefined;
      this.#watch = { key, watch };
    }
    const watch = this.#watch.watch;
    if (!watch) return await sleep(ms, signal);
    const wake = () => watch.wake();
    signal.addEventListener("abort", wake, { once: true });
    try {
      if (await watch.wait(ms) !== "event") return;
      // A sync uploads its segments one after another: let the burst land, to apply it as one
      // batch rather than one poll and batch per segment.
      const settled = performance.now() + SETTLE_MAX_MS;
      for (;;) {
        watch.rearm();
        const left = settled - performance.now();
        if (left <= 0 || await watch.wait(Math.min(SETTLE_QUIET_MS, left)) !== "event") return;
      }
    } finally {
      signal.removeEventListener("abort", wake);
    }
  }

  /** Opens the output: resumes from the position file, or restores afresh. */
  async #start(): Promise<void> {
    const { output, log } = this.options;
    const pos = await readPosition(output);
    const have = await exists(output);
    if (have && !pos) {
      throw new LitestreamError(
        `cannot follow into ${output}: it exists without its follow position file ${
          positionPath(output)
        }; delete ${output} (and any ${output}-journal) to restore it afresh`,
      );
    }
    if (!have) {
      // A position without its output: a restore that stopped before putting the output in place.
      if (pos) await removeIfExists(positionPath(output));
      await this.#restoreFresh();
      return;
    }
    this.#pos = pos;
    this.#out = FollowedOutput.open(output, log);
    const outcome = await this.#out.rollBack();
    if (outcome === "rolled back") {
      log.warn("follow: rolled back a batch the previous follower did not finish", { output });
    } else if (outcome === "kept") {
      log.warn("follow: finished a batch the previous follower had made visible", { output });
    }
    await this.#chooseClient(pos!.generation);
    if (pos!.recovering) this.#recover = "a recovery from a snapshot was interrupted";
    log.info("follow: resuming", { output, position: formatPos(pos) });
  }

  /**
   * Picks the client that holds `generation` (the first one when none does, or when none can
   * be reached: the poll loop retries, and the output already holds a state to serve).
   */
  async #chooseClient(generation: string): Promise<void> {
    for (const c of this.options.clients) {
      try {
        if ((await c.generations()).includes(generation)) {
          this.#client = c;
          return;
        }
      } catch (err) {
        this.options.log.warn("follow: cannot list a replica", {
          replica: c.location,
          error: (err as Error).message,
        });
      }
    }
  }

  /** The first restore: into a hidden file beside the output, prepared, then renamed. */
  async #restoreFresh(): Promise<void> {
    const { output, log, clients } = this.options;
    const found = await findRestorePlan(clients, {});
    const tmp = this.#scratchPath("new");
    try {
      const result = await restoreDatabase(found.client, found.plan, {
        output: tmp,
        parallelism: this.options.parallelism,
      });
      await prepareImage(tmp, log);
      const pos = positionOf(result.generation, result.snapshotIndex, result.chain);
      await writePosition(output, pos);
      await Deno.rename(tmp, output);
      this.#pos = pos;
      this.#client = found.client;
      log.info("follow: restored", {
        output,
        replica: found.client.location,
        position: formatPos(pos),
        segments: result.segments,
        size: result.size,
      });
    } finally {
      await removeIfExists(tmp);
    }
    this.#out = FollowedOutput.open(output, log);
  }

  #scratchPath(kind: string): string {
    const { output } = this.options;
    return join(dirname(output), `.${basename(output)}.follow-${kind}`);
  }

  /** One poll: applies one batch or recovers; true when more is waiting. */
  async #step(): Promise<boolean> {
    // Segments added from now on wake the next pause (see `#pause`).
    this.#watch?.watch?.rearm();
    if (this.#out!.dirty) {
      const outcome = await this.#out!.rollBack();
      this.options.log.warn(`follow: a failed batch was ${outcome ?? "abandoned"}`, {
        position: formatPos(this.#pos),
      });
    }
    if (this.#recover) {
      await this.#recoverInPlace(this.#recover);
      return false;
    }
    const pos = this.#pos!;
    const { clients } = this.options;
    const names = (await Promise.all(clients.map((c) => c.generations()))).flat();
    const key = [...new Set(names)].sort().join(",");
    if (!names.includes(pos.generation)) {
      await this.#recoverInPlace(`generation ${pos.generation} is no longer in the replica`);
      return false;
    }
    if (key !== this.#checkedGenerations) {
      const listings = await listGenerations(clients);
      const chosen = chooseGeneration(listings, {});
      if (chosen && chosen.generation !== pos.generation) {
        await this.#recoverInPlace(`new generation ${chosen.generation}`);
        return false;
      }
      // A generation without snapshots may get one: look again next time.
      if (listings.every((g) => g.snapshots.length > 0)) this.#checkedGenerations = key;
    }
    const segments = await this.#client.walSegments(pos.generation, pos);
    const next = nextSegments(segments, pos, BATCH_BYTES);
    if (typeof next === "string") {
      await this.#recoverInPlace(next);
      return false;
    }
    if (next.batch.length === 0) {
      this.status.caughtUpAt = Date.now();
      // Idle for a while: the buffers would wait for the next write on the primary, maybe for
      // long. Not at every empty poll: uploads come irregularly, and buffers dropped and made
      // again each time are garbage that V8 keeps until its next full collection.
      if (this.#pages && performance.now() - this.#appliedAt >= RELEASE_IDLE_MS) {
        this.#buffers.clear();
        this.#pages = undefined;
        this.#out?.releaseBuffers();
        releaseDecodeBuffers();
        trimNativeHeap();
      }
      return false;
    }
    try {
      await this.#apply(next.batch);
    } catch (err) {
      // A segment that does not continue the chain (or is damaged) before anything was
      // written: the newest snapshot may bridge it.
      if (!(err instanceof CorruptionError) || this.#out!.dirty) throw err;
      await this.#recoverInPlace(err.message);
      return false;
    }
    return next.more;
  }

  /** Applies whole segments as one transaction of the output. */
  async #apply(batch: WalSegmentInfo[]): Promise<void> {
    const { log, signal } = this.options;
    const out = this.#out!;
    const client = this.#client;
    const pos = this.#pos!;
    const started = performance.now();
    // No sink: pages stay in memory until the whole batch is checked and journalled.
    if (this.#pages?.pageSize !== out.pageSize) this.#pages = new PageMap(out.pageSize);
    const replayer = new WalReplayer(this.#pages);
    if (pos.chain) replayer.resume(pos.chain);
    const fetches = prefetch(
      batch,
      Math.min(this.options.parallelism ?? 8, BATCH_PARALLELISM),
      (seg) => fetchSegment(client, seg, this.#buffers),
    );
    let i = 0;
    let replayed = 0;
    let visible = 0;
    try {
      for await (const fetched of fetches) {
        const seg = batch[i++];
        const name = client.describe("wal", seg);
        const data = fetched instanceof Uint8Array
          ? decodeFrameBlocks(fetched, name)
          : (await fetched()).pipeThrough(lz4FrameDecoder(name));
        await replayer.apply(seg, name, data);
        if (fetched instanceof Uint8Array) this.#buffers.give(fetched.buffer);
      }
      const pages = replayer.pages;
      if (!pages || pages.size === undefined) throw new Error("replay committed nothing");
      replayed = performance.now();
      // The journal is written under RESERVED (readers keep reading); only the page writes and
      // the fsync hold readers off.
      if (!await out.reserve(signal)) return; // stopping: nothing was written
      await out.beginChange(pages.heldPages(), Math.min(pages.floor, pages.size));
      if (!await out.lock(signal)) return await out.abandon();
      await pages.flush(out.sink());
      await out.finish(pages.size);
      visible = performance.now();
    } catch (err) {
      out.unlockClean();
      throw err;
    }
    const chain = replayer.chain!;
    this.#pos = positionOf(pos.generation, chain.index, chain);
    await writePosition(this.options.output, this.#pos);
    // What V8 freed of this batch's buffers goes back to the OS, not into a growing peak.
    trimNativeHeap();
    this.#appliedAt = performance.now();
    const newest = batch.reduce((t, s) => Math.max(t, s.createdAt.getTime()), 0);
    this.status.batches++;
    this.status.position = this.#pos;
    this.status.applyLagSeconds = Math.max(0, (Date.now() - newest) / 1000);
    log.debug("follow: applied", {
      position: formatPos(this.#pos),
      segments: batch.length,
      frames: replayer.frames,
      pages: replayer.pages?.size,
      fetchReplayMs: Math.round(replayed - started),
      lockWaitMs: Math.round(out.lastLockWaitMs),
      writeMs: Math.round(visible - replayed - out.lastLockWaitMs),
      exclusiveMs: Math.round(out.lastHoldMs),
      elapsedMs: Math.round(performance.now() - started),
      lag: `${this.status.applyLagSeconds.toFixed(3)}s`,
      ...memoryFields(),
    });
  }

  /** Replaces the output with the newest restorable state, in place, under the lock. */
  async #recoverInPlace(reason: string): Promise<void> {
    const { output, log, clients, signal } = this.options;
    log.warn("follow: recovering from a snapshot", { output, reason });
    const found = await findRestorePlan(clients, {});
    const old = this.#pos!;
    // Until the output holds the new image, a restart must recover again.
    await writePosition(output, { ...old, recovering: true });
    const tmp = this.#scratchPath("recover");
    try {
      const result = await restoreDatabase(found.client, found.plan, {
        output: tmp,
        parallelism: this.options.parallelism,
      });
      await this.#out!.replaceWith(tmp, signal);
      const pos = positionOf(result.generation, result.snapshotIndex, result.chain);
      await writePosition(output, pos);
      this.#pos = pos;
      this.#client = found.client;
      this.#recover = undefined;
      this.#checkedGenerations = "";
      this.status.recoveries++;
      this.status.position = pos;
      log.info("follow: recovered", { output, position: formatPos(pos), reason });
    } finally {
      await removeIfExists(tmp);
    }
  }
}

/** Restores (or resumes) `options.output` and follows until `options.signal` aborts. */
export function follow(options: FollowOptions): { follower: Follower; done: Promise<void> } {
  const follower = new Follower(options);
  return { follower, done: follower.run() };
}

/** The position after a restore or batch. */
function positionOf(
  generation: string,
  snapshotIndex: number,
  chain: FollowPosition["chain"],
): FollowPosition {
  return chain
    ? { generation, index: chain.index, offset: chain.offset, chain }
    : { generation, index: snapshotIndex, offset: 0 };
}

/** The process's memory for the debug line: RSS, V8's heap and the buffers outside it (MB). */
function memoryFields(): Record<string, string> {
  const m = Deno.memoryUsage();
  const mb = (n: number) => `${(n / 1048576).toFixed(1)}MB`;
  return { rss: mb(m.rss), heap: mb(m.heapTotal), external: mb(m.external) };
}

function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}
