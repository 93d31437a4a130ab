/**
 * Restore: find the generation and objects to use across replicas, then
 * rebuild the database from a snapshot and WAL segments in pure TypeScript.
 * Output goes to a temporary file beside the target (fsynced, then renamed)
 * or to standard output; nothing is left behind on failure.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { LitestreamError, NotFoundError } from "../errors.ts";
import {
  decodeFrameBlocks,
  decodeFrameStream,
  lentFrameBlocks,
  lz4FrameDecoder,
} from "../lz4/mod.ts";
import type { PageSink } from "./page_map.ts";
import { formatPos } from "../names.ts";
import { prefetch } from "../os/prefetch.ts";
import type { BufferPool } from "../os/buffer_pool.ts";
import type { ReplicaClient, WalSegmentInfo } from "../replica_client.ts";
import {
  chooseGeneration,
  type GenerationListing,
  planRestore,
  type RestorePlan,
  type RestoreTarget,
} from "./plan.ts";
import { lendingStream, writeAll } from "../os/fs.ts";
import { HeaderCheck } from "./header_check.ts";
import { streamMerged } from "./merge.ts";
import { type ReplayChain, WalReplayer } from "./replay.ts";

/** A generation listing tied to the replica it came from. */
export interface ReplicaGeneration extends GenerationListing {
  client: ReplicaClient;
}

/** Lists every generation (or only `target.generation`) of every replica with its objects. */
export async function listGenerations(
  clients: ReplicaClient[],
  generation?: string,
): Promise<ReplicaGeneration[]> {
  const perClient = await Promise.all(clients.map(async (client) => {
    const names = (await client.generations()).filter((g) => !generation || g === generation);
    return await Promise.all(names.map(async (g) => ({
      client,
      generation: g,
      snapshots: await client.snapshots(g),
      segments: await client.walSegments(g),
    })));
  }));
  return perClient.flat();
}

/** Chooses the replica, generation and objects for a restore; throws `NotFoundError` when none fits. */
export async function findRestorePlan(
  clients: ReplicaClient[],
  target: RestoreTarget,
): Promise<{ client: ReplicaClient; plan: RestorePlan }> {
  if (target.index !== undefined && target.timestamp) {
    throw new LitestreamError("cannot specify index & timestamp to restore");
  }
  const listings = await listGenerations(clients, target.generation);
  if (target.generation && listings.length === 0) {
    throw new NotFoundError(
      `generation ${target.generation} not found in ${clients.map((c) => c.location).join(", ")}`,
    );
  }
  const chosen = chooseGeneration(listings, target);
  if (!chosen) throw new NotFoundError("no matching backups found");
  return { client: chosen.client, plan: planRestore(chosen, target) };
}

/** Progress of a running restore. */
export interface RestoreProgress {
  objects: number;
  totalObjects: number;
  bytes: number;
}

/** Options of `restoreDatabase`. */
export interface RestoreOptions {
  /** Output path, "-" for standard output, or a function that receives the database bytes in order. */
  output: string | ((chunk: Uint8Array) => Promise<void>);
  /** Objects fetched in parallel, and parts of the snapshot where the store serves ranges (default 8). */
  parallelism?: number;
  /**
   * Told of a slower way taken (the store ignores ranges; no temporary directory for `-o -`),
   * for a debug log.
   */
  onNote?: (note: string) => void;
  /** Mode of the output file (default 0o600). */
  mode?: number;
  /** Called as objects are applied. */
  onProgress?: (p: RestoreProgress) => void;
  /** Checks the complete temporary file before it is renamed to the output; a throw discards it. */
  verify?: (path: string) => Promise<void>;
}

/** What a restore produced. */
export interface RestoreResult {
  generation: string;
  snapshotIndex: number;
  segments: number;
  frames: number;
  /** Size of the restored database in bytes. */
  size: number;
  /** Where the WAL replay ended, to continue from (undefined when no segment was applied). */
  chain?: ReplayChain;
}

/** Segments up to this compressed size are prefetched into memory; larger ones stream when reached. */
const PREFETCH_MAX_BYTES = 8 * 1024 * 1024;
/** The most prefetched segments may hold in memory together (one may always be fetched). */
const PREFETCH_BUDGET_BYTES = 16 * 1024 * 1024;

