/**
 * The heartbeat (v0.5's `heartbeat-url`, `heartbeat-interval`): a GET to a dead-man's-switch
 * URL (healthchecks.io and the like) at most once per interval, and only while every database
 * and replica is healthy (see `health.ts`), so silence means trouble. Checked every 15 s as
 * v0.5 does, so a recovery is announced soon; failures are logged, never fatal. Nothing runs
 * without a `heartbeat-url`.
 *
 * @module
 */

import { explainPermission } from "../errors.ts";
import type { Logger } from "../log.ts";
import { sleep } from "../os/async.ts";
import type { HealthReport } from "./health.ts";

/** How often the heartbeat looks whether a request is due (v0.5's value). */
export const HEARTBEAT_CHECK_MS = 15_000;
/** A heartbeat request gives up after this long (v0.5's value). */
const HEARTBEAT_TIMEOUT_MS = 30_000;

/** What the heartbeat loop needs. */
export interface HeartbeatOptions {
  url: string;
  intervalMs: number;
  health: () => HealthReport;
  log: Logger;
  signal: AbortSignal;
}

/** Runs the heartbeat until `signal` aborts. */
export async function runHeartbeat(o: HeartbeatOptions): Promise<void> {
  o.log.info("heartbeat enabled", { url: o.url, interval: `${o.intervalMs / 1000}s` });
  let lastAttempt = -Infinity;
  let skipping = false;
  while (!o.signal.aborted) {
    await sleep(HEARTBEAT_CHECK_MS, o.signal);
    if (o.signal.aborted) return;
    if (performance.now() - lastAttempt < o.intervalMs) continue;
    const report = o.health();
    if (!report.healthy) {
      // Said once per unhealthy spell; each skipped check at debug level.
      const log = skipping ? o.log.debug.bind(o.log) : o.log.warn.bind(o.log);
      log("heartbeat withheld: not every replica is healthy", { unhealthy: report.unhealthy });
      skipping = true;
      continue;
    }
    skipping = false;
    // Counted from the attempt, so a failing URL is not retried faster than the interval.
    lastAttempt = performance.now();
    try {
      const res = await fetch(o.url, {
        signal: AbortSignal.any([o.signal, AbortSignal.timeout(HEARTBEAT_TIMEOUT_MS)]),
      });
      await res.body?.cancel();
      if (!res.ok) throw new Error(`unexpected status code: ${res.status}`);
      o.log.debug("heartbeat sent", { url: o.url });
    } catch (err) {
      if (o.signal.aborted) return;
      o.log.error("heartbeat failed", { url: o.url, error: explainPermission(err) });
    }
  }
}
