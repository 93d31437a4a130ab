/**
 * Directory entries of the config (lib/cli/config_dir.ts): the v0.5 keys and every invalid
 * combination (a ConfigError naming the key), which files an entry covers, each database's
 * meta directory and replica locations (file, s3 prefix, URL), and collisions naming both.
 */

import assert from "node:assert/strict";
import { parseConfig } from "./config.ts";
import { ConfigError } from "../errors.ts";
import { dbConfigUnder, LocationClaims, relativeUnder } from "./config_dir.ts";
import { replicaForSubpath } from "./config_replica.ts";

const FILE = "/etc/test-litestream.yml";

function rejects(text: string, key: string, detail: RegExp): void {
  assert.throws(() => parseConfig(text, FILE), (e: Error) => {
    assert.ok(e instanceof ConfigError, `${e.name}: ${e.message}`);
    assert.equal(e.key, key);
    assert.match(e.message, detail);
    return true;
  });
}

const DIR = `dbs:
  - dir: /data/tenants
    pattern: "*.db"
    recursive: true
    watch: true
    meta-dir: /var/lib/ls
    monitor-interval: 250ms
    replicas:
      - path: /backups/tenants
      - url: s3://bucket/pre/fix?endpoint=http://127.0.0.1:9000
      - type: s3
        name: s3b
        bucket: b2
        path: /keys/
  - path: /data/app.db
    replicas:
      - path: /backups/app
`;

Deno.test("dir entry: keys parsed, path entries kept apart", () => {
  const c = parseConfig(DIR, FILE);
  assert.equal(c.dbs.length, 1);
  assert.equal(c.dbs[0].path, "/data/app.db");
  assert.equal(c.dirs.length, 1);
  const d = c.dirs[0];
  assert.equal(d.key, "dbs[0]");
  assert.equal(d.dir, "/data/tenants");
  assert.equal(d.pattern, "*.db");
  assert.equal(d.recursive, true);
  assert.equal(d.watch, true);
  assert.equal(d.metaDir, "/var/lib/ls");
  assert.equal(d.db.monitorInterval, 250);
  assert.equal(d.db.replicas.length, 3);
});

Deno.test("dir entry: every invalid combination names its key", () => {
  const r = "    replicas: [{path: /b}]\n";
  rejects(
    `dbs:\n  - path: /a.db\n    dir: /d\n    pattern: "*"\n${r}`,
    "dbs[0].dir",
    /both path and dir/,
  );
  rejects(`dbs:\n  - dir: /d\n${r}`, "dbs[0].pattern", /required with dir/);
  rejects(`dbs:\n  - path: /a.db\n    watch: true\n${r}`, "dbs[0].watch", /requires dir/);
  rejects(`dbs:\n  - path: /a.db\n    meta-dir: /m\n${r}`, "dbs[0].meta-dir", /requires dir/);
  rejects(`dbs:\n  - path: /a.db\n    recursive: true\n${r}`, "dbs[0].recursive", /requires dir/);
  rejects(`dbs:\n  - path: /a.db\n    pattern: "*"\n${r}`, "dbs[0].pattern", /requires dir/);
  rejects(
    `dbs:\n  - dir: /d\n    pattern: "*"\n    meta-path: /m\n    meta-dir: /n\n${r}`,
    "dbs[0].meta-path",
    /meta-dir/,
  );
  rejects(`dbs:\n  - dir: /d\n    pattern: "[ab"\n${r}`, "dbs[0].pattern", /malformed/);
  rejects(
    `dbs:\n  - dir: /d\n    pattern: "*"\n    watch: maybe\n${r}`,
    "dbs[0].watch",
    /true or false/,
  );
  rejects(`dbs:\n  - monitor-interval: 1s\n${r}`, "dbs[0].path", /database path required/);
});

