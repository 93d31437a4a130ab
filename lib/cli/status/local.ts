/**
 * What `status` reads on the primary's side without a running replicate: the meta directory
 * (current generation, newest shadow WAL and where its committed frames end) and the real WAL
 * (committed frames beyond the shadow, not shipped yet). Read-only: no lock is taken, no
 * SQLite is opened, and only the WAL and the shadow files are read (closing a descriptor of
 * the WAL cannot release SQLite's locks, which it takes on the database and the `-shm`).
 *
 * @module
 */

import { join } from "node:path";
import { equalBytes } from "../../os/bytes.ts";
import { readDirOrEmpty } from "../../os/fs.ts";
import { isGeneration, type Pos } from "../../names.ts";
import { defaultMetaPath, shadowWalPath } from "../../core/meta.ts";
import { scanWal } from "../../core/shadow_wal.ts";

/** The primary's side of one database, as the files show it. */
export interface LocalFacts {
  exists: boolean;
  /** The end of the newest shadow WAL's committed frames; undefined when never replicated. */
  shadow?: Pos;
  /** Shadow WAL sizes by index, for lag across indexes. */
  shadowSizes: Map<number, number>;
  /**
   * Committed bytes in the WAL beyond the shadow: 0 when none, null when the WAL no longer
   * continues the shadow (the next replicate starts a new generation).
   */
  pending: number | null;
  /** Why `pending` is null. */
  note?: string;
}

/** Reads the local facts of the database at `path` with meta directory `metaPath`. */
export async function localFacts(path: string, metaPath?: string): Promise<LocalFacts> {
  const exists = await Deno.stat(path).then(() => true, () => false);
  const meta = metaPath ?? defaultMetaPath(path);
  const shadowSizes = new Map<number, number>();
  const generation = (await Deno.readTextFile(join(meta, "generation")).catch(() => "")).trim();
  if (!isGeneration(generation)) return { exists, shadowSizes, pending: null };
  let newest = -1;
  for (const e of await readDirOrEmpty(join(meta, "generations", generation, "wal"))) {
    const m = /^([0-9a-f]{8})\.wal$/.exec(e.name);
    if (!m) continue;
    const index = parseInt(m[1], 16);
    newest = Math.max(newest, index);
    const st = await Deno.stat(join(meta, "generations", generation, "wal", e.name)).catch(() =>
      undefined
    );
    if (st) shadowSizes.set(index, st.size);
  }
  if (newest < 0) return { exists, shadowSizes, pending: null, note: "no shadow wal" };
  const shadowScan = await scanWal(shadowWalPath(meta, generation, newest)).catch(() => undefined);
  if (!shadowScan) return { exists, shadowSizes, pending: null, note: "shadow wal unreadable" };
  const shadow = { generation, index: newest, offset: shadowScan.committedEnd };
  shadowSizes.set(newest, shadowScan.committedEnd);
  const wal = exists ? await scanWal(`${path}-wal`).catch(() => undefined) : undefined;
  if (!wal || !equalBytes(wal.headerBytes, shadowScan.headerBytes)) {
    return {
      exists,
      shadow,
      shadowSizes,
      pending: null,
      note: "WAL restarted since: the next replicate starts a new generation",
    };
  }
  return { exists, shadow, shadowSizes, pending: Math.max(0, wal.committedEnd - shadow.offset) };
}
