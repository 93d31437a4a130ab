/**
 * The pages a WAL replay produces: the last committed image of each page,
 * plus the truncations that commits imply. Applying it to a database image
 * gives what SQLite's own replay gives (write each committed frame's page at
 * `(pgno-1)·pageSize`, then size the file to the commit's page count), while
 * writing every page once. Memory is bounded by flushing to a file when one
 * is available.
 *
 * @module
 */

/** Where flushed pages go: an open, seekable database file. */
export interface PageSink {
  write(pgno: number, page: Uint8Array): Promise<void>;
  truncate(pages: number): Promise<void>;
}

/** Bytes per slab of page images (at least one page). */
const SLAB_BYTES = 1 << 20;

/**
 * Accumulates page images of a WAL replay. Images live in slots of large shared slabs (not one
 * small array per page): a page rewritten by later frames keeps its slot, slots of truncated
 * pages are reused, and a flush keeps the slabs for the pages that come next.
 */
export class PageMap {
  /** Slot of each page held. */
  readonly #slots = new Map<number, number>();
  readonly #slabs: Uint8Array[] = [];
  readonly #perSlab: number;
  /** Slots freed by truncations, reused first. */
  #free: number[] = [];
  /** Slots below this have been handed out since the last flush. */
  #used = 0;
  /** Database size in pages after the last commit, or undefined before any commit. */
  #size: number | undefined;
  /** Lowest size any commit truncated to since the last flush: pages above it are gone from the base image. */
  #floor = Infinity;

  /** Creates a map for pages of `pageSize` bytes. */
  constructor(readonly pageSize: number) {
    this.#perSlab = Math.max(1, Math.floor(SLAB_BYTES / pageSize));
  }

  /** Bytes of page images held in memory. */
  get bytes(): number {
    return this.#slots.size * this.pageSize;
  }

  /** Page count after the last applied commit, or undefined when nothing was committed. */
  get size(): number | undefined {
    return this.#size;
  }

  /** Numbers of the pages held, ascending. */
  heldPages(): number[] {
    return [...this.#slots.keys()].sort((a, b) => a - b);
  }

  /**
   * The lowest page count a commit truncated to since the last flush (Infinity when none did):
   * a flush removes the base image's pages above it.
   */
  get floor(): number {
    return this.#floor;
  }

  /** Records a page image (copied); a later image of the same page replaces it. */
  put(pgno: number, page: Uint8Array): void {
    let slot = this.#slots.get(pgno);
    if (slot === undefined) {
      slot = this.#free.pop() ?? this.#used++;
      this.#slots.set(pgno, slot);
    }
    const i = Math.floor(slot / this.#perSlab);
    if (i === this.#slabs.length) this.#slabs.push(new Uint8Array(this.#perSlab * this.pageSize));
    this.#slabs[i].set(page, (slot - i * this.#perSlab) * this.pageSize);
  }

  /** The image held for `pgno` (a view into a slab), or undefined. */
  #get(pgno: number): Uint8Array | undefined {
    const slot = this.#slots.get(pgno);
    if (slot === undefined) return undefined;
    const i = Math.floor(slot / this.#perSlab);
    const at = (slot - i * this.#perSlab) * this.pageSize;
    return this.#slabs[i].subarray(at, at + this.pageSize);
  }

  /** Applies a commit that leaves the database at `pages` pages. */
  commit(pages: number): void {
    if (this.#size === undefined || pages < this.#size) {
      for (const [pgno, slot] of this.#slots) {
        if (pgno > pages) this.#slots.delete(pgno), this.#free.push(slot);
      }
      this.#floor = Math.min(this.#floor, pages);
    }
    this.#size = pages;
  }

  /**
   * The page as the replay leaves it over a base image: the replayed image (a view, valid until
   * the map changes), `"base"` when the base image's page survives, or `"zero"` when a
   * truncation removed it and no later frame rewrote it.
   */
  resolve(pgno: number): Uint8Array | "base" | "zero" {
    return this.#get(pgno) ?? (pgno <= this.#floor ? "base" : "zero");
  }

  /**
   * Writes everything held to `sink` (in page order) and empties the map. `committed` false
   * flushes in the middle of a transaction: the file is then not sized to the last commit,
   * which would cut off pages the open transaction added.
   */
  async flush(sink: PageSink, committed = true): Promise<void> {
    if (this.#floor !== Infinity) await sink.truncate(this.#floor);
    for (const pgno of [...this.#slots.keys()].sort((a, b) => a - b)) {
      await sink.write(pgno, this.#get(pgno)!);
    }
    if (committed && this.#size !== undefined) await sink.truncate(this.#size);
    this.#empty();
  }

  /** Forgets everything held, keeping the slabs for reuse. */
  clear(): void {
    this.#empty();
    this.#size = undefined;
  }

  #empty(): void {
    this.#slots.clear();
    this.#free = [];
    this.#used = 0;
    this.#floor = Infinity;
  }
}
