/**
 * The listing commands (`generations`, `snapshots`, `wal`, `databases`) and the top level
 * (`version`, unknown command, usage) as a user runs them: `deno run main.ts ...` in a
 * subprocess, against a file replica with fixed mtimes (tests/support/replica_builder.ts).
 * Tables are compared whole against v0.3.13's layout (Go tabwriter, padding 2).
 */

import { type CliResult, describeResult, runLitestream } from "../support/cli.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../support/poll.ts";
import { buildTwoGenerations, copyReplica, G1, G2 } from "../support/replica_builder.ts";

/** Go's text/tabwriter with minwidth 0, tabwidth 8, padding 2, padchar ' ', flags 0. */
function tabwriter(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.slice(0, -1).forEach((c, i) => widths[i] = Math.max(widths[i] ?? 0, c.length + 2));
  }
  return rows.map((row) =>
    row.map((c, i) => i === row.length - 1 ? c : c.padEnd(widths[i])).join("") + "\n"
  ).join("");
}

function ok(r: CliResult): CliResult {
  assert.equal(r.code, 0, describeResult(r));
  assert.doesNotMatch(r.err, /Uncaught|^\s+at /m, describeResult(r));
  return r;
}

const at = (hms: string) => `2024-01-01T${hms}Z`;

Deno.test("listing CLI against a URL replica", async (t) => {
  await using dir = await tempDir("listing-cli-");
  const r = await buildTwoGenerations(join(dir.path, "build"));
  const size = (gen: string, kind: "snapshot" | "wal", index: number, offset = 0) =>
    String(
      r.objects.find((o) =>
        o.generation === gen && o.kind === kind && o.index === index && o.offset === offset
      )!.size,
    );

  await t.step("generations: columns, bounds and lag (now − end)", async () => {
    const before = Date.now();
    const res = ok(await runLitestream(["generations", r.url]));
    const after = Date.now();
    const lines = res.out.split("\n");
    assert.equal(lines.length, 4, describeResult(res)); // header, 2 rows, final ""
    const lags = lines.slice(1, 3).map((l) => l.split(/\s+/)[2]);
    const ends = [at("00:00:30"), at("00:01:50")];
    lags.forEach((lag, i) => {
      // Over 10 s: whole seconds, as a Go duration (e.g. 25330h38m13s).
      assert.match(lag, /^\d+h\d+m\d+s$/);
      const ms = goDurationMs(lag);
      const end = Date.parse(ends[i]);
      assert.ok(ms >= before - end - 1000 && ms <= after - end, `lag ${lag} for end ${ends[i]}`);
    });
    assert.equal(
      res.out,
      tabwriter([
        ["name", "generation", "lag", "start", "end"],
        ["file", G1, lags[0], at("00:00:10"), at("00:00:30")],
        ["file", G2, lags[1], at("00:00:40"), at("00:01:50")],
      ]),
    );
    assert.ok(res.out.startsWith("name  generation        lag"), "header spacing");
  });

  await t.step("snapshots: columns, decimal index, stored size", async () => {
    const res = ok(await runLitestream(["snapshots", r.url]));
    assert.equal(
      res.out,
      tabwriter([
        ["replica", "generation", "index", "size", "created"],
        ["file", G1, "0", size(G1, "snapshot", 0), at("00:00:10")],
        ["file", G2, "0", size(G2, "snapshot", 0), at("00:00:40")],
        ["file", G2, "1", size(G2, "snapshot", 1), at("00:01:20")],
      ]),
    );
  });

  const walRows = [
    ["file", G1, "0", "0", size(G1, "wal", 0, 0), at("00:00:20")],
    ["file", G1, "0", "4152", size(G1, "wal", 0, 4152), at("00:00:30")],
    ["file", G2, "0", "0", size(G2, "wal", 0, 0), at("00:00:50")],
    ["file", G2, "0", "4152", size(G2, "wal", 0, 4152), at("00:01:00")],
    ["file", G2, "0", "8272", size(G2, "wal", 0, 8272), at("00:01:10")],
    ["file", G2, "1", "0", size(G2, "wal", 1, 0), at("00:01:30")],
    ["file", G2, "1", "4152", size(G2, "wal", 1, 4152), at("00:01:40")],
    ["file", G2, "1", "8272", size(G2, "wal", 1, 8272), at("00:01:50")],
  ];
  const walHeader = ["replica", "generation", "index", "offset", "size", "created"];

  await t.step("wal: columns, decimal index and offset", async () => {
    const res = ok(await runLitestream(["wal", r.url]));
    assert.equal(res.out, tabwriter([walHeader, ...walRows]));
  });

  await t.step("wal -generation lists that generation only", async () => {
    const res = ok(await runLitestream(["wal", "-generation", G1, r.url]));
    assert.equal(res.out, tabwriter([walHeader, ...walRows.slice(0, 2)]));
  });

  await t.step("-json: parseable, keyed by the column names", async () => {
    const gens = JSON.parse(ok(await runLitestream(["generations", "-json", r.url])).out);
    assert.equal(gens.length, 2);
    assert.deepEqual(Object.keys(gens[0]), ["name", "generation", "lag", "start", "end"]);
    assert.deepEqual(
      gens.map((g: Record<string, string>) => [g.name, g.generation, g.start, g.end]),
      [["file", G1, at("00:00:10"), at("00:00:30")], ["file", G2, at("00:00:40"), at("00:01:50")]],
    );

    const snaps = JSON.parse(ok(await runLitestream(["snapshots", "-json", r.url])).out);
    assert.deepEqual(snaps, [
      {
        replica: "file",
        generation: G1,
        index: 0,
        size: +size(G1, "snapshot", 0),
        created: at("00:00:10"),
      },
      {
        replica: "file",
        generation: G2,
        index: 0,
        size: +size(G2, "snapshot", 0),
        created: at("00:00:40"),
      },
      {
        replica: "file",
        generation: G2,
        index: 1,
        size: +size(G2, "snapshot", 1),
        created: at("00:01:20"),
      },
    ]);

    const wal = JSON.parse(ok(await runLitestream(["wal", "-json", r.url])).out);
    assert.deepEqual(
      wal,
      walRows.map(([replica, generation, index, offset, size, created]) => ({
        replica,
        generation,
        index: +index,
        offset: +offset,
        size: +size,
        created,
      })),
    );
  });

  await t.step("an empty or missing replica lists only the header", async () => {
    const empty = join(dir.path, "empty");
    await Deno.mkdir(empty);
    for (const url of [`file://${empty}`, `file://${dir.path}/missing`]) {
      assert.equal(
        ok(await runLitestream(["snapshots", url])).out,
        "replica  generation  index  size  created\n",
      );
      assert.equal(ok(await runLitestream(["generations", "-json", url])).out.trim(), "[]");
    }
  });

  await t.step("usage errors", async () => {
    for (const cmd of ["generations", "snapshots", "wal"]) {
      const none = await runLitestream([cmd]);
      assert.equal(none.code, 1, describeResult(none));
      assert.equal(none.err, "error: database path or replica URL required\n");
      const two = await runLitestream([cmd, r.url, r.url]);
      assert.equal(two.code, 1, describeResult(two));
      assert.equal(two.err, "error: too many arguments\n");
    }
    const bad = await runLitestream(["wal", "-bogus", r.url]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^error: flag provided but not defined: -bogus\n/);
    const help = await runLitestream(["snapshots", "-h"]);
    assert.equal(help.code, 1);
    assert.match(help.out, /^Usage: litestream snapshots/);
  });
});

