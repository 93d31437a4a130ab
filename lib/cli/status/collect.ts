/**
 * The facts `litestream status` reports, per database and replica. Live figures (positions,
 * lag, last sync and last error) come from a running replicate's `/healthz` on the config's
 * `addr`; without one they come from the meta directory and the replicas (see `local.ts`),
 * and the lag in time is then an estimate: the time since the replica's last upload. What only
 * the store knows (generation start, newest snapshot, restore window) is always listed from
 * the replicas.
 *
 * @module
 */

import type { Config, DbConfig } from "../config.ts";
import { comparePos, formatPos, type Pos } from "../../names.ts";
import type { ReplicaClient } from "../../replica_client.ts";
import { chooseGeneration, generationBounds, timeNs } from "../../restore/plan.ts";
import { listGenerations, type ReplicaGeneration } from "../../restore/restore.ts";
import { lz4FrameDecoder } from "../../lz4/mod.ts";
import { formatDuration } from "../duration.ts";
import type { DbHealth, HealthReport, ReplicaHealth } from "../health.ts";
import { replicaClientFromConfig } from "../replica_client_from_config.ts";
import { type LocalFacts, localFacts } from "./local.ts";

/** One replica's status; times are RFC 3339, durations milliseconds. */
export interface ReplicaStatus {
  name: string;
  type: string;
  location: string;
  /** What the replica holds of the current generation (`generation/index:offset`). */
  position: string | null;
  lagBytes: number | null;
  lagMs: number | null;
  /** Live: the last sync that succeeded; otherwise the replica's newest upload. */
  lastSyncAt: string | null;
  /** Live only (a stopped replicate leaves no record of its errors). */
  lastError: { message: string; at: string } | null;
  generation: string | null;
  generationStart: string | null;
  newestSnapshotAt: string | null;
  newestSnapshotAgeMs: number | null;
  /** The oldest and newest times a `restore -timestamp` reaches; null when nothing restores. */
  restoreWindow: { oldest: string; newest: string } | null;
  /** Why the store's listing (generation, snapshot, window) is missing. */
  storeError?: string;
  healthy: boolean;
  problem?: string;
}

/** One database's status. */
export interface DbStatus {
  path: string;
  exists: boolean;
  /** Where the live figures came from: `live` (a running replicate) or `files`. */
  source: "live" | "files";
  /** What the shadow WAL holds, plus (from files) committed WAL not copied yet. */
  localPosition: string | null;
  /** Committed WAL bytes not yet in the shadow (files only); null when the WAL moved on. */
  pendingBytes: number | null;
  lastSyncAt: string | null;
  lastError: { message: string; at: string } | null;
  note?: string;
  healthy: boolean;
  problem?: string;
  replicas: ReplicaStatus[];
}

/** The whole status. */
export interface Status {
  healthy: boolean;
  time: string;
  /** The running replicate's address when it answered. */
  live: string | null;
  dbs: DbStatus[];
}

/** Asks a running replicate for its health report at `addr`; undefined when none answers. */
export async function fetchLive(addr: string): Promise<HealthReport | undefined> {
  if (!addr) return undefined;
  const i = addr.lastIndexOf(":");
  let host = addr.slice(0, i);
  if (host === "" || host === "0.0.0.0") host = "127.0.0.1";
  if (host === "[::]") host = "[::1]";
  try {
    const res = await fetch(`http://${host}:${addr.slice(i + 1)}/healthz`, {
      signal: AbortSignal.timeout(3000),
    });
    const body = await res.json();
    return Array.isArray(body?.dbs) ? body as HealthReport : undefined;
  } catch {
    return undefined;
  }
}

/** Collects the status of `dbs` (all of the config's, or the one asked for). */
export async function collectStatus(
  config: Config,
  dbs: DbConfig[],
  timeoutMs: number,
  now = Date.now(),
): Promise<Status> {
  const live = await fetchLive(config.addr);
  const out = await Promise.all(dbs.map((db) => {
    const l = live?.dbs.find((d) => d.path === db.path);
    return dbStatus(db, config.maxLagIntervals, l, timeoutMs, now);
  }));
  return {
    healthy: out.every((d) => d.healthy),
    time: new Date(now).toISOString(),
    live: live ? config.addr : null,
    dbs: out,
  };
}