/** Restores the database described by `plan` from `client` to `options.output`. */
export async function restoreDatabase(
  client: ReplicaClient,
  plan: RestorePlan,
  options: RestoreOptions,
): Promise<RestoreResult> {
  const progress = { objects: 0, totalObjects: plan.segments.length + 1, bytes: 0 };
  const tick = (bytes: number) => {
    progress.objects++;
    progress.bytes += bytes;
    options.onProgress?.({ ...progress });
  };
  const snapshotName = client.describe("snapshot", {
    generation: plan.generation,
    index: plan.snapshot.index,
    offset: 0,
  });
  const readSnapshot = async () => {
    const stream = await client.readSnapshot(plan.generation, plan.snapshot.index, {
      parallelism: options.parallelism ?? 8,
      onSingleStream: options.onNote,
    });
    if (!options.onProgress) return stream;
    // Progress within the snapshot, which is most of a restore's bytes.
    const start = progress.bytes;
    let read = 0;
    return stream.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          read += chunk.length;
          options.onProgress!({ ...progress, bytes: start + read });
          controller.enqueue(chunk);
        },
      }),
    );
  };
  // Lent to `streamMerged` (see `chunksOf`): decoded block by block into reused buffers.
  const openSnapshot = async () => {
    const stored = await readSnapshot();
    return lendingStream((lend) =>
      lend
        ? lentFrameBlocks(stored, snapshotName)
        : stored.pipeThrough(lz4FrameDecoder(snapshotName))
    );
  };

  const replay = async (replayer: WalReplayer) => {
    const fetches = prefetch(
      plan.segments,
      options.parallelism ?? 8,
      (seg) => fetchSegment(client, seg),
      { weigh: (seg) => seg.size > PREFETCH_MAX_BYTES ? 0 : seg.size, max: PREFETCH_BUDGET_BYTES },
    );
    let i = 0;
    for await (const fetched of fetches) {
      const seg = plan.segments[i++];
      const name = client.describe("wal", seg);
      const end = plan.stopAt?.index === seg.index ? plan.stopAt.offset : Infinity;
      const data = fetched instanceof Uint8Array
        ? decodeFrameBlocks(fetched, name)
        : (await fetched()).pipeThrough(lz4FrameDecoder(name));
      await replayer.apply(seg, name, data, end);
      tick(seg.size);
    }
    const at = replayer.position;
    if (
      plan.stopAt && plan.segments.length > 0 &&
      (at.index !== plan.stopAt.index || at.offset !== plan.stopAt.offset)
    ) {
      throw new NotFoundError(
        `replica ends at index ${at.index} offset ${at.offset}, before the requested ${
          formatPos(plan.stopAt)
        }`,
      );
    }
  };

  const result = (size: number, replayer: WalReplayer): RestoreResult => ({
    generation: plan.generation,
    snapshotIndex: plan.snapshot.index,
    segments: plan.segments.length,
    frames: replayer.frames,
    size,
    chain: replayer.chain,
  });

  const staging = options.output === "-" && plan.segments.length > 0
    ? await stagingDir(options)
    : undefined;
  if (staging) return await restoreThroughFile(client, plan, options, staging);
  if (typeof options.output !== "string" || options.output === "-") {
    const replayer = new WalReplayer(undefined);
    await replay(replayer);
    const sink = typeof options.output === "string" ? writeStdout : options.output;
    const size = await streamMerged(await openSnapshot(), snapshotName, replayer, sink);
    tick(plan.snapshot.size);
    return result(size, replayer);
  }

  const output = options.output;
  const tmp = join(
    dirname(output),
    `.${output.split(/[\\/]/).pop()}.${crypto.randomUUID().slice(0, 8)}.tmp`,
  );
  await Deno.mkdir(dirname(output), { recursive: true, mode: 0o700 });
  let file: Deno.FsFile;
  try {
    file = await Deno.open(tmp, {
      read: true,
      write: true,
      createNew: true,
      mode: options.mode ?? 0o600,
    });
  } catch (err) {
    // Name the output the user asked for, not our temporary file beside it.
    if (err instanceof Deno.errors.PermissionDenied || err instanceof Deno.errors.NotFound) {
      throw new LitestreamError(`cannot write ${output}: ${(err as Error).message.split(":")[0]}`, {
        cause: err,
      });
    }
    throw err;
  }
  let closed = false;
  try {
    let pageSize = 0;
    const header = new HeaderCheck(snapshotName, (ps) => pageSize = ps);
    // Block by block through reusable buffers, each block written while the next one decodes.
    await decodeFrameStream(
      await readSnapshot(),
      snapshotName,
      async (block) => {
        const out = header.pass(block);
        if (out) await writeAll(file, out);
      },
    );
    header.end();
    tick(plan.snapshot.size);
    const replayer = new WalReplayer(pageSize, fileSink(file, pageSize));
    await replay(replayer);
    if (replayer.pages) await replayer.pages.flush(replayer.sink!);
    await file.sync();
    const size = (await file.stat()).size;
    file.close();
    closed = true;
    await options.verify?.(tmp);
    await Deno.rename(tmp, output);
    return result(size, replayer);
  } catch (err) {
    if (!closed) file.close();
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}

