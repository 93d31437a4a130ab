/**
 * The operating keys (lib/cli/config_ops.ts) through `parseConfig`: v0.5's heartbeat keys with
 * their default and minimum, `max-lag-intervals`, v0.5's `shutdown-sync-timeout` and
 * `shutdown-sync-interval`, the database key `restore-if-db-not-exists`,
 * and one-line errors naming the file and key.
 */

import assert from "node:assert/strict";
import { parseConfig } from "./config.ts";
import { ConfigError } from "../errors.ts";

const FILE = "/etc/ops.yml";
const DB = "dbs:\n  - path: /data/app.db\n    replicas:\n      - path: /backups/app\n";

function rejects(text: string, key: string, detail: RegExp): void {
  assert.throws(() => parseConfig(text, FILE), (e: Error) => {
    assert.ok(e instanceof ConfigError, e.message);
    assert.equal(e.key, key);
    assert.match(e.message, detail);
    return true;
  });
}

Deno.test("ops keys: defaults", () => {
  const warnings: string[] = [];
  const c = parseConfig(DB, FILE, (w) => warnings.push(w));
  assert.equal(c.heartbeatUrl, "");
  assert.equal(c.heartbeatInterval, 5 * 60_000);
  assert.equal(c.maxLagIntervals, 10);
  assert.deepEqual(c.shutdownSync, { timeout: 30_000, interval: 500 });
  assert.equal(c.dbs[0].restoreIfDbNotExists, undefined);
  assert.deepEqual(warnings, []);
});

Deno.test("ops keys: explicit values", () => {
  const warnings: string[] = [];
  const c = parseConfig(
    "heartbeat-url: https://hc-ping.com/abc\nheartbeat-interval: 2m\nmax-lag-intervals: 2.5\n" +
      "shutdown-sync-timeout: 0\nshutdown-sync-interval: 2s\n" + DB +
      "    restore-if-db-not-exists: true\n",
    FILE,
    (w) => warnings.push(w),
  );
  assert.equal(c.heartbeatUrl, "https://hc-ping.com/abc");
  assert.equal(c.heartbeatInterval, 120_000);
  assert.equal(c.maxLagIntervals, 2.5);
  assert.deepEqual(c.shutdownSync, { timeout: 0, interval: 2000 });
  assert.equal(c.dbs[0].restoreIfDbNotExists, true);
  assert.deepEqual(warnings, []);
});

Deno.test("ops keys: errors name the key", () => {
  rejects("heartbeat-interval: 30s\n", "heartbeat-interval", /at least 1m/);
  rejects("heartbeat-url: ftp://x\n", "heartbeat-url", /http:\/\/ or https:\/\//);
  rejects("max-lag-intervals: 0\n", "max-lag-intervals", /above 0/);
  rejects("max-lag-intervals: lots\n", "max-lag-intervals", /above 0/);
  rejects("shutdown-sync-timeout: -1s\n", "shutdown-sync-timeout", />= 0/);
  rejects("shutdown-sync-timeout: soon\n", "shutdown-sync-timeout", /duration/);
  rejects("shutdown-sync-interval: 0s\n", "shutdown-sync-interval", /greater than 0/);
  rejects(
    DB + "    restore-if-db-not-exists: maybe\n",
    "dbs[0].restore-if-db-not-exists",
    /true or false/,
  );
});
