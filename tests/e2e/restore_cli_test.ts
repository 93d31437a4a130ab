/**
 * `litestream restore` as a user runs it: `deno run main.ts restore ...` in a subprocess,
 * against file replicas built from a real database (tests/support/replica_builder.ts). Checks
 * exit codes, messages, the restored bytes (SQLite's own checkpoint of the same WAL is the
 * oracle) and that a failed restore leaves nothing in the output directory.
 */

import {
  type CliOptions,
  type CliResult,
  describeResult,
  MAIN_TS,
  runLitestream,
} from "../support/cli.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../support/poll.ts";
import {
  buildTwoGenerations,
  type BuiltObject,
  type BuiltReplica,
  copyReplica,
  equalBytes,
  G1,
  G2,
  listDir,
  segmentPath,
  snapshotPath,
  writeObject,
} from "../support/replica_builder.ts";
import { integrityCheck, maxId } from "../support/sqlite_cli.ts";

/** The object of `gen` at (kind, index, offset). */
function obj(
  r: BuiltReplica,
  gen: string,
  kind: "snapshot" | "wal",
  index: number,
  offset = 0,
): BuiltObject {
  const o = r.objects.find((o) =>
    o.generation === gen && o.kind === kind && o.index === index && o.offset === offset
  );
  if (!o) throw new Error(`no ${kind} ${gen}/${index}/${offset} in the built replica`);
  return o;
}

/** Asserts success and returns the result. */
function ok(r: CliResult): CliResult {
  assert.equal(r.code, 0, describeResult(r));
  assert.doesNotMatch(r.err, /Uncaught|^\s+at /m, describeResult(r));
  return r;
}

/**
 * Asserts a failure with exit 1 and a one-line `error: ...` message matching `pattern`
 * (followed by the command's usage only for a flag Go's flag package refuses, as v0.3.13).
 */
function fails(r: CliResult, pattern: RegExp, opts: { usage?: boolean } = {}): string {
  assert.equal(r.code, 1, describeResult(r));
  assert.doesNotMatch(r.err, /Uncaught|^\s+at /m, describeResult(r));
  const lines = r.err.trimEnd().split("\n");
  assert.match(lines[0], /^error: /, describeResult(r));
  assert.match(lines[0], pattern, describeResult(r));
  if (opts.usage) {
    assert.match(r.err, /Usage: litestream restore/, describeResult(r));
  } else {
    assert.equal(lines.length, 1, `expected a one-line error\n${describeResult(r)}`);
  }
  return lines[0];
}

/** Asserts that `file` holds exactly `want`, and that SQLite finds it sound with `lastId` rows. */
async function assertDb(file: string, want: BuiltObject | Uint8Array, lastId?: number) {
  const got = await Deno.readFile(file);
  const bytes = want instanceof Uint8Array ? want : want.state;
  assert.ok(
    equalBytes(got, bytes),
    `${file}: ${got.length} bytes differ from the expected ${bytes.length}`,
  );
  assert.equal(await integrityCheck(file), "ok");
  const id = lastId ?? (want instanceof Uint8Array ? undefined : want.lastId);
  if (id !== undefined) assert.equal(await maxId(file), id);
}

