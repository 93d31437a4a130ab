/**
 * The follower's output database: transactions and whole replacement images written under
 * SQLite's EXCLUSIVE lock (see `db_lock.ts`), each ended by the header edits that make readers
 * see the new state (see `header.ts`). Readers are held off only while pages are written: the
 * lock then drops back to RESERVED for the fsync (the journal stays not hot meanwhile) and is
 * taken again, briefly, to delete the journal. A follower killed in that window leaves a hot journal whose mark (see
 * `journal.ts`) tells the next one that the change was whole and visible: it is kept, not
 * rolled back, so a reader never sees the state before it again.
 *
 * @module
 */

import { DbFile } from "../os/db_lock.ts";
import { CorruptionError } from "../errors.ts";
import { DB_HEADER_SIZE, decodeDbHeader } from "../sqlite/header.ts";
import type { PageSink } from "../restore/page_map.ts";
import type { Logger } from "../log.ts";
import { followerHeader, nextChangeCounter } from "./header.ts";
import {
  type ChangeMark,
  decodeJournal,
  encodeJournal,
  JOURNAL_SECTOR,
  journalPath,
  journalSize,
} from "./journal.ts";
import { removeIfExists, writeAll } from "../os/fs.ts";

/** Bytes copied per write when an image replaces the output. */
const COPY_CHUNK = 1 << 20;

/** Largest journal buffer kept for the next change. */
const KEPT_JOURNAL_BYTES = 8 << 20;

/** What {@linkcode FollowedOutput.rollBack} did with a journal left behind. */
export type JournalOutcome = "rolled back" | "kept" | undefined;

let boot: string | undefined | null = null;

/**
 * This boot of the machine (Linux's boot id), or undefined when unknown: a change is kept after
 * a crash only when the page cache that holds its writes cannot have been lost since.
 */
function bootId(): string | undefined {
  if (boot === null) {
    try {
      boot = Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
    } catch {
      boot = undefined;
    }
  }
  return boot;
}

/** The output database, open for writing under SQLite's locks. */
export class FollowedOutput {
  readonly #file: DbFile;
  #pageSize: number;
  #counter: number;
  /** The file was written in the current lock hold: it must be finished or recovered. */
  #dirty = false;
  /** Milliseconds spent waiting for readers in the last lock acquisition. */
  lastLockWaitMs = 0;
  /** Milliseconds the last finished change held readers off (exclusive lock to its downgrade). */
  lastHoldMs = 0;
  #lockedAt = 0;
  #journalBuffer = new Uint8Array(0);

  private constructor(file: DbFile, pageSize: number, counter: number, readonly log: Logger) {
    this.#file = file;
    this.#pageSize = pageSize;
    this.#counter = counter;
  }

  /** Drops the journal buffer kept for the next batch (up to 8 MB): for a follower going idle. */
  releaseBuffers(): void {
    this.#journalBuffer = new Uint8Array(0);
  }

