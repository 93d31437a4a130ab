/**
 * Prometheus metrics (`addr` in the config), with v0.3.13's metric names
 * where we measure the same thing (spec §9).
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { Managed } from "./server.ts";

/** Request and byte counters a replica client may expose (the S3 client does). */
interface Counted {
  counters?: { requests: Record<string, number>; bytes: Record<string, number> };
}

/** Adds one sample to a metric family (created on first use). */
type AddSample = (
  name: string,
  type: string,
  help: string,
  labels: Record<string, string>,
  value: number,
) => void;

/** Collects samples by family and renders them in the Prometheus text format. */
function families(): { add: AddSample; render: () => string } {
  const all = new Map<string, { type: string; help: string; samples: string[] }>();
  return {
    add(name, type, help, labels, value) {
      const f = all.get(name) ?? { type, help, samples: [] };
      all.set(name, f);
      const l = Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(",");
      f.samples.push(`${name}${l ? `{${l}}` : ""} ${value}`);
    },
    render() {
      const lines: string[] = [];
      for (const [name, f] of all) {
        lines.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`, ...f.samples);
      }
      return lines.join("\n") + "\n";
    },
  };
}

/** What a follower (`restore -f`) exposes: see `lib/follow/mod.ts`'s `FollowStatus`. */
export interface FollowMetrics {
  output: string;
  generation?: string;
  index?: number;
  offset?: number;
  batches: number;
  recoveries: number;
  errors: number;
  /** Ms since epoch of the last poll that found everything applied. */
  caughtUpAt?: number;
  applyLagSeconds?: number;
}

/** Renders a follower's position and lag in the Prometheus text format. */
export function renderFollowMetrics(m: FollowMetrics): string {
  const { add, render } = families();
  const d = { db: m.output };
  const g = { ...d, generation: m.generation ?? "" };
  add(
    "litestream_follow_wal_index",
    "gauge",
    "WAL index the follower has applied",
    g,
    m.index ?? 0,
  );
  add(
    "litestream_follow_wal_offset",
    "gauge",
    "WAL offset the follower has applied",
    g,
    m.offset ?? 0,
  );
  add("litestream_follow_batch_count", "counter", "Batches applied by the follower", d, m.batches);
  add("litestream_follow_recovery_count", "counter", "Recoveries from a snapshot", d, m.recoveries);
  add("litestream_follow_error_count", "counter", "Failed polls of the replica", d, m.errors);
  add(
    "litestream_follow_lag_seconds",
    "gauge",
    "Seconds since the follower last found the replica fully applied",
    d,
    m.caughtUpAt === undefined ? -1 : Math.max(0, (Date.now() - m.caughtUpAt) / 1000),
  );
  add(
    "litestream_follow_apply_lag_seconds",
    "gauge",
    "Seconds from the upload of the newest applied segment to its application, at the last batch",
    d,
    m.applyLagSeconds ?? 0,
  );
  return render();
}

/** Renders the metrics of every managed database in the Prometheus text format. */
export async function renderMetrics(managed: Managed[]): Promise<string> {
  const { add, render } = families();
  for (const { db, replicas } of managed) {
    const d = { db: db.path };
    const size = async (p: string) => (await Deno.stat(p).catch(() => ({ size: 0 }))).size;
    add("litestream_db_size", "gauge", "The current size of the real DB", d, await size(db.path));
    add(
      "litestream_wal_size",
      "gauge",
      "The current size of the real WAL",
      d,
      await size(db.walPath),
    );
    add(
      "litestream_total_wal_bytes",
      "counter",
      "Total number of bytes written to shadow WAL",
      d,
      db.stats.walBytes,
    );
    add(
      "litestream_shadow_wal_index",
      "gauge",
      "The current index of the shadow WAL",
      d,
      db.pos()?.index ?? 0,
    );
    add("litestream_sync_count", "counter", "Number of sync operations", d, db.stats.syncs);
    add("litestream_sync_error_count", "counter", "Number of sync errors", d, db.stats.syncErrors);
    add(
      "litestream_generation_count",
      "counter",
      "Number of generations started by this process",
      d,
      db.stats.generations,
    );
    for (const [mode, n] of Object.entries(db.stats.checkpoints)) {
      add("litestream_checkpoint_count", "counter", "Checkpoint count", { ...d, mode }, n);
    }
    for (const r of replicas) {
      const rl = { ...d, name: r.name };
      const pos = r.pos();
      add(
        "litestream_replica_wal_bytes",
        "counter",
        "The number of WAL bytes written",
        rl,
        r.stats.walBytes,
      );
      add("litestream_replica_wal_index", "gauge", "The current WAL index", rl, pos?.index ?? 0);
      add("litestream_replica_wal_offset", "gauge", "The current WAL offset", rl, pos?.offset ?? 0);
      add(
        "litestream_replica_snapshot_count",
        "counter",
        "Snapshots written",
        rl,
        r.stats.snapshots,
      );
      add(
        "litestream_replica_sync_error_count",
        "counter",
        "Failed replica syncs",
        rl,
        r.stats.syncErrors,
      );
      for (const status of ["ok", "error"] as const) {
        add("litestream_replica_validation_total", "counter", "Replica validations", {
          ...rl,
          status,
        }, r.stats.validations[status]);
      }
      const counters = (r.client as Counted).counters;
      for (const [operation, n] of Object.entries(counters?.requests ?? {})) {
        add("litestream_replica_operation_total", "counter", "Replica operations", {
          replica_type: r.client.type,
          name: r.name,
          operation,
        }, n);
      }
      for (const [operation, n] of Object.entries(counters?.bytes ?? {})) {
        add("litestream_replica_operation_bytes", "counter", "Replica bytes", {
          replica_type: r.client.type,
          name: r.name,
          operation,
        }, n);
      }
    }
  }
  return render();
}

/**
 * Serves `/metrics` on `addr` (`host:port`; an empty host listens on every interface): the
 * metrics of `managed` databases, or what a render function returns (the follower's); and the
 * other `routes` (path → handler) beside it. Logs where, or why it cannot listen (the address
 * taken, say): replication goes on without the endpoint, as in v0.3.13.
 */
export function serveMetrics(
  addr: string,
  managed: Managed[] | (() => Promise<string> | string),
  signal: AbortSignal,
  log: Logger,
  routes: Record<string, () => Response | Promise<Response>> = {},
): void {
  const render = typeof managed === "function" ? managed : () => renderMetrics(managed);
  const i = addr.lastIndexOf(":");
  const hostname = addr.slice(0, i).replace(/^\[|\]$/g, "") || "0.0.0.0";
  const port = Number(addr.slice(i + 1));
  try {
    Deno.serve({ hostname, port, signal, onListen() {} }, async (req) => {
      const path = new URL(req.url).pathname;
      if (Object.hasOwn(routes, path)) return await routes[path]();
      if (path !== "/metrics") {
        return new Response("not found\n", { status: 404 });
      }
      return new Response(await render(), {
        headers: { "content-type": "text/plain; version=0.0.4" },
      });
    });
  } catch (err) {
    // A missing --allow-net stays fatal: it is the command line to fix.
    if (err instanceof Deno.errors.NotCapable) throw err;
    log.error("cannot start metrics server", { addr, error: (err as Error).message });
    return;
  }
  log.info("serving metrics on", {
    url: `http://${hostname === "0.0.0.0" ? "localhost" : hostname}:${port}/metrics`,
  });
}
