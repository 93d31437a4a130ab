/**
 * Config keys for operating replicate (issue 13): the heartbeat (v0.5's `heartbeat-url` and
 * `heartbeat-interval`) and `max-lag-intervals`, the lag at which `/healthz`, the heartbeat
 * and `status` call a replica unhealthy.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import type { Validator } from "./config_validator.ts";

/** Top-level keys read here. */
export const OPS_KEYS = ["heartbeat-url", "heartbeat-interval", "max-lag-intervals"];

/** v0.5's default heartbeat interval. */
export const DEFAULT_HEARTBEAT_INTERVAL = 5 * 60_000;
/** v0.5's shortest heartbeat interval. */
export const MIN_HEARTBEAT_INTERVAL = 60_000;
/** Default of `max-lag-intervals`. */
export const DEFAULT_MAX_LAG_INTERVALS = 10;

/** The operating settings of a config. */
export interface OpsConfig {
  /** Requested while every database is healthy; "" = no heartbeat. */
  heartbeatUrl: string;
  /** Milliseconds between heartbeats. */
  heartbeatInterval: number;
  /** A replica is unhealthy once it lags more than this many of its sync-intervals. */
  maxLagIntervals: number;
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
  return { heartbeatUrl, heartbeatInterval, maxLagIntervals };
}