Deno.test("relativeUnder: pattern on names, recursion, companions and meta directories", () => {
  const d = parseConfig(DIR, FILE).dirs[0];
  assert.equal(relativeUnder(d, "/data/tenants/a.db"), "a.db");
  assert.equal(relativeUnder(d, "/data/tenants/x/y/b.db"), "x/y/b.db");
  assert.equal(relativeUnder(d, "/data/tenants/a.txt"), undefined);
  assert.equal(relativeUnder(d, "/data/tenants/a.db-wal"), undefined);
  assert.equal(relativeUnder(d, "/data/other/a.db"), undefined);
  assert.equal(relativeUnder(d, "/data/tenants/.a.db-litestream/c.db"), undefined);
  const flat = { ...d, recursive: false };
  assert.equal(relativeUnder(flat, "/data/tenants/x/b.db"), undefined);
  const star = { ...d, matches: () => true };
  assert.equal(relativeUnder(star, "/data/tenants/a.db-journal"), undefined);
  assert.equal(relativeUnder(star, "/data/tenants/a.db-shm"), undefined);
  assert.equal(
    relativeUnder({ ...star, metaDir: "/data/tenants/meta" }, "/data/tenants/meta/q"),
    undefined,
  );
});

Deno.test("dbConfigUnder: each database's meta directory and replica locations", () => {
  const d = parseConfig(DIR, FILE).dirs[0];
  const db = dbConfigUnder(d, "/data/tenants/x/a b.db");
  assert.equal(db.path, "/data/tenants/x/a b.db");
  assert.equal(db.metaPath, "/var/lib/ls/x/.a b.db-litestream");
  assert.equal(db.monitorInterval, 250);
  assert.equal(db.replicas[0].path, "/backups/tenants/x/a b.db");
  assert.equal(db.replicas[1].url, "s3://bucket/pre/fix/x/a%20b.db?endpoint=http://127.0.0.1:9000");
  assert.equal(db.replicas[2].path, "/keys/x/a b.db");
  assert.equal(
    dbConfigUnder({ ...d, metaDir: undefined }, "/data/tenants/a.db").metaPath,
    undefined,
  );
  assert.throws(() => dbConfigUnder(d, "/elsewhere/a.db"), /not a database of dbs\[0\]/);
});

Deno.test("replicaForSubpath: generic over types with a path or a URL", () => {
  const base = {
    name: "r",
    skipVerify: false,
    syncInterval: 1,
    snapshotInterval: 0,
    retention: 0,
    retentionCheckInterval: 0,
    validationInterval: 0,
  };
  assert.equal(
    replicaForSubpath({ ...base, type: "sftp", url: "sftp://u@h:22/srv/" }, "a/b.db").url,
    "sftp://u@h:22/srv/a/b.db",
  );
  assert.equal(replicaForSubpath({ ...base, type: "gcs", bucket: "b" }, "a.db").path, "a.db");
  assert.equal(replicaForSubpath({ ...base, type: "abs", path: "p" }, "a.db").path, "p/a.db");
  assert.equal(
    replicaForSubpath({ ...base, type: "file", url: "file:///r" }, "a.db").url,
    "file:///r/a.db",
  );
  assert.throws(
    () => replicaForSubpath({ ...base, type: "file", path: "/r" }, "../a.db"),
    /outside/,
  );
});

Deno.test("collisions: a shared meta directory or replica location names both databases", () => {
  const d = parseConfig(DIR, FILE).dirs[0];
  const claims = new LocationClaims();
  assert.equal(claims.claim(dbConfigUnder(d, "/data/tenants/a.db")), undefined);
  assert.equal(claims.claim(dbConfigUnder(d, "/data/tenants/a.db")), undefined, "same db again");
  const clash = {
    ...dbConfigUnder(d, "/data/tenants/b.db"),
    metaPath: "/var/lib/ls/.a.db-litestream",
  };
  assert.match(
    claims.claim(clash)!.message,
    /\/data\/tenants\/b\.db and \/data\/tenants\/a\.db would share a meta directory/,
  );
  claims.release("/data/tenants/a.db");
  assert.equal(claims.claim(clash), undefined);
  rejects(
    `dbs:\n  - path: /a.db\n    replicas: [{path: /r}]\n  - path: /b.db\n    replicas: [{path: /r/}]\n`,
    "dbs[1]",
    /\/b\.db and \/a\.db would share a replica location/,
  );
});