async function dbStatus(
  cfg: DbConfig,
  maxLagIntervals: number,
  live: DbHealth | undefined,
  timeoutMs: number,
  now: number,
): Promise<DbStatus> {
  const local = await localFacts(cfg.path, cfg.metaPath);
  const generation = live?.generation ?? local.shadow?.generation;
  const replicas = await Promise.all(cfg.replicas.map(async (r) => {
    const liveReplica = live?.replicas.find((x) => x.name === r.name);
    const limit = maxLagIntervals * r.syncInterval;
    let client: ReplicaClient | undefined;
    try {
      client = await replicaClientFromConfig(r);
      const c = client;
      return await withTimeout(timeoutMs, async () => {
        const listing = await listGenerations([c]);
        const figures = liveReplica
          ? liveFigures(liveReplica)
          : await fileFigures(c, local, listing, limit, now);
        const store = storeFacts(listing, generation, now);
        return { name: r.name, type: c.type, location: c.location, ...store, ...figures };
      });
    } catch (err) {
      return failedReplica(r.name, r.type, client?.location ?? "", err, liveReplica);
    }
  }));
  let problem = live?.problem;
  if (!live) {
    problem = !local.exists
      ? "database does not exist"
      : !local.shadow
      ? "never replicated (no generation in the meta directory)"
      : undefined;
  }
  const localPos = live?.position ??
    (local.shadow ? formatPos(local.shadow) : null);
  return {
    path: cfg.path,
    exists: live?.exists ?? local.exists,
    source: live ? "live" : "files",
    localPosition: localPos,
    pendingBytes: live ? 0 : local.pending,
    lastSyncAt: live?.lastSyncAt ?? null,
    lastError: live?.lastError ?? null,
    ...(!live && local.note ? { note: local.note } : {}),
    healthy: !problem && replicas.every((r) => r.healthy),
    ...(problem ? { problem } : {}),
    replicas,
  };
}

/** What the store's listing says, whoever runs. */
function storeFacts(
  listing: ReplicaGeneration[],
  generation: string | undefined,
  now: number,
): Pick<
  ReplicaStatus,
  "generation" | "generationStart" | "newestSnapshotAt" | "newestSnapshotAgeMs" | "restoreWindow"
> {
  const iso = (ms: number) => new Date(ms).toISOString();
  // The local generation when the replica has it, else the one a restore would use, else (no
  // snapshot anywhere) the newest one it holds.
  const current = listing.find((g) => g.generation === generation) ??
    chooseGeneration(listing, {}) ??
    listing.reduce<ReplicaGeneration | undefined>((best, g) => {
      const b = generationBounds(g)?.updatedAt.getTime() ?? -1;
      return !best || b > (generationBounds(best)?.updatedAt.getTime() ?? -1) ? g : best;
    }, undefined);
  const snap = current?.snapshots.reduce<number | undefined>(
    (m, s) => Math.max(m ?? 0, s.createdAt.getTime()),
    undefined,
  );
  // `restore -timestamp T` needs a snapshot taken by T; any T after the last upload restores the latest.
  let oldest: bigint | undefined;
  let newest: bigint | undefined;
  for (const g of listing) {
    if (g.snapshots.length === 0) continue;
    for (const s of g.snapshots) if (oldest === undefined || timeNs(s) < oldest) oldest = timeNs(s);
    for (const o of [...g.snapshots, ...g.segments]) {
      if (newest === undefined || timeNs(o) > newest) newest = timeNs(o);
    }
  }
  const start = current && generationBounds(current)?.createdAt.getTime();
  return {
    generation: current?.generation ?? null,
    generationStart: start === undefined ? null : iso(start),
    newestSnapshotAt: snap === undefined ? null : iso(snap),
    newestSnapshotAgeMs: snap === undefined ? null : Math.max(0, now - snap),
    restoreWindow: oldest === undefined || newest === undefined
      ? null
      : { oldest: iso(Number(oldest / 1_000_000n)), newest: iso(Number(newest / 1_000_000n)) },
  };
}

function liveFigures(
  r: ReplicaHealth,
): Omit<ReplicaStatus, keyof ReturnType<typeof storeFacts> | "name" | "type" | "location"> {
  return {
    position: r.position,
    lagBytes: r.lagBytes,
    lagMs: r.lagMs,
    lastSyncAt: r.lastSyncAt,
    lastError: r.lastError,
    healthy: r.healthy,
    ...(r.problem ? { problem: r.problem } : {}),
  };
}

