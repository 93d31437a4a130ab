/**
 * The configuration file (spec §7): `parseConfig`, `loadConfig` and `configPath` of
 * lib/cli/config.ts — defaults and explicit values of every key, durations and environment
 * expansion in context, path expansion, warnings for unknown keys, and one-line errors naming
 * the file and key. The same rules seen through the CLI are in tests/e2e/config_test.ts.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { type Config, configPath, DEFAULT_CONFIG_PATH, loadConfig, parseConfig } from "./config.ts";
import { ConfigError } from "../errors.ts";
import { tempDir } from "../../tests/support/poll.ts";

const FILE = "/etc/test-litestream.yml";

/** Parses `text` as the config file FILE, collecting warnings. */
function parse(text: string): { config: Config; warnings: string[] } {
  const warnings: string[] = [];
  const config = parseConfig(text, FILE, (m) => warnings.push(m));
  return { config, warnings };
}

/** Asserts that parsing fails with a ConfigError naming FILE and `key`, matching `detail`. */
function rejects(text: string, key: string, detail: RegExp): void {
  assert.throws(
    () => parseConfig(text, FILE),
    (e: Error) => {
      assert.ok(e instanceof ConfigError, `${e.name}: ${e.message}`);
      assert.equal(e.file, FILE);
      assert.equal(e.key, key);
      assert.ok(e.message.startsWith(`${FILE}: ${key}: `), e.message);
      assert.match(e.message, detail);
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    },
  );
}

/** One db with one file replica plus `extra` lines in the replica. */
function withReplica(extra: string): string {
  return `dbs:\n  - path: /data/db\n    replicas:\n      - path: /backup\n${indent(extra, 8)}`;
}

/** One db with `extra` lines in the db entry. */
function withDb(extra: string): string {
  return `dbs:\n  - path: /data/db\n${indent(extra, 4)}`;
}

function indent(s: string, n: number): string {
  return s.split("\n").filter((l) => l !== "").map((l) => " ".repeat(n) + l + "\n").join("");
}

Deno.test("durations in the config", () => {
  const { config } = parse(
    withDb("monitor-interval: 500ms\ncheckpoint-interval: 1m30s") +
      indent(
        "replicas:\n  - path: /b\n    sync-interval: 1000000000\n    retention: 7d\n" +
          "    snapshot-interval: 24h\n    retention-check-interval: 90s\n" +
          "    validation-interval: 1h30m\n",
        4,
      ),
  );
  const db = config.dbs[0];
  assert.equal(db.monitorInterval, 500);
  assert.equal(db.checkpointInterval, 90_000);
  const r = db.replicas[0];
  assert.equal(r.syncInterval, 1000);
  assert.equal(r.retention, 7 * 86_400_000);
  assert.equal(r.snapshotInterval, 86_400_000);
  assert.equal(r.retentionCheckInterval, 90_000);
  assert.equal(r.validationInterval, 5_400_000);
});

Deno.test("defaults of every key (spec §7.2–7.4)", () => {
  const { config, warnings } = parse(withReplica(""));
  assert.deepEqual(warnings, []);
  assert.equal(config.file, FILE);
  assert.equal(config.addr, "");
  assert.equal(config.exec, "");
  assert.deepEqual(config.logging, { level: "info", type: "text", stderr: false });
  assert.equal(config.dbs.length, 1);
  const db = config.dbs[0];
  assert.equal(db.path, "/data/db");
  assert.equal(db.metaPath, undefined);
  assert.equal(db.monitorInterval, 1000);
  assert.equal(db.checkpointInterval, 60_000);
  assert.equal(db.minCheckpointPageCount, 1000);
  assert.equal(db.maxCheckpointPageCount, 10_000);
  const r = db.replicas[0];
  assert.equal(r.type, "file");
  assert.equal(r.name, "file");
  assert.equal(r.path, "/backup");
  assert.equal(r.syncInterval, 1000);
  assert.equal(r.snapshotInterval, 0);
  assert.equal(r.retention, 24 * 3_600_000);
  assert.equal(r.retentionCheckInterval, 3_600_000);
  assert.equal(r.validationInterval, 0);
  assert.equal(r.skipVerify, false);
  assert.equal(r.accessKeyId, undefined);
  assert.equal(r.secretAccessKey, undefined);
  assert.equal(r.region, undefined);
  assert.equal(r.bucket, undefined);
  assert.equal(r.endpoint, undefined);

  // An empty file and an empty list are valid: no databases.
  assert.deepEqual(parse("").config.dbs, []);
  assert.deepEqual(parse("dbs: []").config.dbs, []);
  assert.deepEqual(parse("# only a comment\n").config.dbs, []);
});

