/**
 * A database image with a WAL replay's pages substituted, streamed in page order, for outputs
 * that cannot seek (a checksum, standard output).
 *
 * @module
 */

import { ByteReader } from "../os/byte_reader.ts";
import { chunksOf } from "../os/fs.ts";
import { CorruptionError } from "../errors.ts";
import { HeaderCheck } from "./header_check.ts";
import type { WalReplayer } from "./replay.ts";

/**
 * Streams a database image with the replayed pages substituted, in page
 * order, for outputs that cannot seek (standard output, a checksum).
 * Returns the bytes written.
 */
export async function streamMerged(
  snapshot: ReadableStream<Uint8Array>,
  name: string,
  replayer: WalReplayer,
  write: (b: Uint8Array) => Promise<void>,
): Promise<number> {
  const pages = replayer.pages;
  const header = new HeaderCheck(name, (ps) => {
    if (pages && ps !== pages.pageSize) {
      throw new CorruptionError(
        name,
        `database page size ${ps} differs from wal page size ${pages.pageSize}`,
      );
    }
  });
  // Lent chunks (see chunksOf): each one is written out before the next is asked for.
  async function* checked(): AsyncGenerator<Uint8Array> {
    for await (const chunk of chunksOf(snapshot)) {
      const out = header.pass(chunk);
      if (out) yield out;
    }
    header.end();
  }
  let written = 0;
  if (!pages || pages.size === undefined) {
    // No WAL applied: the snapshot is the database, byte for byte.
    for await (const chunk of checked()) {
      await write(chunk);
      written += chunk.length;
    }
    return written;
  }
  const reader = new ByteReader(checked());
  try {
    const zero = new Uint8Array(pages.pageSize);
    let snapshotEnded = false;
    for (let pgno = 1; pgno <= pages.size; pgno++) {
      let base: Uint8Array | undefined;
      if (!snapshotEnded) {
        const r = await reader.read(pages.pageSize);
        if (r instanceof Uint8Array) base = r;
        else snapshotEnded = true;
      }
      const page = pages.resolve(pgno);
      const out = page === "base" ? base ?? zero : page === "zero" ? zero : page;
      await write(out);
      written += out.length;
    }
    return written;
  } finally {
    await reader.cancel();
  }
}