  /** Opens an existing database file; throws naming it when it is not one. */
  static open(path: string, log: Logger): FollowedOutput {
    const file = DbFile.open(path);
    try {
      const head = new Uint8Array(DB_HEADER_SIZE);
      file.read(head, 0);
      const header = decodeDbHeader(head);
      if (typeof header === "string") throw new CorruptionError(path, header);
      return new FollowedOutput(file, header.pageSize, header.changeCounter, log);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /** The database page size. */
  get pageSize(): number {
    return this.#pageSize;
  }

  /** True when pages were written in this lock hold and the transaction is not yet finished. */
  get dirty(): boolean {
    return this.#dirty;
  }

  /** True while the exclusive lock is held. */
  get locked(): boolean {
    return this.#file.locked;
  }

  /** Takes the exclusive lock, logging readers that keep it waiting; false when aborted. */
  async lock(signal?: AbortSignal): Promise<boolean> {
    const started = performance.now();
    const ok = await this.#file.lock(signal, this.#reportWait);
    this.#lockedAt = performance.now();
    this.lastLockWaitMs = this.#lockedAt - started;
    return ok;
  }

  /**
   * Takes the RESERVED lock (readers keep reading), enough to write the journal; false when
   * aborted.
   */
  reserve(signal?: AbortSignal): Promise<boolean> {
    return this.#file.reserve(signal, this.#reportWait);
  }

  readonly #reportWait = (ms: number, pid: number | undefined) => {
    this.log.warn("follow: a reader holds the database; waiting to apply", {
      path: this.#file.path,
      waited: `${(ms / 1000).toFixed(1)}s`,
      pid: pid ?? "unknown",
    });
  };

  /**
   * Journals, durably, the current content of the pages a change will touch (RESERVED must be
   * held; readers keep reading meanwhile): `pgnos` rewritten, and every page above `cut`
   * removed. Nothing may be written to the file before this.
   */
  async beginChange(pgnos: Iterable<number>, cut: number): Promise<void> {
    if (!this.#file.reserved) throw new Error("change without the RESERVED lock");
    const dbPages = Math.floor(this.#file.size() / this.#pageSize);
    const wanted = new Set<number>();
    for (const p of pgnos) if (p <= dbPages) wanted.add(p);
    for (let p = Math.max(1, cut + 1); p <= dbPages; p++) wanted.add(p);
    const sorted = [...wanted].sort((a, b) => a - b);
    const size = journalSize(sorted.length, this.#pageSize);
    // A batch's journal is written into one buffer kept for the next (a recovery's, of the
    // whole database, is not kept).
    let out = this.#journalBuffer;
    if (out.length < size) {
      out = new Uint8Array(size);
      if (size <= KEPT_JOURNAL_BYTES) this.#journalBuffer = out;
    }
    const nonce = crypto.getRandomValues(new Uint32Array(1))[0];
    const boot = bootId();
    const mark: ChangeMark | undefined = boot === undefined
      ? undefined
      : { boot, counter: nextChangeCounter(this.#counter) };
    const bytes = encodeJournal(
      out,
      sorted,
      (pgno, into) => this.#file.read(into, (pgno - 1) * this.#pageSize),
      dbPages,
      this.#pageSize,
      nonce,
      mark,
    );
    const journal = await Deno.open(journalPath(this.#file.path), {
      write: true,
      create: true,
      truncate: true,
      mode: 0o600,
    });
    try {
      await writeAll(journal, bytes);
      await journal.sync();
    } finally {
      journal.close();
    }
    this.#dirty = true;
  }

  /** A page sink writing into the file, after {@linkcode beginChange}. */
  sink(): PageSink {
    const ready = () => {
      if (!this.#dirty) throw new Error("write before the change was journalled");
      if (!this.#file.locked) throw new Error("write without the exclusive lock");
    };
    return {
      write: (pgno, page) => {
        ready();
        this.#file.write(page, (pgno - 1) * this.#pageSize);
        return Promise.resolve();
      },
      truncate: (pages) => {
        ready();
        this.#file.truncate(pages * this.#pageSize);
        return Promise.resolve();
      },
    };
  }

  /**
   * Ends a change leaving `pages` pages (the lock must be held): header edits (written last:
   * the new counter in the file means every page is written), the lock back to RESERVED (readers
   * see the change), fsync, the journal deleted, unlock.
   */
  async finish(pages: number): Promise<void> {
    if (!this.#file.locked) throw new Error("finish without the lock");
    this.#file.truncate(pages * this.#pageSize);
    const head = new Uint8Array(DB_HEADER_SIZE);
    this.#file.read(head, 0);
    const counter = nextChangeCounter(this.#counter);
    this.#file.write(followerHeader(head, counter, pages), 0);
    this.#file.downgrade();
    const held = performance.now() - this.#lockedAt;
    this.#counter = counter;
    await this.#settle();
    this.lastHoldMs = held + performance.now() - this.#lockedAt;
  }

  /**
   * Makes a whole, written change durable and final: fsync under RESERVED (readers read), then
   * the journal deleted under the EXCLUSIVE lock taken again briefly, as SQLite deletes it. A
   * reader looks for a hot journal holding SHARED: deleted under RESERVED only, the journal
   * could exist when it looks and be gone when it opens it, which SQLite takes for a hot journal
   * (SQLITE_READONLY_ROLLBACK for a read-only reader).
   */
  async #settle(): Promise<void> {
    await this.#file.sync();
    const started = performance.now();
    await this.#file.lock(undefined, this.#reportWait);
    this.#lockedAt = performance.now();
    this.lastLockWaitMs += this.#lockedAt - started;
    await removeIfExists(journalPath(this.#file.path));
    this.#dirty = false;
    this.#file.unlock();
  }

  /**
   * Ends a change that a follower (this one after a failure, or one killed) left with its
   * journal (see `journal.ts`): kept when the journal's mark shows it whole and visible in this
   * boot, else its pages put back under the lock; a journal that is not hot is removed. Says
   * which it did, or undefined when there was nothing to do.
   */
  async rollBack(signal?: AbortSignal): Promise<JournalOutcome> {
    const path = journalPath(this.#file.path);
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      // Failed before the journal existed: nothing was written.
      this.#dirty = false;
      this.#file.unlock();
      return undefined;
    }
    const journal = decodeJournal(bytes, path);
    if (journal && this.#whole(journal.mark)) {
      if (!await this.reserve(signal)) return undefined;
      this.#file.downgrade();
      this.#counter = journal.mark!.counter;
      await this.#settle();
      return "kept";
    }
    if (!this.#file.locked && !await this.lock(signal)) return undefined;
    if (journal) {
      if (journal.pageSize !== this.#pageSize) this.#pageSize = journal.pageSize;
      for (const r of journal.records) this.#file.write(r.page, (r.pgno - 1) * r.page.length);
      this.#file.truncate(journal.dbPages * journal.pageSize);
      await this.#file.sync();
    }
    await removeIfExists(path);
    this.#dirty = false;
    this.#file.unlock();
    return journal ? "rolled back" : undefined;
  }

  /** True when the change `mark` describes was written whole in this boot (see `ChangeMark`). */
  #whole(mark: ChangeMark | undefined): boolean {
    if (!mark || mark.boot !== bootId()) return false;
    const head = new Uint8Array(DB_HEADER_SIZE);
    if (this.#file.read(head, 0) < DB_HEADER_SIZE) return false;
    const dv = new DataView(head.buffer);
    return dv.getUint32(24) === mark.counter && dv.getUint32(92) === mark.counter;
  }

  /**
   * Replaces the whole content with the database image at `imagePath` (the lock is taken, or
   * kept when held), then finishes as a transaction. Readers with open connections see the new
   * image at their next transaction.
   */
  async replaceWith(imagePath: string, signal?: AbortSignal): Promise<void> {
    const image = await Deno.open(imagePath, { read: true });
    try {
      const head = new Uint8Array(DB_HEADER_SIZE);
      await image.read(head);
      const header = decodeDbHeader(head);
      if (typeof header === "string") throw new CorruptionError(imagePath, header);
      const size = (await image.stat()).size;
      if (!await this.reserve(signal)) {
        throw new DOMException("follow stopped while waiting for readers", "AbortError");
      }
      await this.beginChange([], 0);
      if (!await this.lock(signal)) {
        await this.abandon();
        throw new DOMException("follow stopped while waiting for readers", "AbortError");
      }
      await image.seek(0, Deno.SeekMode.Start);
      const buf = new Uint8Array(COPY_CHUNK);
      for (let at = 0; at < size;) {
        const n = await image.read(buf);
        if (n === null) throw new CorruptionError(imagePath, "image ended early");
        // The image's own change counter might equal the journal's mark: the file takes the
        // marked counter only in `finish`, once the whole image is written.
        if (at === 0) new DataView(buf.buffer).setUint32(24, this.#counter);
        this.#file.write(buf.subarray(0, n), at);
        at += n;
      }
      this.#pageSize = header.pageSize;
      await this.finish(Math.ceil(size / header.pageSize));
    } finally {
      image.close();
    }
  }

  /**
   * Gives up a change journalled but not started (stopping while readers held the lock): the
   * journal's header is zeroed, which makes it not hot (deleting it without the EXCLUSIVE lock
   * could fail a reader: see `#settle`), and the lock released. The next start removes it.
   */
  async abandon(): Promise<void> {
    const journal = await Deno.open(journalPath(this.#file.path), { write: true });
    try {
      await writeAll(journal, new Uint8Array(JOURNAL_SECTOR));
    } finally {
      journal.close();
    }
    this.#dirty = false;
    this.#file.unlock();
  }

  /** Releases the lock when nothing was written under it (a failed batch keeps it: see `dirty`). */
  unlockClean(): void {
    if (!this.#dirty) this.#file.unlock();
  }

  /** Releases the lock (when held) and closes the file. */
  close(): void {
    this.#file.close();
  }
}

/**
 * Puts a freshly restored image (not yet visible to anyone) in follower form: the header
 * edits, fsynced. Opened with its own descriptor, closed before the image is renamed.
 */
export async function prepareImage(path: string, log: Logger): Promise<void> {
  const out = FollowedOutput.open(path, log);
  try {
    const size = (await Deno.stat(path)).size;
    await out.lock();
    await out.beginChange([1], size / out.pageSize);
    await out.finish(Math.ceil(size / out.pageSize));
  } finally {
    out.close();
  }
}
