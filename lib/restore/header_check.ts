/**
 * The check of a database image's header as it streams past: the first 100 bytes must be a
 * SQLite header, whose page size the restore needs.
 *
 * @module
 */

import { CorruptionError } from "../errors.ts";
import { DB_HEADER_SIZE, decodeDbHeader } from "../sqlite/header.ts";

/** Checks a database image's header once its first bytes have passed and reports the page size. */
export class HeaderCheck {
  #head: Uint8Array | undefined = new Uint8Array(0);

  constructor(readonly name: string, readonly onPageSize: (pageSize: number) => void) {}

  /**
   * Takes the next bytes of the image and returns what to pass on: `chunk` itself once the
   * header was checked, the bytes held so far with it when this completes the header, or
   * undefined while the header is incomplete.
   */
  pass(chunk: Uint8Array): Uint8Array | undefined {
    const head = this.#head;
    if (!head) return chunk;
    if (head.length === 0 && chunk.length >= DB_HEADER_SIZE) {
      this.#check(chunk);
      this.#head = undefined;
      return chunk;
    }
    const joined = new Uint8Array(head.length + chunk.length);
    joined.set(head);
    joined.set(chunk, head.length);
    if (joined.length < DB_HEADER_SIZE) {
      this.#head = joined;
      return undefined;
    }
    this.#check(joined);
    this.#head = undefined;
    return joined;
  }

  /** At the end of the image: checks a header that never completed (and so throws). */
  end(): void {
    if (this.#head) this.#check(this.#head);
  }

  #check(bytes: Uint8Array): void {
    const header = decodeDbHeader(bytes);
    if (typeof header === "string") throw new CorruptionError(this.name, header);
    this.onPageSize(header.pageSize);
  }
}
