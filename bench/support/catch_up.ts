/**
 * Catch-up time: from the application's last commit until a replica lists a WAL segment that
 * holds it, found by decompressing new segments and searching them for the writer's token.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { decompressFrame } from "../../lib/lz4/mod.ts";
import { epochMs } from "./load.ts";
import { isSegmentName, type ReplicaLister } from "./replica_watch.ts";

/**
 * Measures catch-up: the time from the writer's last commit (`lastCommitEpochMs`, taken by the
 * writer right after COMMIT returned) until the replica lists a WAL segment holding that commit.
 *
 * It lists the replica every `intervalMs` and remembers, for each segment, the end of the first
 * listing that showed it. Segments already listed before the last commit cannot hold it. The
 * others are decompressed, oldest first, and searched for the writer's token (the last row's
 * payload starts with it, so it sits in the page written by the last commit; both tools ship
 * whole transactions per sync). Catch-up = (end of the first listing showing a segment with the
 * token) − last commit; the polling interval bounds its error.
 */
export class CatchUpWatcher {
  #lister: ReplicaLister;
  #token: Uint8Array;
  #intervalMs: number;
  #firstSeen = new Map<string, number>();
  #running = false;
  #loop: Promise<void> = Promise.resolve();
  #lastError: unknown;

  constructor(lister: ReplicaLister, token: string, intervalMs: number) {
    this.#lister = lister;
    this.#token = new TextEncoder().encode(token);
    this.#intervalMs = intervalMs;
  }

  /** Starts listing (call it before the last commit can happen). */
  start(): void {
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        await this.#poll();
        await new Promise((r) => setTimeout(r, this.#intervalMs));
      }
    })();
  }

  async #poll(): Promise<void> {
    try {
      const names = await this.#lister.list();
      const at = epochMs();
      for (const n of names) {
        if (isSegmentName(n) && !this.#firstSeen.has(n)) this.#firstSeen.set(n, at);
      }
    } catch (err) {
      this.#lastError = err;
    }
  }

  /**
   * Waits until a segment holding the token is listed; returns the catch-up time in seconds, the
   * segment's name and how many segments were decoded to find it.
   */
  async waitForToken(
    lastCommitEpochMs: number,
    timeoutMs: number,
  ): Promise<{ catchUpS: number; segment: string; decoded: number }> {
    const scanned = new Set<string>();
    const failures = new Map<string, number>();
    const deadline = Date.now() + timeoutMs;
    let decoded = 0;
    while (true) {
      const candidates = [...this.#firstSeen]
        .filter(([n, at]) => at > lastCommitEpochMs && !scanned.has(n))
        .sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
      for (const [name, at] of candidates) {
        let data: Uint8Array;
        try {
          data = decompressFrame(await this.#lister.read(name), name);
        } catch (err) {
          // Still being written (s3rver shows objects while they stream in): retry it on the
          // next round; after many failures it was deleted (retention) and cannot be the one.
          this.#lastError = err;
          const n = (failures.get(name) ?? 0) + 1;
          failures.set(name, n);
          if (n >= 50) scanned.add(name);
          continue;
        }
        scanned.add(name);
        decoded++;
        if (Buffer.from(data.buffer, data.byteOffset, data.byteLength).indexOf(this.#token) >= 0) {
          return { catchUpS: (at - lastCommitEpochMs) / 1000, segment: name, decoded };
        }
      }
      if (Date.now() > deadline) {
        throw new Error(
          `no segment with the last commit after ${timeoutMs} ms (${this.#firstSeen.size} ` +
            `segments listed, ${scanned.size} searched)`,
          { cause: this.#lastError },
        );
      }
      await new Promise((r) => setTimeout(r, this.#intervalMs));
    }
  }

  /** Stops listing. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }
}