/**
 * A private temporary directory to build a database for standard output in, or undefined
 * without write permission there: the replay then stays in memory, which works with only
 * `--allow-read` but holds every page the WAL touches.
 */
async function stagingDir(options: RestoreOptions): Promise<string | undefined> {
  try {
    return await Deno.makeTempDir({ prefix: "litestream-restore-" });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied)) {
      throw err;
    }
    options.onNote?.(`no temporary directory (${err.message}); replaying the WAL in memory`);
    return undefined;
  }
}

/**
 * Restores to standard output with memory bounded as for a file: the database is built in the
 * private temporary directory `dir` (removed afterwards, whatever happens) and then copied out.
 */
async function restoreThroughFile(
  client: ReplicaClient,
  plan: RestorePlan,
  options: RestoreOptions,
  dir: string,
): Promise<RestoreResult> {
  try {
    const staged = join(dir, "db");
    const result = await restoreDatabase(client, plan, { ...options, output: staged });
    // The readable closes the file at its end, or when the loop is left by a throw.
    for await (const chunk of (await Deno.open(staged)).readable) await writeStdout(chunk);
    return result;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Fetches a segment's stored bytes ahead of time (into a buffer of `pool` when given: the
 * caller gives it back once done), or for a large one a function that opens it as a stream
 * when its turn comes.
 */
export async function fetchSegment(
  client: ReplicaClient,
  seg: WalSegmentInfo,
  pool?: BufferPool,
): Promise<Uint8Array | (() => Promise<ReadableStream<Uint8Array>>)> {
  if (seg.size > PREFETCH_MAX_BYTES) return () => client.readWalSegment(seg);
  return await readObject(await client.readWalSegment(seg), seg.size, pool);
}

/**
 * Reads a whole object, expected to be `size` bytes: straight into one array of that size (or
 * one from `pool`) when the stream allows (a file's stream), instead of collecting 64 KiB chunks.
 */
async function readObject(
  stream: ReadableStream<Uint8Array>,
  size: number,
  pool?: BufferPool,
): Promise<Uint8Array> {
  let reader: ReadableStreamBYOBReader;
  try {
    reader = stream.getReader({ mode: "byob" });
  } catch {
    return await new Response(stream).bytes();
  }
  try {
    // One spare byte, so a read that fills the array is not mistaken for the end.
    let buf = pool ? pool.take(size + 1) : new Uint8Array(size + 1);
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        const grown = new Uint8Array(2 * buf.length);
        grown.set(buf);
        buf = grown;
      }
      const { value, done } = await reader.read(buf.subarray(n));
      if (value) {
        buf = new Uint8Array(value.buffer); // the read transferred it
        n += value.length;
      }
      if (done) return buf.subarray(0, n);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw err;
  }
}

/** Writes pages into an open database file; pages arrive sorted by number, so seeks are short. */
function fileSink(file: Deno.FsFile, pageSize: number): PageSink {
  return {
    async write(pgno, page) {
      await file.seek((pgno - 1) * pageSize, Deno.SeekMode.Start);
      await writeAll(file, page);
    },
    async truncate(pages) {
      await file.truncate(pages * pageSize);
    },
  };
}

function writeStdout(data: Uint8Array): Promise<void> {
  return writeAll(Deno.stdout, data);
}
