/**
 * `replicate -restore-if-db-not-exists` (and the database key `restore-if-db-not-exists`,
 * v0.5's names): before replicating, a database that does not exist is restored from its
 * replicas; with no backup anywhere it starts empty (replicate waits for the file, as
 * always). Any other failure (a store that cannot be reached) stops replicate: starting empty
 * beside a backup we could not read would fork its history.
 *
 * A plain restore leaves no meta directory, so the next `replicate` starts a new generation
 * with a full snapshot (spec §6.6, v0.3.13's behaviour with `restore` before `replicate`).
 * Here the database comes back as its primary left it instead: the database file holds the
 * snapshot and every WAL index but the last, and the last index's WAL (the exact bytes of the
 * replica's segments, checksums verified) is put beside it as `<db>-wal`, with the same bytes
 * as that index's shadow WAL in the meta directory and the `generation` file naming the
 * generation. `replicate` then finds the WAL header matching its shadow, resumes at the
 * replica's own position, and ships nothing until the application writes: the same
 * generation, no snapshot. SQLite reads pages from the WAL over the database file, so the file
 * may hold any state from the start of that index to its end (a snapshot taken inside it).
 * Where that cannot be proven (the last index's segments do not start at offset 0, the WAL
 * does not end on a commit, page sizes differ) the database is restored in full and
 * replicate starts a new generation, as v0.3.13 would.
 *
 * Files appear in a safe order: `<db>-wal` and the meta directory first, the database file
 * last (renamed into place), so nobody opens the database without its WAL. Stale `-wal` and
 * `-shm` files of a missing database are removed first: SQLite would apply a stale WAL to a
 * fresh file.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { DbConfig } from "./config.ts";
import { LitestreamError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { exists, removeIfExists, writeAll } from "../os/fs.ts";
import { defaultMetaPath, shadowWalPath } from "../core/meta.ts";
import { chooseGeneration, type GenerationListing, planRestore } from "../restore/plan.ts";
import { type ReplicaGeneration, restoreDatabase } from "../restore/restore.ts";
import { scanWal } from "../core/shadow_wal.ts";
import { lz4FrameDecoder } from "../lz4/mod.ts";
import { DB_HEADER_SIZE, decodeDbHeader } from "../sqlite/header.ts";
import { formatPos, hex8 } from "../names.ts";
import type { ReplicaClient, WalSegmentInfo } from "../replica_client.ts";
import { replicaClientFromConfig } from "./replica_client_from_config.ts";

/** What happened to one database. */
export type StartupRestore = "exists" | "no-backup" | "continued" | "restored";