Deno.test("restore CLI: targets, outputs, options and config mode", async (t) => {
  await using dir = await tempDir("restore-cli-");
  const r = await buildTwoGenerations(join(dir.path, "build"));
  let n = 0;
  /** A fresh, empty output directory per case. */
  const outDir = async () => {
    const d = join(dir.path, "out", String(++n));
    await Deno.mkdir(d, { recursive: true });
    return d;
  };
  const restoreTo = async (flags: string[], options?: CliOptions) => {
    const d = await outDir();
    const out = join(d, "out.db");
    ok(await runLitestream(["restore", ...flags, "-o", out, r.url], options));
    assert.deepEqual(await listDir(d), ["out.db"], "only the output file is left");
    return out;
  };

  await t.step("latest from a file:// URL equals the source database", async () => {
    const out = await restoreTo([]);
    await assertDb(out, r.latest, 8);
    assert.equal((await Deno.stat(out)).mode! & 0o777, 0o600);
  });

  await t.step("-o - writes the database, and only it, to stdout", async () => {
    const res = ok(await runLitestream(["restore", "-o", "-", r.url]));
    assert.ok(equalBytes(res.stdout, r.latest), `stdout has ${res.stdout.length} bytes`);
    assert.match(res.err, /restored/, "logs go to stderr");
  });

  await t.step("-o - at a timestamp inside an index (snapshot + partial WAL)", async () => {
    const res = ok(
      await runLitestream(["restore", "-timestamp", "2024-01-01T00:01:05Z", "-o", "-", r.url]),
    );
    assert.ok(equalBytes(res.stdout, obj(r, G2, "wal", 0, 4152).state));
  });

  await t.step("-o - of a snapshot only", async () => {
    const res = ok(
      await runLitestream(["restore", "-timestamp", "2024-01-01T00:01:25Z", "-o", "-", r.url]),
    );
    assert.ok(equalBytes(res.stdout, obj(r, G2, "snapshot", 1).state));
  });

  await t.step("-timestamp between segments restores the state at that time", async () => {
    await assertDb(
      await restoreTo(["-timestamp", "2024-01-01T00:01:05Z"]),
      obj(r, G2, "wal", 0, 4152),
    );
    await assertDb(
      await restoreTo(["-timestamp", "2024-01-01T00:01:45Z"]),
      obj(r, G2, "wal", 1, 4152),
    );
  });

  await t.step("-timestamp equal to a segment's mtime includes it", async () => {
    await assertDb(
      await restoreTo(["-timestamp", "2024-01-01T00:01:00Z"]),
      obj(r, G2, "wal", 0, 4152),
    );
  });

  await t.step("-timestamp with fractional seconds and a numeric offset", async () => {
    const out = await restoreTo(["-timestamp", "2024-01-01T01:01:09.999+01:00"]);
    await assertDb(out, obj(r, G2, "wal", 0, 4152));
  });

  await t.step(
    "-timestamp after a snapshot and before the next segment: snapshot only",
    async () => {
      await assertDb(
        await restoreTo(["-timestamp", "2024-01-01T00:01:25Z"]),
        obj(r, G2, "snapshot", 1),
      );
    },
  );

  await t.step("-timestamp before the newer generation started picks the older one", async () => {
    await assertDb(
      await restoreTo(["-timestamp", "2024-01-01T00:00:25Z"]),
      obj(r, G1, "wal", 0, 0),
    );
  });

  await t.step("-timestamp before every backup: no matching backups found", async () => {
    const d = await outDir();
    const res = await runLitestream([
      "restore",
      "-timestamp",
      "2023-12-31T00:00:00Z",
      "-o",
      join(d, "out.db"),
      r.url,
    ]);
    fails(res, /no matching backups found/);
    assert.deepEqual(await listDir(d), []);
  });

  await t.step("-index is inclusive and uses the latest generation", async () => {
    await assertDb(await restoreTo(["-index", "0"]), obj(r, G2, "wal", 0, 8272));
    await assertDb(await restoreTo(["-index", "1"]), r.latest, 8);
    // Hex, either case; beyond the last index restores the latest.
    await assertDb(await restoreTo(["-index", "A"]), r.latest, 8);
    await assertDb(await restoreTo(["-index", "7fffffff"]), r.latest, 8);
  });

  await t.step("-generation restores that generation's latest state", async () => {
    await assertDb(await restoreTo(["-generation", G1]), obj(r, G1, "wal", 0, 4152));
    await assertDb(await restoreTo(["-generation", G2, "-index", "0"]), obj(r, G2, "wal", 0, 8272));
  });

  await t.step("-parallelism 1 and 0 give the same bytes", async () => {
    await assertDb(await restoreTo(["-parallelism", "1"]), r.latest, 8);
    // v0.3.13 treats values below 1 as 1.
    await assertDb(await restoreTo(["-parallelism", "0"]), r.latest, 8);
  });

  await t.step("-if-db-not-exists: exit 0 and the existing file is untouched", async () => {
    const d = await outDir();
    const out = join(d, "out.db");
    await Deno.writeTextFile(out, "keep me");
    const before = await Deno.stat(out);
    const res = ok(await runLitestream(["restore", "-if-db-not-exists", "-o", out, r.url]));
    assert.match(res.out + res.err, /database already exists, skipping/);
    assert.equal(await Deno.readTextFile(out), "keep me");
    assert.equal((await Deno.stat(out)).mtime?.getTime(), before.mtime?.getTime());
    assert.deepEqual(await listDir(d), ["out.db"]);
  });

  await t.step("-if-db-not-exists with no output restores normally", async () => {
    await assertDb(await restoreTo(["-if-db-not-exists"]), r.latest, 8);
  });

  await t.step("an existing output is refused and untouched", async () => {
    const d = await outDir();
    const out = join(d, "out.db");
    await Deno.writeTextFile(out, "keep me");
    const res = await runLitestream(["restore", "-o", out, r.url]);
    fails(res, new RegExp(`cannot restore, output path already exists: ${out}$`));
    assert.equal(await Deno.readTextFile(out), "keep me");
    assert.deepEqual(await listDir(d), ["out.db"]);
  });

  await t.step("-if-replica-exists on an empty or missing replica: exit 0, no output", async () => {
    const empty = join(dir.path, "empty-replica");
    await Deno.mkdir(empty, { recursive: true });
    for (const url of [`file://${empty}`, `file://${dir.path}/no-such-replica`]) {
      const d = await outDir();
      const res = ok(
        await runLitestream(["restore", "-if-replica-exists", "-o", join(d, "out.db"), url]),
      );
      assert.match(res.err, /no matching backups found/);
      assert.deepEqual(await listDir(d), []);
    }
  });

  await t.step("-index together with -timestamp is refused", async () => {
    const d = await outDir();
    const res = await runLitestream([
      "restore",
      "-index",
      "1",
      "-timestamp",
      "2024-01-01T00:01:05Z",
      "-o",
      join(d, "out.db"),
      r.url,
    ]);
    fails(res, /cannot specify index & timestamp to restore/);
    assert.deepEqual(await listDir(d), []);
  });

  await t.step("missing parent directories of the output are created (spec §6.5)", async () => {
    const d = await outDir();
    const out = join(d, "a", "b", "out.db");
    const res = await runLitestream(["restore", "-o", out, r.url]);
    assert.equal(res.code, 0, describeResult(res));
    await assertDb(out, r.latest, 8);
    assert.equal((await Deno.stat(join(d, "a"))).mode! & 0o777, 0o700);
  });

  // Config mode: the positional argument is a database path looked up in the config.
  const replicaB = join(dir.path, "replica-b");
  await copyReplica(r.root, replicaB);
  await Deno.remove(join(replicaB, "generations", G2), { recursive: true });

  /** A config naming `db` with replica "main" (the built one) and "old" (G1 only). */
  const writeConfig = async (name: string, db: string) => {
    const file = join(dir.path, `${name}.yml`);
    await Deno.writeTextFile(
      file,
      `dbs:\n  - path: ${db}\n    replicas:\n` +
        `      - name: main\n        url: file://${r.root}\n` +
        `      - name: old\n        path: ${replicaB}\n`,
    );
    return file;
  };
  const configCase = async (name: string) => {
    const d = await outDir();
    const db = join(d, "app.db");
    return { d, db, config: await writeConfig(name, db) };
  };

  await t.step("config mode: -config FILE DB restores to the database path", async () => {
    const { d, db, config } = await configCase("c1");
    ok(await runLitestream(["restore", "-config", config, db]));
    await assertDb(db, r.latest, 8);
    assert.deepEqual(await listDir(d), ["app.db"]);
  });

  await t.step("config mode: --config=FILE (GNU style)", async () => {
    const { db, config } = await configCase("c2");
    ok(await runLitestream(["restore", `--config=${config}`, db]));
    await assertDb(db, r.latest, 8);
  });

  await t.step("config mode: flags after the positional argument", async () => {
    const { d, db, config } = await configCase("c3");
    const out = join(d, "elsewhere.db");
    ok(await runLitestream(["restore", db, "-config", config, "-o", out, "-generation", G1]));
    await assertDb(out, obj(r, G1, "wal", 0, 4152));
    assert.deepEqual(await listDir(d), ["elsewhere.db"]);
  });

  await t.step("config mode: LITESTREAM_CONFIG names the config", async () => {
    const { db, config } = await configCase("c4");
    ok(await runLitestream(["restore", db], { env: { LITESTREAM_CONFIG: config } }));
    await assertDb(db, r.latest, 8);
  });

  await t.step("config mode: a relative database path resolves against the cwd", async () => {
    const d = await outDir();
    const config = await writeConfig("c5", "rel/app.db");
    await Deno.mkdir(join(d, "rel"));
    ok(await runLitestream(["restore", "-config", config, "rel/app.db"], { cwd: d }));
    await assertDb(join(d, "rel", "app.db"), r.latest, 8);
  });

  await t.step("config mode: -replica NAME restores from that replica only", async () => {
    const { db, config } = await configCase("c6");
    ok(await runLitestream(["restore", "-config", config, "-replica", "old", db]));
    await assertDb(db, obj(r, G1, "wal", 0, 4152));
    const again = await configCase("c7");
    ok(await runLitestream(["restore", "-config", again.config, "-replica", "main", again.db]));
    await assertDb(again.db, r.latest, 8);
  });

  await t.step("config mode: an unknown -replica is an error naming it", async () => {
    const { d, db, config } = await configCase("c8");
    const res = await runLitestream(["restore", "-config", config, "-replica", "nope", db]);
    fails(res, /"nope"/);
    assert.deepEqual(await listDir(d), []);
  });

  await t.step("config mode: a database not in the config is an error naming it", async () => {
    const { d, config } = await configCase("c9");
    const other = join(d, "other.db");
    fails(await runLitestream(["restore", "-config", config, other]), new RegExp(other));
    assert.deepEqual(await listDir(d), []);
  });

  await t.step("config mode: -if-db-not-exists leaves the existing database alone", async () => {
    const { db, config } = await configCase("c10");
    await Deno.writeTextFile(db, "keep me");
    ok(await runLitestream(["restore", "-config", config, "-if-db-not-exists", db]));
    assert.equal(await Deno.readTextFile(db), "keep me");
  });
});

