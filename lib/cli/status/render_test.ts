/** `status` text (lib/cli/status/render.ts): short ages and sizes, and 80 columns. */

import assert from "node:assert/strict";
import { age, bytes, renderStatus } from "./render.ts";
import type { Status } from "./collect.ts";

Deno.test("render: ages and sizes", () => {
  assert.equal(age(850), "850ms");
  assert.equal(age(12_400), "12s");
  assert.equal(age(184_000), "3m4s");
  assert.equal(age(120_000), "2m");
  assert.equal(age(5 * 3600_000 + 120_000), "5h2m");
  assert.equal(age(3 * 86400_000 + 4 * 3600_000), "3d4h");
  assert.equal(bytes(0), "0 B");
  assert.equal(bytes(4096), "4.0 KiB");
  assert.equal(bytes(13_107_200), "12.5 MiB");
});

Deno.test("render: every line fits 80 columns, long paths keep their end", () => {
  const long = "/very/long/path/" + "x".repeat(100) + "/app.db";
  const status: Status = {
    healthy: false,
    time: "2026-12-05T10:00:00.000Z",
    live: null,
    dbs: [{
      path: long,
      exists: true,
      source: "files",
      localPosition: "0123456789abcdef/00000003:41232",
      pendingBytes: 8192,
      lastSyncAt: null,
      lastError: null,
      healthy: false,
      problem: "p".repeat(200),
      replicas: [{
        name: "s3",
        type: "s3",
        location: "s3://bucket/" + "y".repeat(100),
        position: "0123456789abcdef/00000003:4096",
        lagBytes: 45_000,
        lagMs: 65_000,
        lastSyncAt: "2026-12-05T09:58:55.000Z",
        lastError: { message: "e".repeat(200), at: "2026-12-05T09:59:00.000Z" },
        generation: "0123456789abcdef",
        generationStart: "2026-12-05T01:00:00.000Z",
        newestSnapshotAt: "2026-12-05T01:00:00.000Z",
        newestSnapshotAgeMs: 9 * 3600_000,
        restoreWindow: { oldest: "2026-12-04T01:00:00.000Z", newest: "2026-12-05T09:58:55.000Z" },
        healthy: false,
        problem: "behind",
      }],
    }],
  };
  const text = renderStatus(status);
  for (const line of text.split("\n")) assert.ok(line.length <= 80, line);
  assert.match(text, /app\.db: NOT OK/);
  assert.match(text, /\+ 8\.0 KiB not copied yet/);
  assert.match(text, /lag 43\.9 KiB, 1m5s/);
  assert.match(text, /restore {2}2026-12-04T01:00:00Z \.\. 2026-12-05T09:58:55Z/);
  assert.match(text, /snapshot 2026-12-05T01:00:00Z \(9h0m ago\)/);
});

Deno.test("render: an error that leads with a long URL continues on the next lines", () => {
  const message = "sftp://root@127.0.0.1:42597/tmp/walk/s5/rep/d3/x1.db: login failed: " +
    '127.0.0.1:42597 refused user "root" with the password: check user, password and key-path';
  const status: Status = {
    healthy: false,
    time: "2026-12-05T10:00:00.000Z",
    live: "127.0.0.1:9090",
    dbs: [{
      path: "/data/x1.db",
      exists: true,
      source: "live",
      localPosition: null,
      pendingBytes: 0,
      lastSyncAt: null,
      lastError: null,
      healthy: false,
      replicas: [{
        name: "sftp",
        type: "sftp",
        location: "sftp://root@127.0.0.1:42597/tmp/walk/s5/rep/d3/x1.db",
        position: null,
        lagBytes: null,
        lagMs: null,
        lastSyncAt: null,
        lastError: { message, at: "2026-12-05T09:59:30.000Z" },
        generation: null,
        generationStart: null,
        newestSnapshotAt: null,
        newestSnapshotAgeMs: null,
        restoreWindow: null,
        healthy: false,
        problem: "x".repeat(400),
      }],
    }],
  };
  const lines = renderStatus(status).split("\n");
  for (const line of lines) assert.ok(line.length <= 80, line);
  const error = lines.findIndex((l) => l.startsWith("    error    "));
  const shown = lines.slice(error, error + 3).map((l) => l.slice(13)).join(" ");
  assert.equal(shown, `(30s ago) ${message}`);
  assert.ok(!lines[error + 3].startsWith(" ".repeat(13)), "three lines hold it all");
  // A problem longer than four lines ends its fourth with "…".
  const problem = lines.findIndex((l) => l.startsWith("    problem  "));
  assert.ok(lines[problem + 3].endsWith("…"), lines[problem + 3]);
  assert.ok(!lines[problem + 4].startsWith(" ".repeat(13)), lines[problem + 4]);
});