Deno.test("explicit values of every key are read", () => {
  const { config, warnings } = parse(`
addr: "127.0.0.1:9090"
exec: "sleep 10"
access-key-id: GLOBALKEY
secret-access-key: GLOBALSECRET
logging:
  level: DEBUG
  type: json
  stderr: true
dbs:
  - path: /data/db
    meta-path: /data/meta
    monitor-interval: 2s
    checkpoint-interval: 5m
    min-checkpoint-page-count: 10
    max-checkpoint-page-count: 0
    replicas:
      - name: s3a
        type: s3
        bucket: bkt
        path: prefix
        region: eu-west-1
        endpoint: http://localhost:9000
        force-path-style: true
        skip-verify: true
      - name: s3b
        url: s3://other/prefix
        access-key-id: OWNKEY
        secret-access-key: OWNSECRET
`);
  assert.deepEqual(warnings, []);
  assert.equal(config.addr, "127.0.0.1:9090");
  assert.equal(config.exec, "sleep 10");
  assert.deepEqual(config.logging, { level: "debug", type: "json", stderr: true });
  const db = config.dbs[0];
  assert.equal(db.metaPath, "/data/meta");
  assert.equal(db.monitorInterval, 2000);
  assert.equal(db.checkpointInterval, 300_000);
  assert.equal(db.minCheckpointPageCount, 10);
  assert.equal(db.maxCheckpointPageCount, 0);
  const [a, b] = db.replicas;
  assert.equal(a.type, "s3");
  assert.equal(a.bucket, "bkt");
  assert.equal(a.path, "prefix");
  assert.equal(a.region, "eu-west-1");
  assert.equal(a.endpoint, "http://localhost:9000");
  assert.equal(a.forcePathStyle, true);
  assert.equal(a.skipVerify, true);
  // Global keys fill replicas that have none; a replica's own keys win.
  assert.equal(a.accessKeyId, "GLOBALKEY");
  assert.equal(a.secretAccessKey, "GLOBALSECRET");
  assert.equal(b.type, "s3");
  assert.equal(b.url, "s3://other/prefix");
  assert.equal(b.accessKeyId, "OWNKEY");
  assert.equal(b.secretAccessKey, "OWNSECRET");
});

Deno.test("a url scheme overrides type; neither means file; the name defaults to the type", () => {
  const { config } = parse(
    withDb("replicas:\n  - type: s3\n    url: file:///backup\n  - url: s3://bkt/x"),
  );
  assert.deepEqual(config.dbs[0].replicas.map((r) => [r.type, r.name]), [
    ["file", "file"],
    ["s3", "s3"],
  ]);
});

Deno.test("dbs: and databases: are both accepted, not together", () => {
  const dbs = parse("dbs:\n  - path: /a\n  - path: /b\n").config.dbs.map((d) => d.path);
  const databases = parse("databases:\n  - path: /a\n  - path: /b\n").config.dbs.map((d) => d.path);
  assert.deepEqual(dbs, ["/a", "/b"]);
  assert.deepEqual(databases, ["/a", "/b"]);
  rejects("dbs:\n  - path: /a\ndatabases:\n  - path: /b\n", "databases", /either dbs or databases/);
  // Errors name the key the file used.
  rejects("databases:\n  - path: /a\n  - {}\n", "databases[1].path", /database path required/);
});

Deno.test("loadConfig expands the environment unless told not to", async () => {
  await using dir = await tempDir("config-test-");
  const file = join(dir.path, "c.yml");
  const name = `LITESTREAM_TEST_${crypto.randomUUID().slice(0, 8).toUpperCase()}`;
  Deno.env.set(name, "/from/env");
  try {
    await Deno.writeTextFile(
      file,
      `dbs:\n  - path: $${name}/db\n    replicas:\n      - path: \${${name}}/backup$$\n` +
        `        name: a\${}b\n      - url: file:///x/\${UNSET_${name}}y\n`,
    );
    const expanded = await loadConfig(file);
    assert.equal(expanded.dbs[0].path, "/from/env/db");
    assert.equal(expanded.dbs[0].replicas[0].path, "/from/env/backup");
    assert.equal(expanded.dbs[0].replicas[0].name, "ab");
    assert.equal(expanded.dbs[0].replicas[1].url, "file:///x/y");

    const literal = await loadConfig(file, { expandEnv: false });
    assert.equal(literal.dbs[0].path, join(Deno.cwd(), `$${name}/db`));
    assert.equal(literal.dbs[0].replicas[0].path, `\${${name}}/backup$$`);
  } finally {
    Deno.env.delete(name);
  }
});

