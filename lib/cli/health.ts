/**
 * The health of a running `replicate`: per database and replica, the position, the lag in
 * bytes and time, the last successful sync and the last error, and whether it is within
 * `max-lag-intervals`. Served as `/healthz` on the `addr` listener (200 or 503, JSON), read
 * by the heartbeat and by `litestream status`. Computed on request from the loops' own
 * bookkeeping (`SyncActivity`): nothing runs while nobody asks.
 *
 * @module
 */

import { formatPos } from "../names.ts";
import type { DB } from "../core/db.ts";
import type { Replica } from "../core/replica.ts";
import type { SyncActivity } from "../core/activity.ts";
import type { Managed } from "./server.ts";
import { formatDuration } from "./duration.ts";

/** One replica's live figures. */
export interface ReplicaHealth {
  name: string;
  type: string;
  location: string;
  /** What the replica holds (`generation/index:offset`), or null when not known yet. */
  position: string | null;
  /** Shadow WAL bytes the replica does not hold yet; null when not comparable (another generation). */
  lagBytes: number | null;
  /** How long the oldest change the replica lacks has waited (0 when caught up). */
  lagMs: number;
  lastSyncAt: string | null;
  lastError: { message: string; at: string } | null;
  healthy: boolean;
  /** Why it is unhealthy. */
  problem?: string;
}

/** One database's live figures. */
export interface DbHealth {
  path: string;
  /** The database file was found and is being replicated. */
  exists: boolean;
  generation: string | null;
  /** What the shadow WAL holds (`generation/index:offset`). */
  position: string | null;
  lastSyncAt: string | null;
  lastError: { message: string; at: string } | null;
  healthy: boolean;
  problem?: string;
  replicas: ReplicaHealth[];
}

/** The whole report, as `/healthz` serves it. */
export interface HealthReport {
  healthy: boolean;
  /** When it was computed (RFC 3339). */
  time: string;
  pid: number;
  /** One line per unhealthy database or replica, naming it and why. */
  unhealthy: string[];
  dbs: DbHealth[];
}

/** Computes the report at `now` (ms since the epoch). */
export function healthReport(
  managed: Managed[],
  maxLagIntervals: number,
  now = Date.now(),
): HealthReport {
  const unhealthy: string[] = [];
  const dbs = managed.map(({ db, replicas, monitorInterval }) => {
    const dbLimit = maxLagIntervals * Math.max(monitorInterval, 1000);
    const standingBy = replicas.length > 0 && replicas.every((r) => r.refused());
    const dbProblem = standingBy
      ? "standing by: another replicator holds every replica"
      : !db.open && monitorInterval > 0 // monitor-interval 0: replication off
      ? "database does not exist"
      : failingFor(db.activity, now) > dbLimit
      ? `sync failing for ${
        formatDuration(failingFor(db.activity, now))
      }: ${db.activity.lastError?.message}`
      : undefined;
    if (dbProblem) unhealthy.push(`${db.path}: ${dbProblem}`);
    const rs = replicas.map((r) => {
      const h = replicaHealth(db, r, maxLagIntervals, now);
      if (h.problem) unhealthy.push(`${db.path}: replica ${r.name}: ${h.problem}`);
      return h;
    });
    const pos = db.pos();
    return {
      path: db.path,
      exists: db.open,
      generation: db.generation ?? null,
      position: pos ? formatPos(pos) : null,
      ...times(db.activity),
      healthy: !dbProblem && rs.every((r) => r.healthy),
      ...(dbProblem ? { problem: dbProblem } : {}),
      replicas: rs,
    };
  });
  return {
    healthy: unhealthy.length === 0,
    time: new Date(now).toISOString(),
    pid: Deno.pid,
    unhealthy,
    dbs,
  };
}

function replicaHealth(db: DB, r: Replica, maxLagIntervals: number, now: number): ReplicaHealth {
  const a = r.activity;
  const lagMs = a.behindSince === undefined || r.caughtUp() ? 0 : Math.max(0, now - a.behindSince);
  const limit = maxLagIntervals * r.settings.syncInterval;
  let problem: string | undefined;
  if (r.refused()) {
    problem = `not written: another replicator holds ${r.client.location}`;
  } else if (lagMs > limit) {
    problem = `${formatDuration(lagMs)} behind (limit ${formatDuration(limit)})`;
    if (a.failingSince !== undefined) problem += `: ${a.lastError?.message}`;
  }
  const pos = r.lastKnownPos();
  return {
    name: r.name,
    type: r.client.type,
    location: r.client.location,
    position: pos ? formatPos(pos) : null,
    lagBytes: lagBytes(db, r),
    lagMs,
    ...times(a),
    healthy: !problem,
    ...(problem ? { problem } : {}),
  };
}

/** Shadow WAL bytes between the replica's position and the database's. */
function lagBytes(db: DB, r: Replica): number | null {
  const d = db.pos();
  const p = r.lastKnownPos();
  if (!d) return 0;
  if (!p || p.generation !== d.generation) return null;
  if (p.index > d.index || (p.index === d.index && p.offset >= d.offset)) return 0;
  if (p.index === d.index) return d.offset - p.offset;
  let n = d.offset - p.offset;
  for (let i = p.index; i < d.index; i++) {
    try {
      n += Deno.statSync(db.shadowPath(d.generation, i)).size;
    } catch {
      return null; // cleaned up meanwhile: not worth a guess
    }
  }
  return n;
}

function failingFor(a: SyncActivity, now: number): number {
  return a.failingSince === undefined ? 0 : now - a.failingSince;
}

function times(a: SyncActivity): Pick<DbHealth, "lastSyncAt" | "lastError"> {
  return {
    lastSyncAt: a.lastSyncAt === undefined ? null : new Date(a.lastSyncAt).toISOString(),
    lastError: a.lastError
      ? { message: a.lastError.message, at: new Date(a.lastError.at).toISOString() }
      : null,
  };
}

/** The `/healthz` answer: 200 when every database and replica is healthy, else 503; JSON either way. */
export function healthzResponse(managed: Managed[], maxLagIntervals: number): Response {
  const report = healthReport(managed, maxLagIntervals);
  return new Response(JSON.stringify(report, null, 2) + "\n", {
    status: report.healthy ? 200 : 503,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}