/** Position, lag and health from the meta directory and the replica's objects. */
async function fileFigures(
  client: ReplicaClient,
  local: LocalFacts,
  listing: ReplicaGeneration[],
  limitMs: number,
  now: number,
): Promise<ReturnType<typeof liveFigures>> {
  const base = { lastError: null, lagBytes: null, lagMs: null, position: null };
  const shadow = local.shadow;
  const g = shadow && listing.find((x) => x.generation === shadow.generation);
  if (!shadow || !g) {
    const lastSyncAt = null;
    const problem = shadow
      ? `holds nothing of generation ${shadow.generation}`
      : local.exists
      ? "never replicated"
      : "nothing to replicate: the database does not exist";
    return { ...base, lastSyncAt, healthy: false, problem };
  }
  const remote = await remotePos(client, g);
  const lastUpload = Math.max(
    ...[...g.snapshots, ...g.segments].map((o) => o.createdAt.getTime()),
  );
  const unshipped = bytesBetween(remote, shadow, local.shadowSizes);
  const lagBytes = local.pending === null || unshipped === null ? null : local.pending + unshipped;
  const behind = lagBytes !== 0;
  const lagMs = behind ? Math.max(0, now - lastUpload) : 0;
  // A replica holding all the shadow WAL has, beside a WAL that restarted since (checkpointed by
  // the last connection to close, say), may or may not lack something: not "behind".
  const what = lagBytes !== null
    ? `${lagBytes} bytes behind`
    : unshipped === 0
    ? "WAL restarted since replicate ran"
    : "behind";
  const problem = behind && lagMs > limitMs
    ? `${what}; last upload ${formatDuration(Math.floor(lagMs / 1000) * 1000)} ago (limit ${
      formatDuration(limitMs)
    })`
    : undefined;
  return {
    position: remote ? formatPos(remote) : null,
    lagBytes,
    lagMs,
    lastSyncAt: new Date(lastUpload).toISOString(),
    lastError: null,
    healthy: !problem,
    ...(problem ? { problem } : {}),
  };
}

/** Where the replica's WAL of generation `g` ends: the end of its last segment. */
async function remotePos(client: ReplicaClient, g: ReplicaGeneration): Promise<Pos | undefined> {
  const last = g.segments.at(-1);
  if (!last) {
    const s = g.snapshots.at(-1);
    return s && { generation: g.generation, index: s.index, offset: 0 };
  }
  let n = 0;
  const data = (await client.readWalSegment(last)).pipeThrough(
    lz4FrameDecoder(client.describe("wal", last)),
  );
  for await (const chunk of data) n += chunk.length;
  return { generation: g.generation, index: last.index, offset: last.offset + n };
}

/** Shadow bytes from `from` to `to` (same generation); null when a size is unknown. */
function bytesBetween(from: Pos | undefined, to: Pos, sizes: Map<number, number>): number | null {
  if (!from) return null;
  if (comparePos(from, to) >= 0) return 0;
  if (from.index === to.index) return to.offset - from.offset;
  let n = to.offset - from.offset;
  for (let i = from.index; i < to.index; i++) {
    const s = sizes.get(i);
    if (s === undefined) return null;
    n += s;
  }
  return n;
}

/** A replica whose store did not answer: the live figures if any, and the store's error. */
function failedReplica(
  name: string,
  type: string,
  location: string,
  err: unknown,
  live: ReplicaHealth | undefined,
): ReplicaStatus {
  const message = err instanceof Error ? err.message : String(err);
  // With live figures the lag still decides; without, nothing shows the replica is current.
  const problem = live ? live.problem : `cannot read the replica: ${message}`;
  return {
    name,
    type,
    location,
    position: live?.position ?? null,
    lagBytes: live?.lagBytes ?? null,
    lagMs: live?.lagMs ?? null,
    lastSyncAt: live?.lastSyncAt ?? null,
    lastError: live?.lastError ?? { message, at: new Date().toISOString() },
    generation: null,
    generationStart: null,
    newestSnapshotAt: null,
    newestSnapshotAgeMs: null,
    restoreWindow: null,
    storeError: message,
    healthy: live ? live.healthy : false,
    ...(problem ? { problem } : {}),
  };
}

/** Runs `fn`, or fails once `ms` have passed (its requests are left to the process's exit). */
async function withTimeout<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${formatDuration(ms)}`)),
      ms,
    );
  });
  try {
    return await Promise.race([fn(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
