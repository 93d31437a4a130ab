/**
 * Replays WAL segments of one generation, in (index, offset) order, into a
 * `PageMap`, checking everything v0.3.13 leaves to chance: each index starts
 * at offset 0 with a valid header, offsets chain contiguously, every frame
 * carries the header's salts and continues the checksum chain, and every
 * segment ends on a commit. Any failure names the object.
 *
 * @module
 */

import { ByteReader } from "../os/byte_reader.ts";
import { CorruptionError } from "../errors.ts";
import { PageMap, type PageSink } from "./page_map.ts";
import type { Pos } from "../names.ts";
import {
  type Checksum,
  decodeWalHeader,
  FRAME_HEADER_SIZE,
  frameSize,
  verifyFrame,
  WAL_HEADER_SIZE,
  type WalHeader,
} from "../sqlite/wal.ts";

/**
 * Default memory budget for page images before flushing to the sink. With the ~45 MB a Deno
 * process needs anyway and a few 4 MiB decoding areas, it keeps a restore to a file under
 * 150 MB of memory whatever the WAL holds.
 */
export const DEFAULT_FLUSH_BYTES = 32 * 1024 * 1024;

/**
 * Where a replay stands in its WAL index, with what checking the next frames needs: the index's
 * WAL header and the running checksum. Lets a later replay (another batch, another process)
 * continue the same index without its earlier segments.
 */
export interface ReplayChain {
  index: number;
  offset: number;
  header: WalHeader;
  checksum: Checksum;
}

/** Applies WAL segments to a page map, flushing to `sink` when one is given. */
export class WalReplayer {
  #map: PageMap | undefined;
  #index = -1;
  #header: WalHeader | undefined;
  #checksum: Checksum = [0, 0];
  #offset = 0;
  /** Frames applied so far, for reports. */
  frames = 0;

  /**
   * @param pageSize the database's page size when known (file mode), or a map of that page size
   * to fill (emptied first: a long-lived caller reuses its slabs); otherwise taken from the
   * first WAL header
   * @param sink where to flush pages when over `flushBytes`; without one, pages stay in memory
   */
  constructor(
    pageSize: number | PageMap | undefined,
    readonly sink?: PageSink,
    readonly flushBytes = DEFAULT_FLUSH_BYTES,
  ) {
    if (pageSize instanceof PageMap) {
      pageSize.clear();
      this.#map = pageSize;
    } else if (pageSize !== undefined) {
      this.#map = new PageMap(pageSize);
    }
  }

  /** Where the replay stands: the last applied index and the WAL offset reached in it. */
  get position(): { index: number; offset: number } {
    return { index: this.#index, offset: this.#offset };
  }

  /** Where the replay stands with its checking state, or undefined before any segment. */
  get chain(): ReplayChain | undefined {
    if (!this.#header) return undefined;
    return {
      index: this.#index,
      offset: this.#offset,
      header: this.#header,
      checksum: this.#checksum,
    };
  }

  /** Continues from `chain` (saved by an earlier replay of the same generation) before any apply. */
  resume(chain: ReplayChain): void {
    this.#map ??= new PageMap(chain.header.pageSize);
    this.#index = chain.index;
    this.#offset = chain.offset;
    this.#header = chain.header;
    this.#checksum = chain.checksum;
  }

  /** The accumulated pages, or undefined when no segment was applied. */
  get pages(): PageMap | undefined {
    return this.#map;
  }

  /**
   * Applies one decompressed segment, given as a stream or as an iterator of chunks (see
   * `ByteReader`); `name` identifies the object in errors.
   * With `end`, frames at or past that WAL offset are left out (it must be a commit boundary).
   */
  async apply(
    pos: Pos,
    name: string,
    data: ReadableStream<Uint8Array> | Iterator<Uint8Array>,
    end = Infinity,
  ): Promise<void> {
    const reader = new ByteReader(data);
    try {
      await this.#apply(pos, name, reader, end);
    } finally {
      await reader.cancel();
    }
  }

  async #apply(pos: Pos, name: string, reader: ByteReader, end: number): Promise<void> {
    if (pos.index !== this.#index) {
      if (pos.offset !== 0) {
        throw new CorruptionError(
          name,
          `missing initial wal segment: index ${pos.index} starts at offset ${pos.offset}`,
        );
      }
    } else if (pos.offset !== this.#offset) {
      throw new CorruptionError(
        name,
        `wal segment does not follow the previous one: expected offset ${this.#offset}, found ${pos.offset}`,
      );
    }

    let offset = pos.offset;
    if (offset === 0) {
      const bytes = await reader.read(WAL_HEADER_SIZE);
      if (!(bytes instanceof Uint8Array)) {
        throw new CorruptionError(name, "wal segment is shorter than a wal header");
      }
      const header = decodeWalHeader(bytes);
      if (typeof header === "string") throw new CorruptionError(name, header);
      this.#map ??= new PageMap(header.pageSize);
      if (header.pageSize !== this.#map.pageSize) {
        throw new CorruptionError(
          name,
          `wal page size ${header.pageSize} differs from database page size ${this.#map.pageSize}`,
        );
      }
      this.#index = pos.index;
      this.#header = header;
      this.#checksum = header.checksum;
      offset = WAL_HEADER_SIZE;
    }
    const header = this.#header!;
    const map = this.#map!;
    const size = frameSize(header.pageSize);
    let uncommittedSince = -1;
    let frames = 0;
    while (offset < end) {
      const frame = await reader.read(size);
      if (frame === undefined) break;
      if (!(frame instanceof Uint8Array)) {
        throw new CorruptionError(
          name,
          `truncated frame at wal offset ${offset} (${frame.partial} of ${size} bytes)`,
        );
      }
      const result = verifyFrame(frame, header, this.#checksum);
      if (typeof result === "string") {
        throw new CorruptionError(name, `${result} at wal offset ${offset}`);
      }
      this.#checksum = result.checksum;
      map.put(result.header.pgno, frame.subarray(FRAME_HEADER_SIZE));
      if (uncommittedSince < 0) uncommittedSince = offset;
      if (result.header.commitSize !== 0) {
        map.commit(result.header.commitSize);
        uncommittedSince = -1;
      }
      if (this.sink && map.bytes >= this.flushBytes) {
        // Inside a huge transaction too: should it never commit, the replay fails and the
        // output is discarded.
        await map.flush(this.sink, uncommittedSince < 0);
      }
      offset += size;
      frames++;
    }
    if (uncommittedSince >= 0) {
      throw new CorruptionError(
        name,
        `wal segment ends inside a transaction (no commit frame after offset ${uncommittedSince})`,
      );
    }
    if (frames === 0 && pos.offset !== 0) {
      throw new CorruptionError(name, "wal segment holds no frames");
    }
    this.frames += frames;
    this.#offset = offset;
  }
}
