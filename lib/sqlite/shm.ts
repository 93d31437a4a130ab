/**
 * The WAL-index (`-shm`) file as SQLite's WAL documents it: where the WAL locks live and the
 * header fields that tell how far the WAL is committed and backfilled. Pure decoding; the
 * bytes are read elsewhere (see `lib/os/lock_probe.ts`).
 *
 * The header is in the writer's native byte order (little-endian on every platform we run
 * on) and stored twice, so a reader can tell a torn read: both copies must agree.
 *
 * @module
 */

/** Byte offset of the WAL write lock: held by a writer for its whole write transaction. */
export const SHM_WRITE_LOCK = 120;
/** Byte offset of the checkpoint lock: held by a checkpointer for its whole run. */
export const SHM_CKPT_LOCK = 121;
/** Byte offset of read mark `i`'s lock (0–4). */
export function shmReadLock(i: number): number {
  return 123 + i;
}

/** Bytes to read for {@linkcode decodeWalIndex}: two header copies and the checkpoint info. */
export const WAL_INDEX_READ_SIZE = 136;

/** What the WAL-index header says about the WAL. */
export interface WalIndexState {
  /** Frames of the WAL up to and including the last commit. */
  mxFrame: number;
  /** Frames already copied back into the database file by checkpoints. */
  nBackfill: number;
  /** Salt-1 and salt-2 as they appear in the WAL header (bytes 16–23). */
  salt: Uint8Array;
  /**
   * The five read marks (`aReadMark`): the WAL frame a reader on mark `i` reads up to. Mark 0
   * reads the database file alone; 0xffffffff is an unused mark.
   */
  readMarks: number[];
}

/**
 * Decodes the first {@linkcode WAL_INDEX_READ_SIZE} bytes of a `-shm` file; undefined when the
 * two header copies differ (a write in progress: read again) or the header is not initialised.
 */
export function decodeWalIndex(buf: Uint8Array): WalIndexState | undefined {
  if (buf.length < WAL_INDEX_READ_SIZE) return undefined;
  for (let i = 0; i < 48; i++) if (buf[i] !== buf[48 + i]) return undefined;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf[12] === 0) return undefined; // isInit
  return {
    mxFrame: v.getUint32(16, true),
    nBackfill: v.getUint32(96, true),
    salt: buf.slice(32, 40),
    readMarks: [0, 1, 2, 3, 4].map((i) => v.getUint32(100 + 4 * i, true)),
  };
}