Deno.test("~ and relative paths become absolute", () => {
  const home = Deno.env.get("HOME")!;
  const { config } = parse(
    "dbs:\n  - path: ~/foo.db\n  - path: rel/x.db\n  - path: /a/../b/./c.db\n",
  );
  assert.deepEqual(config.dbs.map((d) => d.path), [
    join(home, "foo.db"),
    join(Deno.cwd(), "rel/x.db"),
    "/b/c.db",
  ]);
  // The config path itself: -config, else LITESTREAM_CONFIG, else the default.
  const saved = Deno.env.get("LITESTREAM_CONFIG");
  try {
    Deno.env.delete("LITESTREAM_CONFIG");
    assert.equal(configPath(undefined), DEFAULT_CONFIG_PATH);
    assert.equal(configPath("~/l.yml"), join(home, "l.yml"));
    assert.equal(configPath("conf/l.yml"), join(Deno.cwd(), "conf/l.yml"));
    Deno.env.set("LITESTREAM_CONFIG", "~/env.yml");
    assert.equal(configPath(undefined), join(home, "env.yml"));
    assert.equal(configPath("/flag.yml"), "/flag.yml");
  } finally {
    if (saved === undefined) Deno.env.delete("LITESTREAM_CONFIG");
    else Deno.env.set("LITESTREAM_CONFIG", saved);
  }
});

Deno.test("unknown keys are warned about with their full key path", () => {
  const { config, warnings } = parse(`
region: us-east-1
logging:
  colour: red
dbs:
  - path: /a
    sync-interval: 1s
    replicas:
      - path: /b
        bogus: 1
      - path: /c
        name: c
        nested:
          deep: 1
`);
  assert.equal(config.dbs[0].replicas.length, 2);
  const has = (key: string) =>
    assert.ok(
      warnings.some((w) => w.includes(FILE) && w.includes(`unknown key ${key} `)),
      `no warning for ${key} in ${JSON.stringify(warnings)}`,
    );
  has("region");
  has("logging.colour");
  has("dbs[0].sync-interval");
  has("dbs[0].replicas[0].bogus");
  has("dbs[0].replicas[1].nested");
  assert.equal(warnings.length, 5, JSON.stringify(warnings));
});

Deno.test("YAML 1.1 booleans (yes/no/on/off) are booleans, as in v0.3.13's yaml.v2", () => {
  const { config } = parse(
    "logging:\n  stderr: on\n" +
      withReplica("skip-verify: yes\ntype: s3\nbucket: b").replace("path: /backup", "path: p"),
  );
  assert.equal(config.logging.stderr, true);
  assert.equal(config.dbs[0].replicas[0].skipVerify, true);
  const off = parse("logging:\n  stderr: off\n" + withReplica("skip-verify: no")).config;
  assert.equal(off.logging.stderr, false);
  assert.equal(off.dbs[0].replicas[0].skipVerify, false);
});

Deno.test("errors name the file and the key", () => {
  // Wrong types.
  rejects(withReplica("sync-interval: [1]"), "dbs[0].replicas[0].sync-interval", /duration/);
  rejects(withReplica("retention: forever"), "dbs[0].replicas[0].retention", /duration/);
  rejects(withDb("monitor-interval: {a: 1}"), "dbs[0].monitor-interval", /duration/);
  rejects(withDb("min-checkpoint-page-count: many"), "dbs[0].min-checkpoint-page-count", /integer/);
  rejects(withDb("max-checkpoint-page-count: 1.5"), "dbs[0].max-checkpoint-page-count", /integer/);
  rejects(withReplica("skip-verify: maybe"), "dbs[0].replicas[0].skip-verify", /true or false/);
  rejects(withDb("replicas: {}"), "dbs[0].replicas", /list/);
  rejects("dbs: /data/db\n", "dbs", /list/);
  rejects("dbs:\n  - /data/db\n", "dbs[0]", /mapping/);
  rejects("dbs:\n  - path: [a]\n", "dbs[0].path", /string/);
  rejects("logging: loud\n", "logging", /mapping/);
  rejects("logging:\n  stderr: yes please\n", "logging.stderr", /true or false/);
  rejects("- a\n- b\n", "(top level)", /mapping/);
  // Missing database path.
  rejects("dbs:\n  - replicas: []\n", "dbs[0].path", /database path required/);
  rejects('dbs:\n  - path: ""\n', "dbs[0].path", /database path required/);
  // File replica with url and path, or neither.
  rejects(
    withDb("replicas:\n  - url: file:///b\n    path: /b"),
    "dbs[0].replicas[0].path",
    /cannot specify url & path for file replica/,
  );
  rejects(
    withDb("replicas:\n  - name: x"),
    "dbs[0].replicas[0].path",
    /file replica path required/,
  );
  // Duplicate names, including the default name (the type).
  rejects(
    withDb("replicas:\n  - path: /b\n  - path: /c"),
    "dbs[0].replicas[1].name",
    /duplicate replica name: "file"/,
  );
  rejects(
    withDb("replicas:\n  - path: /b\n    name: x\n  - url: file:///c\n    name: x"),
    "dbs[0].replicas[1].name",
    /duplicate replica name: "x"/,
  );
  // Unknown replica types, by type or by URL scheme.
  rejects(
    withDb("replicas:\n  - type: ftp\n    path: /b"),
    "dbs[0].replicas[0].type",
    /unknown replica type/,
  );
  rejects(
    withDb("replicas:\n  - url: ftp://host/b"),
    "dbs[0].replicas[0].url",
    /unknown replica type/,
  );
  // Intervals that must be positive.
  rejects(withReplica("sync-interval: 0"), "dbs[0].replicas[0].sync-interval", /greater than zero/);
  rejects(
    withReplica("sync-interval: 0s"),
    "dbs[0].replicas[0].sync-interval",
    /greater than zero/,
  );
  rejects(
    withDb("min-checkpoint-page-count: 0"),
    "dbs[0].min-checkpoint-page-count",
    /minimum checkpoint page count required/,
  );
  // Other global checks.
  rejects("addr: localhost\n", "addr", /must specify port/);
  rejects("logging:\n  type: JSON\n", "logging.type", /text or json/);
  rejects("dbs:\n  - path: /a\n  - path: /a\n", "dbs[1].path", /duplicate database path/);
});

