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

/** Accumulates page images of a WAL replay. */
export class PageMap {
  readonly #pages = new Map<number, Uint8Array>();
  /** Database size in pages after the last commit, or undefined before any commit. */
  #size: number | undefined;
  /** Lowest size any commit truncated to since the last flush: pages above it are gone from the base image. */
  #floor = Infinity;

  /** Creates a map for pages of `pageSize` bytes. */
  constructor(readonly pageSize: number) {}

  /** Bytes of page images held in memory. */
  get bytes(): number {
    return this.#pages.size * this.pageSize;
  }

  /** Page count after the last applied commit, or undefined when nothing was committed. */
  get size(): number | undefined {
    return this.#size;
  }

  /** Records a page image (copied); a later image of the same page replaces it. */
  put(pgno: number, page: Uint8Array): void {
    this.#pages.set(pgno, page.slice());
  }

  /** Applies a commit that leaves the database at `pages` pages. */
  commit(pages: number): void {
    if (this.#size === undefined || pages < this.#size) {
      for (const pgno of this.#pages.keys()) if (pgno > pages) this.#pages.delete(pgno);
      this.#floor = Math.min(this.#floor, pages);
    }
    this.#size = pages;
  }

  /**
   * The page as the replay leaves it over a base image: the replayed image,
   * `"base"` when the base image's page survives, or `"zero"` when a
   * truncation removed it and no later frame rewrote it.
   */
  resolve(pgno: number): Uint8Array | "base" | "zero" {
    return this.#pages.get(pgno) ?? (pgno <= this.#floor ? "base" : "zero");
  }

  /** Writes everything held to `sink` (in page order) and empties the map. */
  async flush(sink: PageSink): Promise<void> {
    if (this.#floor !== Infinity) await sink.truncate(this.#floor);
    for (const pgno of [...this.#pages.keys()].sort((a, b) => a - b)) {
      await sink.write(pgno, this.#pages.get(pgno)!);
    }
    if (this.#size !== undefined) await sink.truncate(this.#size);
    this.#pages.clear();
    this.#floor = Infinity;
  }
}
