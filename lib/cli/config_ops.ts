/**
 * Config keys for operating replicate (issue 13): the heartbeat (v0.5's `heartbeat-url` and
 * `heartbeat-interval`), `max-lag-intervals`, the lag at which `/healthz`, the heartbeat
 * and `status` call a replica unhealthy, and v0.5's `shutdown-sync-timeout` and
 * `shutdown-sync-interval`, which bound and pace the final sync at shutdown.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import type { Validator } from "./config_validator.ts";

/** Top-level keys read here. */
export const OPS_KEYS = [
  "heartbeat-url",
  "heartbeat-interval",
  "max-lag-intervals",
  "shutdown-sync-timeout",
  "shutdown-sync-interval",
];

/** v0.5's default heartbeat interval. */
export const DEFAULT_HEARTBEAT_INTERVAL = 5 * 60_000;
/** v0.5's shortest heartbeat interval. */
export const MIN_HEARTBEAT_INTERVAL = 60_000;
/** Default of `max-lag-intervals`. */
export const DEFAULT_MAX_LAG_INTERVALS = 10;
/** How the shutdown's final sync is bounded and paced (milliseconds; see `Server.stop`). */
export interface ShutdownSync {
  /** Give up what is unfinished after this long; 0: one attempt per replica, no limit. */
  timeout: number;
  /** Between attempts of a replica sync that failed. */
  interval: number;
}

/** v0.5's defaults: the final sync is retried for up to 30 s, every 500 ms. */
export const DEFAULT_SHUTDOWN_SYNC: ShutdownSync = { timeout: 30_000, interval: 500 };

/** The operating settings of a config. */
export interface OpsConfig {
  /** Requested while every database is healthy; "" = no heartbeat. */
  heartbeatUrl: string;
  /** Milliseconds between heartbeats. */
  heartbeatInterval: number;
  /** A replica is unhealthy once it lags more than this many of its sync-intervals. */
  maxLagIntervals: number;
  /** `shutdown-sync-timeout` and `shutdown-sync-interval`. */
  shutdownSync: ShutdownSync;
}

/** Reads the operating keys of the top-level mapping `root`. */
export function parseOps(v: Validator, root: Record<string, unknown>): OpsConfig {
  const heartbeatUrl = v.string(root["heartbeat-url"], "heartbeat-url") ?? "";
  if (heartbeatUrl && !/^https?:\/\/[^/]/.test(heartbeatUrl)) {
    throw new ConfigError(v.file, "heartbeat-url", "must be an http:// or https:// URL");
  }
  const heartbeatInterval = v.duration(root["heartbeat-interval"], "heartbeat-interval") ??
    DEFAULT_HEARTBEAT_INTERVAL;
  if (heartbeatInterval < MIN_HEARTBEAT_INTERVAL) {
    throw new ConfigError(v.file, "heartbeat-interval", "must be at least 1m");
  }
  const raw = root["max-lag-intervals"];
  const maxLagIntervals = raw === undefined || raw === null ? DEFAULT_MAX_LAG_INTERVALS : raw;
  if (typeof maxLagIntervals !== "number" || !(maxLagIntervals > 0)) {
    v.fail("max-lag-intervals", "a number above 0", raw);
  }
  const timeout = v.duration(root["shutdown-sync-timeout"], "shutdown-sync-timeout") ??
    DEFAULT_SHUTDOWN_SYNC.timeout;
  if (timeout < 0) throw new ConfigError(v.file, "shutdown-sync-timeout", "must be >= 0");
  const interval = v.duration(root["shutdown-sync-interval"], "shutdown-sync-interval") ??
    DEFAULT_SHUTDOWN_SYNC.interval;
  if (!(interval > 0)) {
    throw new ConfigError(v.file, "shutdown-sync-interval", "must be greater than 0");
  }
  return { heartbeatUrl, heartbeatInterval, maxLagIntervals, shutdownSync: { timeout, interval } };
}
