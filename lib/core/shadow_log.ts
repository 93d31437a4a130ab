/**
 * Where the shadow WAL stands in history: the current generation and the shadow file of its
 * current index, moved on by the rules that keep it continuous with SQLite's WAL (spec
 * §4.5–§4.8): the next index after a restart we made or let through, a new generation when
 * continuity cannot be proven. The database monitor (`db.ts`) decides when; this keeps the
 * state and the files in the meta directory.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { MAX_INDEX, type Pos } from "../names.ts";
import { equalBytes } from "../os/bytes.ts";
import { removeIfExistsSync, statSyncOrUndefined } from "../os/fs.ts";
import { frameAlign, WAL_HEADER_SIZE } from "../sqlite/wal.ts";
import type { CheckpointAdmission } from "./admission.ts";
import {
  removeOtherGenerations,
  resumeGeneration,
  shadowWalPath,
  startGeneration,
} from "./meta.ts";
import { lastFrameMatches } from "./shadow_checks.ts";
import {
  copyCommittedFrames,
  createShadow,
  readWalHeaderBytes,
  type ShadowState,
} from "./shadow_wal.ts";

/** What the log adds to the monitor's counters. */
export interface ShadowLogStats {
  walBytes: number;
  generations: number;
}

/** The current generation and index of one database's shadow WAL. */
export class ShadowLog {
  #generation: string | undefined;
  #shadow: ShadowState | undefined;
  #cleanedBelow = 0;
  /** Why start-up dropped the recorded generation, for the new generation's log line. */
  #clearedBecause: string | undefined;
  /** Modes of the files and directories written: the database's and its directory's. */
  modes = { fileMode: 0o600, dirMode: 0o700 };

  /** A log for the database whose WAL is `walPath`, kept in `metaPath`. */
  constructor(
    readonly metaPath: string,
    readonly walPath: string,
    readonly log: Logger,
    readonly stats: ShadowLogStats,
  ) {}

  /** The current generation, once one exists. */
  get generation(): string | undefined {
    return this.#generation;
  }

  /** The current index's shadow WAL, once a generation exists. */
  get shadow(): ShadowState | undefined {
    return this.#shadow;
  }