Deno.test("listing CLI in config mode and databases", async (t) => {
  await using dir = await tempDir("listing-cli-config-");
  const r = await buildTwoGenerations(join(dir.path, "build"));
  const old = join(dir.path, "replica-old");
  await copyReplica(r.root, old);
  await Deno.remove(join(old, "generations", G2), { recursive: true });
  const db = join(dir.path, "data", "app.db");
  const other = join(dir.path, "data", "other.db");
  await Deno.mkdir(join(dir.path, "data"));
  const config = join(dir.path, "litestream.yml");
  await Deno.writeTextFile(
    config,
    `dbs:
  - path: ${db}
    replicas:
      - name: main
        url: file://${r.root}
      - name: old
        path: ${old}
  - path: ${other}
    replicas:
      - url: file://${dir.path}/other-replica
`,
  );

  await t.step("generations: lag from the database's mtime, truncated like v0.3.13", async () => {
    await Deno.writeFile(db, new Uint8Array(0));
    const mtime = new Date(Date.parse(at("00:01:53.250")));
    await Deno.utime(db, mtime, mtime);
    const res = ok(await runLitestream(["generations", "-config", config, db]));
    assert.equal(
      res.out,
      tabwriter([
        ["name", "generation", "lag", "start", "end"],
        ["main", G1, "1m23s", at("00:00:10"), at("00:00:30")],
        ["main", G2, "3.2s", at("00:00:40"), at("00:01:50")],
        ["old", G1, "1m23s", at("00:00:10"), at("00:00:30")],
      ]),
    );
  });

  await t.step("generations: a newer -wal file counts as the last write", async () => {
    await Deno.writeFile(`${db}-wal`, new Uint8Array(0));
    const mtime = new Date(Date.parse(at("00:01:55.500")));
    await Deno.utime(`${db}-wal`, mtime, mtime);
    const res = ok(await runLitestream(["generations", "-config", config, "-replica", "main", db]));
    assert.equal(
      res.out,
      tabwriter([
        ["name", "generation", "lag", "start", "end"],
        ["main", G1, "1m25s", at("00:00:10"), at("00:00:30")],
        ["main", G2, "5.5s", at("00:00:40"), at("00:01:50")],
      ]),
    );
  });

  await t.step("snapshots and wal with -replica", async () => {
    const snaps = ok(await runLitestream(["snapshots", "-config", config, "-replica", "old", db]));
    assert.deepEqual(
      snaps.out.trim().split("\n").map((l) => l.split(/\s+/).slice(0, 3)),
      [["replica", "generation", "index"], ["old", G1, "0"]],
    );
    const wal = ok(await runLitestream(["wal", "-replica", "old", db, "-config", config]));
    assert.deepEqual(
      wal.out.trim().split("\n").map((l) => l.split(/\s+/).slice(0, 4)),
      [["replica", "generation", "index", "offset"], ["old", G1, "0", "0"], [
        "old",
        G1,
        "0",
        "4152",
      ]],
    );
  });

  await t.step("snapshots over every replica of the database", async () => {
    const res = ok(await runLitestream(["snapshots", "-config", config, db]));
    const rows = res.out.trim().split("\n").slice(1).map((l) =>
      l.split(/\s+/).slice(0, 3).join(" ")
    );
    assert.deepEqual(rows.sort(), [`main ${G1} 0`, `main ${G2} 0`, `main ${G2} 1`, `old ${G1} 0`]);
  });

  await t.step("an unknown -replica is an error naming it", async () => {
    const res = await runLitestream(["wal", "-config", config, "-replica", "nope", db]);
    assert.equal(res.code, 1, describeResult(res));
    assert.match(res.err, /^error: .*"nope"/);
  });

  await t.step("a replica that cannot be listed: logged, the rest printed, exit 1", async () => {
    const broken = join(dir.path, "broken.yml");
    const notADir = join(dir.path, "not-a-dir");
    await Deno.writeTextFile(notADir, "x");
    await Deno.writeTextFile(
      broken,
      `dbs:\n  - path: ${db}\n    replicas:\n      - name: main\n        url: file://${r.root}\n` +
        `      - name: bad\n        path: ${notADir}\n`,
    );
    const res = await runLitestream(["snapshots", "-config", broken, db]);
    assert.equal(res.code, 1, describeResult(res));
    assert.equal(res.out.trim().split("\n").length, 4, describeResult(res)); // header + 3 of main
    assert.match(res.err, /replica=bad/);
  });

  await t.step("databases: paths and replica names", async () => {
    const res = ok(await runLitestream(["databases", "-config", config]));
    assert.equal(
      res.out,
      tabwriter([["path", "replicas"], [db, "main,old"], [other, "file"]]),
    );
    const json = JSON.parse(ok(await runLitestream(["databases", "-json", "-config", config])).out);
    assert.deepEqual(json, [{ path: db, replicas: "main,old" }, { path: other, replicas: "file" }]);
    const env = ok(await runLitestream(["databases"], { env: { LITESTREAM_CONFIG: config } }));
    assert.equal(env.out, res.out);
  });

  await t.step("databases: errors", async () => {
    const extra = await runLitestream(["databases", "-config", config, "x"]);
    assert.equal(extra.code, 1);
    assert.match(extra.err, /^error: too many arguments\n/);
    const missing = join(dir.path, "missing.yml");
    const none = await runLitestream(["databases", "-config", missing]);
    assert.equal(none.code, 1);
    assert.equal(none.err, `error: config file not found: ${missing}\n`);
  });
});

Deno.test("top level: version, usage, unknown command", async () => {
  const version = ok(await runLitestream(["version", "extra", "args"]));
  assert.match(version.out, /^v\d+\.\d+\.\d+\S*\n$/);

  for (const args of [[], ["help"], ["-h"], ["--version"]]) {
    const res = await runLitestream(args);
    assert.equal(res.code, 1, describeResult(res));
    assert.match(res.out, /^litestream is a tool for replicating SQLite databases\./);
    assert.match(res.out, /restore +recovers database backup from a replica/);
  }

  const unknown = await runLitestream(["frobnicate"]);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.err, "litestream frobnicate: unknown command\n");
  assert.equal(unknown.out, "");
});

/** Milliseconds of a Go duration such as `25330h38m13s`, `3.2s` or `150ms`. */
function goDurationMs(s: string): number {
  const m = /^(-?)(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?(?:([\d.]+)ms)?$/.exec(s);
  if (!m) throw new Error(`not a Go duration: ${s}`);
  const ms = (+(m[2] ?? 0) * 3600 + +(m[3] ?? 0) * 60 + +(m[4] ?? 0)) * 1000 + +(m[5] ?? 0);
  return m[1] ? -ms : ms;
}