Deno.test("restore CLI: bad inputs fail with one line and leave nothing behind", async (t) => {
  await using dir = await tempDir("restore-cli-bad-");
  const r = await buildTwoGenerations(join(dir.path, "build"));
  let n = 0;

  /** A damaged copy of the replica. */
  const damaged = async (damage: (root: string) => Promise<void>) => {
    const root = join(dir.path, "damaged", String(++n));
    await copyReplica(r.root, root);
    await damage(root);
    return root;
  };
  /** Rewrites a file, keeping its mtime (the replica's time order must not change). */
  const rewrite = async (path: string, data: Uint8Array) => {
    const { mtime } = await Deno.stat(path);
    await Deno.writeFile(path, data);
    await Deno.utime(path, mtime!, mtime!);
  };
  /** Runs a restore into a fresh directory; asserts the failure and an empty directory. */
  const restoreFails = async (
    args: string[],
    pattern: RegExp,
    opts: { usage?: boolean; env?: Record<string, string> } = {},
  ) => {
    const d = join(dir.path, "out", String(++n));
    await Deno.mkdir(d, { recursive: true });
    const res = await runLitestream(["restore", "-o", join(d, "out.db"), ...args], opts);
    const line = fails(res, pattern, opts);
    assert.deepEqual(await listDir(d), [], "nothing may be left in the output directory");
    return line;
  };

  const last = (root: string) => segmentPath(root, G2, 1, 8272);

  await t.step("truncated LZ4 segment", async () => {
    const root = await damaged(async (root) => {
      const bytes = await Deno.readFile(last(root));
      await rewrite(last(root), bytes.subarray(0, bytes.length >> 1));
    });
    await restoreFails([`file://${root}`], new RegExp(`${last(root)}: .*truncated`));
  });

  await t.step("bad LZ4 content checksum", async () => {
    const root = await damaged(async (root) => {
      const bytes = await Deno.readFile(last(root));
      bytes[bytes.length - 2] ^= 0x55;
      await rewrite(last(root), bytes);
    });
    await restoreFails([`file://${root}`], new RegExp(`${last(root)}: .*checksum`));
  });

  await t.step("bad LZ4 content checksum with -o -: nothing on stdout", async () => {
    const root = await damaged(async (root) => {
      const bytes = await Deno.readFile(last(root));
      bytes[bytes.length - 1] ^= 0x01;
      await rewrite(last(root), bytes);
    });
    const res = await runLitestream(["restore", "-o", "-", `file://${root}`]);
    fails(res, new RegExp(`${last(root)}: .*checksum`));
    assert.equal(res.stdout.length, 0);
  });

  await t.step("missing middle segment", async () => {
    const root = await damaged((root) => Deno.remove(segmentPath(root, G2, 1, 4152)));
    // The next segment no longer follows: a gap must not be replayed as a shorter history.
    await restoreFails(
      [`file://${root}`],
      new RegExp(`${segmentPath(root, G2, 1, 8272)}: .*4152`),
    );
  });

  await t.step("missing whole WAL index", async () => {
    const root = await damaged(async (root) => {
      await Deno.remove(snapshotPath(root, G2, 1));
      for (const off of [0, 4152, 8272]) await Deno.remove(segmentPath(root, G2, 0, off));
    });
    await restoreFails([`file://${root}`], new RegExp(`missing WAL index: ${G2}/00000000`));
  });

  await t.step("missing initial segment of an index", async () => {
    const root = await damaged((root) => Deno.remove(segmentPath(root, G2, 1, 0)));
    await restoreFails(
      [`file://${root}`],
      new RegExp(`${segmentPath(root, G2, 1, 4152)}: .*initial`),
    );
  });

  await t.step(
    "salt mismatch: a segment of another WAL incarnation renamed into place",
    async () => {
      const target = (root: string) => segmentPath(root, G2, 1, 4152);
      const root = await damaged(async (root) => {
        // Same offset and size, from index 0: right shape, other salts.
        await rewrite(target(root), await Deno.readFile(segmentPath(root, G2, 0, 4152)));
      });
      await restoreFails([`file://${root}`], new RegExp(`${target(root)}: .*salt`));
    },
  );

  await t.step("a snapshot that is not SQLite", async () => {
    const snap = (root: string) => snapshotPath(root, G2, 1);
    const root = await damaged(async (root) => {
      const { mtime } = await Deno.stat(snap(root));
      await writeObject(snap(root), crypto.getRandomValues(new Uint8Array(8192)), mtime!);
    });
    await restoreFails(
      [`file://${root}`],
      new RegExp(`${snap(root)}: not an SQLite database`),
    );
  });

  await t.step("an empty replica directory: no matching backups found", async () => {
    const empty = join(dir.path, "empty");
    await Deno.mkdir(empty);
    await restoreFails([`file://${empty}`], /no matching backups found/);
  });

  await t.step("an unknown generation", async () => {
    await restoreFails(["-generation", "ffffffffffffffff", r.url], /ffffffffffffffff/);
  });

  await t.step("a bad -timestamp", async () => {
    for (const ts of ["yesterday", "2024-01-01", "2024-01-01 00:00:00Z", "2024-13-01T00:00:00Z"]) {
      await restoreFails(["-timestamp", ts, r.url], /invalid -timestamp/);
    }
  });

  await t.step("calendar-invalid -timestamp values are rejected, not rolled over", async () => {
    // Go's time.Parse(RFC3339) rejects these ("day out of range", "hour out of range");
    // JavaScript's Date turns them into 2024-03-01 and 2024-01-02 instead.
    for (const ts of ["2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z", "2023-02-29T00:00:00Z"]) {
      await restoreFails(["-timestamp", ts, r.url], /invalid -timestamp/);
    }
  });

  await t.step("a bad -index", async () => {
    await restoreFails(
      ["-index", "0x0", r.url],
      /invalid value "0x0" for flag -index: invalid hexadecimal format/,
      { usage: true },
    );
    await restoreFails(["-index", "80000000", r.url], /-index/, { usage: true });
  });

  await t.step("an unknown flag (-v is advertised by v0.3.13 but not defined)", async () => {
    await restoreFails(["-v", r.url], /flag provided but not defined: -v/, { usage: true });
  });

  await t.step("a config with a wrong type names the file and the key", async () => {
    const config = join(dir.path, "wrong-type.yml");
    await Deno.writeTextFile(
      config,
      `dbs:\n  - path: ${dir.path}/app.db\n    replicas:\n      - url: ${r.url}\n` +
        `        sync-interval: [1]\n`,
    );
    await restoreFails(
      ["-config", config, `${dir.path}/app.db`],
      new RegExp(`${config}: dbs\\[0\\]\\.replicas\\[0\\]\\.sync-interval`),
    );
  });

  await t.step("a config file that does not exist", async () => {
    const config = join(dir.path, "no-such.yml");
    await restoreFails(
      ["-config", config, `${dir.path}/app.db`],
      new RegExp(`config file not found: ${config}`),
    );
  });

  await t.step("no argument, two arguments", async () => {
    await restoreFails([], /database path or replica URL required/);
    await restoreFails([r.url, r.url], /too many arguments/);
  });

  await t.step("a replica URL together with -config", async () => {
    await restoreFails(
      ["-config", join(dir.path, "x.yml"), r.url],
      /cannot specify a replica URL and the -config flag/,
    );
  });
});