Deno.test("invalid YAML and missing files are one-line errors naming the file", async () => {
  assert.throws(
    () => parseConfig("dbs:\n  - path: [unclosed\n", FILE),
    (e: Error) => e.message.startsWith(`${FILE}: invalid YAML`) && !e.message.includes("\n"),
  );
  await using dir = await tempDir("config-test-");
  const missing = join(dir.path, "missing.yml");
  await assert.rejects(loadConfig(missing), { message: `config file not found: ${missing}` });
  await assert.rejects(loadConfig(dir.path), /config file is a directory/);
});

Deno.test("sftp replicas: URL or keys as v0.3.13 reads them; errors name the key", () => {
  const { config } = parse(
    withDb(
      "replicas:\n  - url: sftp://bob:pw@example.com:2222/backups\n    key-path: /k\n" +
        "  - type: sftp\n    name: b\n    host: example.com\n    user: alice\n" +
        "    password: x\n    path: db\n    host-key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJM4FClw9rpVozEb/UBbARkwKMZry5OpI5U4iDwoDH8n",
    ),
  );
  const [u, k] = config.dbs[0].replicas;
  assert.deepEqual([u.type, u.name, u.url, u.keyPath], [
    "sftp",
    "sftp",
    "sftp://bob:pw@example.com:2222/backups",
    "/k",
  ]);
  assert.deepEqual([k.type, k.host, k.user, k.password, k.path, k.hostKey], [
    "sftp",
    "example.com",
    "alice",
    "x",
    "db",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJM4FClw9rpVozEb/UBbARkwKMZry5OpI5U4iDwoDH8n",
  ]);
  const r = "dbs[0].replicas[0]";
  rejects(withDb("replicas:\n  - url: sftp://u@h/p\n    path: /x"), `${r}.path`, /url & path/);
  rejects(withDb("replicas:\n  - url: sftp://u@h/p\n    host: h2"), `${r}.host`, /url & host/);
  rejects(withDb("replicas:\n  - type: sftp\n    user: u"), `${r}.host`, /host required/);
  rejects(withDb("replicas:\n  - url: sftp://h/p"), `${r}.user`, /user required/);
  rejects(withDb("replicas:\n  - url: sftp://u@h:0/p"), `${r}.url`, /invalid port/);
});

Deno.test("gcs replicas: url, or bucket and path, by v0.3.13's rules", () => {
  const one = (lines: string) => parse(withDb(`replicas:\n  - ${lines}`)).config.dbs[0].replicas[0];
  const byUrl = one("url: gcs://my-bucket/backups/db");
  assert.deepEqual([byUrl.type, byUrl.name, byUrl.url], [
    "gcs",
    "gcs",
    "gcs://my-bucket/backups/db",
  ]);
  const byKeys = one("type: gcs\n    bucket: my-bucket\n    path: backups/db");
  assert.deepEqual([byKeys.type, byKeys.bucket, byKeys.path], ["gcs", "my-bucket", "backups/db"]);
  rejects(
    withDb("replicas:\n  - url: gcs://b/p\n    path: x"),
    "dbs[0].replicas[0].path",
    /cannot specify url & path for gcs replica/,
  );
  rejects(
    withDb("replicas:\n  - url: gcs://b/p\n    bucket: x"),
    "dbs[0].replicas[0].bucket",
    /cannot specify url & bucket for gcs replica/,
  );
  rejects(
    withDb("replicas:\n  - type: gcs\n    path: x"),
    "dbs[0].replicas[0].bucket",
    /bucket required for gcs replica/,
  );
});