/** Restores `cfg`'s database when it does not exist (see the module comment). */
export async function restoreIfDbNotExists(cfg: DbConfig, log: Logger): Promise<StartupRestore> {
  if (await exists(cfg.path)) {
    log.info("database exists, skipping restore", { path: cfg.path });
    return "exists";
  }
  const listings: ReplicaGeneration[] = [];
  for (const r of cfg.replicas) {
    try {
      const client = await replicaClientFromConfig(r);
      for (const generation of await client.generations()) {
        listings.push({
          client,
          generation,
          snapshots: await client.snapshots(generation),
          segments: await client.walSegments(generation),
        });
      }
    } catch (err) {
      throw new LitestreamError(
        `cannot restore ${cfg.path}: replica ${r.name}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  const chosen = chooseGeneration(listings, {});
  if (!chosen) {
    log.info("no backup found, starting with an empty database", { path: cfg.path });
    return "no-backup";
  }
  // Orphans of a previous database: SQLite would apply a stale WAL to the restored file.
  await removeIfExists(`${cfg.path}-wal`);
  await removeIfExists(`${cfg.path}-shm`);
  const metaPath = cfg.metaPath ?? defaultMetaPath(cfg.path);
  const client = chosen.client;
  const tail = await fetchLastIndex(client, chosen).catch((err) => {
    if (!(err instanceof CannotContinue)) throw err;
    log.warn("cannot continue the generation, restoring in full", { reason: err.message });
    return undefined;
  });
  const plan = planRestore(chosen, {});
  const started = performance.now();
  if (!tail) {
    const result = await restoreDatabase(client, plan, { output: cfg.path });
    log.info("restored before replicating (the next sync starts a new generation)", {
      path: cfg.path,
      replica: client.location,
      generation: result.generation,
      elapsed: `${((performance.now() - started) / 1000).toFixed(2)}s`,
    });
    return "restored";
  }
  const walTmp = `${cfg.path}-wal.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    const result = await restoreDatabase(
      client,
      { ...plan, segments: plan.segments.filter((s) => s.index < tail.index) },
      {
        output: cfg.path,
        // Runs on the complete database file, before it is renamed into place.
        verify: async (dbTmp) => {
          const pageSize = await dbPageSize(dbTmp);
          await writeFileSynced(walTmp, tail.wal);
          const scan = await scanWal(walTmp);
          if (
            !scan || scan.committedEnd !== tail.wal.length || scan.header.pageSize !== pageSize
          ) {
            throw new LitestreamError(
              `${
                client.describe("wal", {
                  generation: chosen.generation,
                  index: tail.index,
                  offset: 0,
                })
              }: the WAL of index ${hex8(tail.index)} does not end on a commit of this database`,
            );
          }
          await writeMeta(metaPath, chosen.generation, tail.index, tail.wal);
          await Deno.rename(walTmp, `${cfg.path}-wal`);
        },
      },
    );
    log.info("restored before replicating; replication continues this generation", {
      path: cfg.path,
      replica: client.location,
      position: formatPos({ generation: result.generation, ...tail, offset: tail.wal.length }),
      elapsed: `${((performance.now() - started) / 1000).toFixed(2)}s`,
    });
    return "continued";
  } catch (err) {
    await removeIfExists(walTmp);
    await removeIfExists(`${cfg.path}-wal`);
    throw err;
  }
}

/** Why the generation cannot be continued from this replica (a full restore still can be). */
class CannotContinue extends Error {}

/**
 * The last WAL index of the generation and its whole WAL (segments from offset 0, in order,
 * decompressed); throws a plain error when the replica does not hold it from its start.
 */
async function fetchLastIndex(
  client: ReplicaClient,
  g: GenerationListing,
): Promise<{ index: number; wal: Uint8Array }> {
  const snapshot = g.snapshots.at(-1)!;
  const last = g.segments.at(-1);
  if (!last || last.index < snapshot.index) {
    throw new CannotContinue("no WAL after the newest snapshot");
  }
  const segs: WalSegmentInfo[] = g.segments.filter((s) => s.index === last.index);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (const seg of segs) {
    if (seg.offset !== size) {
      throw new CannotContinue(`${client.describe("wal", seg)} does not start at offset ${size}`);
    }
    const data = (await client.readWalSegment(seg)).pipeThrough(
      lz4FrameDecoder(client.describe("wal", seg)),
    );
    for await (const chunk of data) {
      chunks.push(chunk.slice());
      size += chunk.length;
    }
  }
  const wal = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    wal.set(c, at);
    at += c.length;
  }
  return { index: last.index, wal };
}

/** Writes the shadow WAL of `index` and then the `generation` file naming `generation`. */
async function writeMeta(
  metaPath: string,
  generation: string,
  index: number,
  wal: Uint8Array,
): Promise<void> {
  // A stale copy of this generation (the same machine, a deleted database) must not mix in.
  await Deno.remove(join(metaPath, "generations", generation), { recursive: true }).catch(
    () => {},
  );
  const shadow = shadowWalPath(metaPath, generation, index);
  await Deno.mkdir(dirname(shadow), { recursive: true, mode: 0o700 });
  await writeFileSynced(`${shadow}.tmp`, wal);
  await Deno.rename(`${shadow}.tmp`, shadow);
  const file = join(metaPath, "generation");
  await writeFileSynced(`${file}.tmp`, new TextEncoder().encode(`${generation}\n`));
  await Deno.rename(`${file}.tmp`, file);
}

async function writeFileSynced(path: string, data: Uint8Array): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true, mode: 0o600 });
  try {
    await writeAll(f, data);
    await f.sync();
  } finally {
    f.close();
  }
}

async function dbPageSize(path: string): Promise<number> {
  const f = await Deno.open(path, { read: true });
  try {
    const head = new Uint8Array(DB_HEADER_SIZE);
    const n = await f.read(head);
    const h = decodeDbHeader(head.subarray(0, n ?? 0));
    if (typeof h === "string") throw new LitestreamError(`restored database: ${h}`);
    return h.pageSize;
  } finally {
    f.close();
  }
}