Deno.test("restore CLI: Deno permissions", async (t) => {
  await using dir = await tempDir("restore-cli-perm-");
  const r = await buildTwoGenerations(join(dir.path, "build"));

  await t.step("writing a file without --allow-write names the missing flag", async () => {
    const d = join(dir.path, "out");
    await Deno.mkdir(d);
    const res = await runLitestream(["restore", "-o", join(d, "out.db"), r.url], {
      permissions: ["--allow-read"],
    });
    fails(res, /--allow-write/);
    assert.deepEqual(await listDir(d), []);
  });

  await t.step("-o - needs only read permission", async () => {
    const res = ok(
      await runLitestream(["restore", "-o", "-", r.url], { permissions: ["--allow-read"] }),
    );
    assert.ok(equalBytes(res.stdout, r.latest));
  });

  await t.step("-o - with read permission for the replica directory only", async () => {
    const res = ok(
      await runLitestream(["restore", "-o", "-", r.url], {
        permissions: [`--allow-read=${r.root}`],
      }),
    );
    assert.ok(equalBytes(res.stdout, r.latest));
  });

  await t.step(
    "an S3 replica with read permission for elsewhere only names --allow-read",
    async () => {
      // The S3 backend is loaded on use, and `deno run` needs read access to load it.
      const res = await runLitestream(["restore", "-o", "-", "s3://bucket/db"], {
        permissions: [`--allow-read=${r.root}`, "--allow-env", "--allow-net=127.0.0.1"],
      });
      fails(res, /read access to ".*replicas\/s3\/client\.ts"; run again with --allow-read/);
      assert.equal(res.stdout.length, 0);
    },
  );

  await t.step("no read permission names --allow-read", async () => {
    const res = await runLitestream(["restore", "-o", "-", r.url], { permissions: [] });
    fails(res, /--allow-read/);
    assert.equal(res.stdout.length, 0);
  });

  await t.step("stdout closed by the reader: an error line, not a stack trace", async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MAIN_TS,
        "restore",
        "-o",
        "-",
        r.url,
      ],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Close our end at once, like `litestream restore -o - URL | head -c0`.
    await child.stdout.cancel();
    const [err, { code }] = await Promise.all([new Response(child.stderr).text(), child.status]);
    assert.notEqual(code, 0);
    assert.doesNotMatch(err, /Uncaught|^\s+at /m, err);
  });
});