  /** The position up to which the shadow WAL holds committed frames. */
  pos(): Pos | undefined {
    if (!this.#generation || !this.#shadow) return undefined;
    return { generation: this.#generation, index: this.#shadow.index, offset: this.#shadow.size };
  }

  /** Path of the shadow WAL file for `index` in `generation`. */
  shadowPath(generation: string, index: number): string {
    return shadowWalPath(this.metaPath, generation, index);
  }

  /** Takes up the generation recorded in the meta directory, if its shadow still matches. */
  async resume(): Promise<void> {
    const found = await resumeGeneration(this.metaPath, this.walPath);
    if (typeof found === "string") {
      this.log.warn("init: cannot determine last wal position, clearing generation", {
        reason: found,
      });
      this.#clearedBecause = found;
    } else if (found) {
      this.#generation = found.generation;
      this.#shadow = found.shadow;
    }
    await removeOtherGenerations(this.metaPath, this.#generation);
  }

  /** Forgets the generation (the database file was replaced). */
  reset(): void {
    this.#generation = this.#shadow = undefined;
  }

  /**
   * Continuity checks of spec §4.5 against the WAL's current header: a reason means a new
   * generation, `restarted` the next index after a restart `admission` let through. Sync
   * calls only: they touch the WAL and the shadow, never the database file (see `shadow_wal.ts`).
   */
  verify(
    walHeader: Uint8Array | undefined,
    pageSize: number,
    admission: CheckpointAdmission,
  ): { reason?: string; restarted?: boolean } {
    const shadow = this.#shadow;
    if (!this.#generation || !shadow) {
      const reason = this.#clearedBecause
        ? `previous generation cleared: ${this.#clearedBecause}`
        : "no generation exists";
      this.#clearedBecause = undefined;
      return { reason };
    }
    if (shadow.index >= MAX_INDEX) return { reason: "max index exceeded" };
    const st = statSyncOrUndefined(shadow.path);
    if (!st) return { reason: "no shadow wal" };
    if (st.size !== shadow.size) return { reason: "shadow wal changed by another process" };
    const walSt = statSyncOrUndefined(this.walPath);
    if (!walSt || !walHeader) return { reason: "primary wal header missing" };
    if (admission.isRestart(shadow, walHeader)) return { restarted: true };
    // After we let a checkpoint through, its restart may be under way as we look: the header we
    // read still the old one, but the WAL emptied (TRUNCATE) or its frames being overwritten
    // (RESTART). That is the one restart since, every frame before it proven copied: followed.
    const unlessAdmitted = (reason: string) =>
      admission.admittedUnder(shadow) ? { restarted: true } : { reason };
    if (shadow.size > frameAlign(walSt.size, pageSize)) {
      return unlessAdmitted("wal truncated by another process");
    }
    // Only our own checkpoint restarts the WAL while we hold the read transaction. A restart we
    // did not make may have truncated frames we never copied, so continuity cannot be proven.
    if (!equalBytes(walHeader, shadow.headerBytes)) {
      return { reason: "wal restarted by another process" };
    }
    if (shadow.size > WAL_HEADER_SIZE && !lastFrameMatches(this.walPath, shadow, pageSize)) {
      return unlessAdmitted("wal overwritten by another process");
    }
    return {};
  }

  /** Copies the WAL's newly committed frames into the shadow; returns how many bytes. */
  async copy(): Promise<number> {
    const { copied } = await copyCommittedFrames(this.walPath, this.#shadow!);
    this.stats.walBytes += copied;
    return copied;
  }

  /** Starts a new generation from the current real WAL (header and committed frames). */
  async newGeneration(reason: string): Promise<void> {
    const { generation, shadow, copied } = await startGeneration(
      this.metaPath,
      this.walPath,
      this.modes,
    );
    this.stats.walBytes += copied;
    this.#generation = generation;
    this.#shadow = shadow;
    this.#cleanedBelow = 0;
    this.stats.generations++;
    this.log.info("sync: new generation", { generation, reason });
    await removeOtherGenerations(this.metaPath, this.#generation);
  }

  /**
   * With SQLite's write lock held by the caller: takes the old WAL's last frames still in
   * place, then starts the next index from the restarted WAL. Every frame of the old WAL is
   * then in the shadow: our checkpoint copied them under the write lock, or the admission
   * proved it.
   */
  async followRestart(): Promise<void> {
    const old = this.#shadow!;
    await this.copy();
    const header = readWalHeaderBytes(this.walPath);
    // No header: a TRUNCATE checkpoint emptied a WAL that held no frame. The next index begins
    // when a frame is written, and nothing can be backfilled and lost before we copy it.
    if (!header || equalBytes(header, old.headerBytes)) return;
    if (old.index + 1 >= MAX_INDEX) return await this.newGeneration("max index exceeded");
    const path = this.shadowPath(this.#generation!, old.index + 1);
    const { shadow, copy } = await createShadow(
      this.walPath,
      path,
      old.index + 1,
      this.modes.fileMode,
    );
    this.stats.walBytes += copy.copied;
    this.#shadow = shadow;
  }

  /** Removes shadow WAL files every replica has passed (keeping one older, as v0.3.13 does). */
  clean(positions: (Pos | undefined)[]): void {
    if (positions.length === 0 || !this.#generation) return;
    const gen = this.#generation;
    const min = Math.min(...positions.map((p) => p && p.generation === gen ? p.index : 0));
    if (min - 1 <= this.#cleanedBelow) return;
    for (let i = this.#cleanedBelow; i < min - 1; i++) {
      removeIfExistsSync(this.shadowPath(gen, i));
    }
    this.#cleanedBelow = min - 1;
  }
}
