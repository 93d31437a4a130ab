/**
 * Replication interoperability with the real Litestream v0.3.13, both ways:
 *
 * 1. A file replica written by our `replicate` (several WAL indexes, several snapshots) restores
 *    with v0.3.13 to exactly the bytes our own `restore` produces: latest, point-in-time at and
 *    between object mtimes (v0.3.13 compares nanoseconds), and `-index`.
 * 2. Handover: one database replicated by v0.3.13, then by us, then by v0.3.13 again (same
 *    config file, same meta directory), with an application writing throughout. The final
 *    replica restores, with both tools, to every committed row. Whether each handover continued
 *    the generation (spec §10.12: only when the meta directory is exact) is printed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tempDir, waitFor } from "../support/poll.ts";
import { listReplicaObjects, type ReplicaObject, rfc3339Nano } from "../support/fixtures.ts";
import {
  isV0313ShutdownError,
  restoreWithV0313,
  startV0313Replicate,
  stopV0313Replicate,
  v0313Restore,
} from "../support/litestream_v0313.ts";
import { hex8 } from "../../lib/names.ts";
import { createWriterTable, integrityCheck, sqlite, Writer } from "../support/sqlite_cli.ts";
import {
  describeResult,
  newGenerations,
  runLitestream,
  startReplicate,
} from "../support/replicate_process.ts";

Deno.test("replicas written by our replicate restore with v0.3.13 to the same bytes", async (t) => {
  await using dir = await tempDir("replicate-interop-");
  const dbPath = `${dir.path}/app.db`;
  const replicaPath = `${dir.path}/replica`;
  const replicaUrl = `file://${replicaPath}`;
  const configPath = `${dir.path}/litestream.yml`;
  await Deno.writeTextFile(configPath, config(dbPath, replicaPath));
  await createWriterTable(dbPath);

  const logPath = `${dir.path}/ours.log`;
  const writer = await Writer.start(dbPath);
  let lastId = 0;
  try {
    await runOurs(configPath, logPath, replicaPath, { snapshots: 1, indexes: 3 });
    // A clean restart while the application keeps writing, down for longer than the
    // snapshot-interval: the second run must continue the WAL exactly where the first stopped.
    const target = writer.lastId + 100;
    await waitFor("100 more commits while replicate is down", () => writer.lastId >= target);
    await runOurs(configPath, logPath, replicaPath, { snapshots: 2, indexes: 3 }, async () => {
      lastId = await writer.stop();
    });
  } catch (err) {
    await writer.stop().catch(() => {});
    throw err;
  }
  const objects = await listReplicaObjects(replicaPath);
  const generations = new Set(objects.map((o) => o.generation));
  assert.equal(generations.size, 1, `one generation expected, got ${[...generations]}`);
  console.log(
    `our replica: ${objects.filter((o) => o.kind === "snapshot").length} snapshots, ` +
      `${objects.filter((o) => o.kind === "wal").length} segments in ` +
      `${new Set(objects.map((o) => o.index)).size} indexes; writer lastId=${lastId}`,
  );

  await t.step("every index's segments chain from offset 0 without gaps or overlaps", async () => {
    assert.deepEqual(await walContinuityProblems(objects), []);
  });

  let n = 0;
  for (const c of restoreCases(objects)) {
    await t.step(c.name, async () => {
      const base = `${dir.path}/cases/${String(++n).padStart(2, "0")}`;
      await Deno.mkdir(`${base}/v0313`, { recursive: true });
      const ref = await v0313Restore(["-o", `${base}/v0313/out.db`, ...c.flags, replicaUrl]);
      if (ref.code !== 0 && /no snapshots available/.test(ref.stderr)) {
        // Before the first snapshot (our first segments precede it): nothing to restore.
        const res = await runLitestream([
          "restore",
          "-o",
          `${base}/ours.db`,
          ...c.flags,
          replicaUrl,
        ]);
        assert.notEqual(
          res.code,
          0,
          "v0.3.13 has no snapshot for this point; ours should fail too",
        );
        return;
      }
      assert.equal(ref.code, 0, `v0.3.13 restore ${c.flags.join(" ")} failed: ${ref.stderr}`);
      const theirs = `${base}/v0313/out.db`;
      assert.equal(await integrityCheck(theirs), "ok", "v0.3.13's restore is corrupt");
      const ours = await restoreWithOurs(`${base}/ours`, c.flags, replicaUrl);
      const diff = describeMismatch(await Deno.readFile(ours), await Deno.readFile(theirs));
      assert.equal(diff, undefined, `restore ${c.flags.join(" ")}: ours differs from v0.3.13's`);
      assert.equal(await integrityCheck(ours), "ok");
      // Whatever the point in time, the rows are a prefix 1..k of what the writer committed.
      const rows = await assertPrefix(ours);
      if (c.flags.length === 0) assert.equal(rows, lastId, "latest holds every committed row");
    });
  }
});

Deno.test("handover v0.3.13 → ours → v0.3.13 on one database keeps every row", async () => {
  await using dir = await tempDir("replicate-handover-");
  const dbPath = `${dir.path}/app.db`;
  const replicaPath = `${dir.path}/replica`;
  const replicaUrl = `file://${replicaPath}`;
  const configPath = `${dir.path}/litestream.yml`;
  await Deno.writeTextFile(configPath, config(dbPath, replicaPath));
  await createWriterTable(dbPath);

  const writer = await Writer.start(dbPath);
  const phases: Phase[] = [];
  let lastId: number;
  try {
    // Each phase runs until it has added a snapshot or two and several WAL indexes of its own.
    phases.push(
      await runPhase("v0.3.13 (1)", dir.path, replicaPath, writer, async (logPath) => {
        const p = await startV0313Replicate(configPath, { logPath });
        return {
          log: p.log,
          exited: () => p.exited,
          stop: async () => void await stopV0313Replicate(p),
        };
      }),
    );
    phases.push(
      await runPhase("ours", dir.path, replicaPath, writer, (logPath) => {
        const p = startReplicate(["-config", configPath], { logPath });
        return Promise.resolve({
          log: p.log,
          exited: () => p.exited,
          async stop() {
            const { status } = await p.stop();
            assert.equal(status.code, 0, `our replicate's exit; log:\n${await p.log()}`);
          },
        });
      }),
    );
    phases.push(
      await runPhase("v0.3.13 (2)", dir.path, replicaPath, writer, async (logPath) => {
        const p = await startV0313Replicate(configPath, { logPath });
        return {
          log: p.log,
          exited: () => p.exited,
          stop: async () => void await stopV0313Replicate(p),
        };
      }, {
        // Stop writing while v0.3.13 still runs, so its final sync ships the last commit.
        beforeStop: async () => {
          lastId = await writer.stop();
        },
      }),
    );
  } catch (err) {
    await writer.stop().catch(() => {});
    throw err;
  }

  const report = phases.map((p, i) => {
    const prev = phases[i - 1];
    const how = !prev
      ? `started generation ${p.generation}`
      : p.generation === prev.generation
      ? `continued generation ${p.generation}`
      : `NEW generation ${p.generation} (${
        p.newGenerations.map((g) => g.reason).join("; ") || "no reason logged"
      }${p.cleared.length ? `; init: ${p.cleared.join("; ")}` : ""})`;
    return `  ${p.name}: ${how}; +${p.snapshots} snapshots, +${p.segments} segments ` +
      `(indexes ${p.indexes}); rows ≥ ${p.lastIdAtStop} restorable after stop` +
      (p.errors.length
        ? `; ${p.errors.length} error lines: ${p.errors.slice(0, 3).join(" | ")}`
        : "");
  });
  console.log(`handover phases:\n${report.join("\n")}`);

  // The latest state, with both tools: every committed row, intact, and the same bytes.
  const theirs = await restoreWithV0313(`${dir.path}/final/v0313`, [], replicaUrl);
  const ours = await restoreWithOurs(`${dir.path}/final/ours`, [], replicaUrl);
  assert.equal(await integrityCheck(ours), "ok");
  assert.equal(await assertPrefix(theirs), lastId!, "v0.3.13's restore holds every row");
  assert.equal(await assertPrefix(ours), lastId!, "our restore holds every row");
  assert.equal(
    describeMismatch(await Deno.readFile(ours), await Deno.readFile(theirs)),
    undefined,
    "final restores differ",
  );
  // Each generation's own latest state restores (both tools, same bytes) to a row prefix.
  const generations = [...new Set(phases.map((p) => p.generation))];
  for (const g of generations) {
    const flags = ["-generation", g];
    const a = await restoreWithV0313(`${dir.path}/gen-${g}/v0313`, flags, replicaUrl);
    const b = await restoreWithOurs(`${dir.path}/gen-${g}/ours`, flags, replicaUrl);
    assert.equal(describeMismatch(await Deno.readFile(b), await Deno.readFile(a)), undefined);
    await assertPrefix(b);
  }
  // Every phase's stop left a replica holding at least what was committed before the stop.
  for (const p of phases) assert.ok(p.rowsAfterStop >= p.lastIdAtStop, JSON.stringify(p));
  for (const p of phases) assert.deepEqual(p.errors, [], `${p.name}: error lines in its log`);
});

/**
 * Runs our replicate until it has added `need` snapshots and objects in `need` WAL indexes to
 * the replica, runs `beforeStop`, then stops it with SIGTERM (exit 0 required).
 */
async function runOurs(
  configPath: string,
  logPath: string,
  replicaPath: string,
  need: { snapshots: number; indexes: number },
  beforeStop?: () => Promise<void>,
): Promise<void> {
  const before = new Set((await listReplicaObjects(replicaPath)).map((o) => o.path));
  const proc = startReplicate(["-config", configPath], { logPath });
  try {
    await waitFor(
      `our replicate to add ≥ ${need.snapshots} snapshots and segments in ≥ ${need.indexes} indexes`,
      async () => {
        if (proc.exited) throw new Error(`replicate exited early:\n${await proc.log()}`);
        const objs = (await listReplicaObjects(replicaPath)).filter((o) => !before.has(o.path));
        const snapshots = objs.filter((o) => o.kind === "snapshot").length;
        const indexes = new Set(objs.filter((o) => o.kind === "wal").map((o) => o.index)).size;
        return snapshots >= need.snapshots && indexes >= need.indexes;
      },
      20_000,
      100,
    );
    await beforeStop?.();
  } finally {
    const { status } = await proc.stop();
    assert.equal(status.code, 0, `our replicate's exit; log:\n${await proc.log()}`);
  }
}

/**
 * Structural check of a replica's WAL (per generation): from its lowest snapshot index to its
 * highest index every index has segments, each index starts at offset 0, and each segment starts
 * exactly where the previous one's decompressed bytes end (decompressed with the `lz4` CLI, so
 * independently of our code). Returns the problems found.
 */
export async function walContinuityProblems(objects: ReplicaObject[]): Promise<string[]> {
  const problems: string[] = [];
  for (const g of new Set(objects.map((o) => o.generation))) {
    const mine = objects.filter((o) => o.generation === g);
    const snapshots = mine.filter((o) => o.kind === "snapshot").map((o) => o.index);
    if (snapshots.length === 0) continue;
    const from = Math.min(...snapshots);
    const to = Math.max(...mine.map((o) => o.index));
    for (let index = from; index <= to; index++) {
      const segs = mine.filter((o) => o.kind === "wal" && o.index === index)
        .sort((a, b) => a.offset - b.offset);
      if (segs.length === 0) {
        problems.push(`${g}/${hex8(index)}: no segments (snapshots at ${snapshots.map(hex8)})`);
        continue;
      }
      let expected = 0;
      for (const seg of segs) {
        if (seg.offset !== expected) {
          problems.push(
            `${g}/${hex8(index)}: segment at offset ${seg.offset} but the previous ends at ` +
              `${expected} (${seg.offset < expected ? "overlap" : "gap"})`,
          );
        }
        expected = seg.offset + await decompressedSize(seg.path);
      }
    }
  }
  return problems;
}

async function decompressedSize(path: string): Promise<number> {
  const out = await new Deno.Command("lz4", {
    args: ["-dc", path],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) throw new Error(`lz4 -dc ${path}: ${new TextDecoder().decode(out.stderr)}`);
  return out.stdout.length;
}

/** A replicate process of either tool, as a phase sees it. */
interface Tool {
  log(): Promise<string>;
  exited(): boolean;
  stop(): Promise<void>;
}

/** What one phase of the handover did. */
interface Phase {
  name: string;
  /** Generation its objects went to. */
  generation: string;
  newGenerations: { generation: string; reason: string }[];
  /** Reasons logged for clearing the generation at startup. */
  cleared: string[];
  snapshots: number;
  segments: number;
  indexes: string;
  lastIdAtStop: number;
  rowsAfterStop: number;
  errors: string[];
}

/**
 * Runs one tool on the database while the writer writes, until the tool has uploaded a snapshot
 * and segments in ≥ 3 WAL indexes, all in one generation; stops it with SIGTERM and checks with
 * v0.3.13 that the replica restores to at least the rows committed before the stop.
 */
async function runPhase(
  name: string,
  dir: string,
  replicaPath: string,
  writer: Writer,
  start: (logPath: string) => Promise<Tool>,
  options: { beforeStop?: () => Promise<void> } = {},
): Promise<Phase> {
  const before = new Set((await listReplicaObjects(replicaPath)).map((o) => o.path));
  const logPath = `${dir}/${name.replace(/\W+/g, "_")}.log`;
  const tool = await start(logPath);
  const fresh = async () =>
    (await listReplicaObjects(replicaPath)).filter((o) => !before.has(o.path));
  let lastIdAtStop: number;
  try {
    await waitFor(
      `${name} to upload a snapshot and segments in ≥ 3 WAL indexes`,
      async () => {
        if (tool.exited()) throw new Error(`${name} exited early:\n${await tool.log()}`);
        const objs = await fresh();
        return new Set(objs.filter((o) => o.kind === "wal").map((o) => o.index)).size >= 3 &&
          objs.some((o) => o.kind === "snapshot") &&
          new Set(objs.map((o) => o.generation)).size === 1;
      },
      20_000,
      100,
    );
    await options.beforeStop?.();
    lastIdAtStop = writer.lastId;
  } finally {
    await tool.stop();
  }
  const objs = await fresh();
  const log = await tool.log();
  const gens = [...new Set(objs.map((o) => o.generation))];
  assert.equal(gens.length, 1, `${name} wrote to one generation, not ${gens}`);
  const check = await restoreWithV0313(
    `${dir}/after-${name.replace(/\W+/g, "_")}`,
    [],
    `file://${replicaPath}`,
  );
  return {
    name,
    generation: gens[0],
    newGenerations: newGenerations(log),
    cleared: [...log.matchAll(/cannot determine last wal position.*?((?:reason|error)=.*)$/gm)]
      .map((m) => m[1]),
    snapshots: objs.filter((o) => o.kind === "snapshot").length,
    segments: objs.filter((o) => o.kind === "wal").length,
    indexes: [...new Set(objs.filter((o) => o.kind === "wal").map((o) => o.index))]
      .map((i) => i.toString(16)).join(","),
    lastIdAtStop,
    rowsAfterStop: await assertPrefix(check),
    errors: log.split("\n").filter((l) => /level=ERROR/.test(l) && !isV0313ShutdownError(l)),
  };
}

/** Config both tools read (`dbs:`, keys v0.3.13 knows): tiny thresholds, frequent snapshots. */
function config(dbPath: string, replicaPath: string): string {
  return [
    "dbs:",
    `  - path: ${dbPath}`,
    "    monitor-interval: 100ms",
    "    checkpoint-interval: 1s",
    "    min-checkpoint-page-count: 20",
    "    replicas:",
    "      - type: file",
    `        path: ${replicaPath}`,
    "        sync-interval: 100ms",
    "        snapshot-interval: 1s",
    "        retention: 24h",
    "",
  ].join("\n");
}

/** One restore to run with both tools. */
interface Case {
  name: string;
  flags: string[];
}

/**
 * Latest; `-timestamp` equal to several objects' mtimes, between neighbours (including the
 * closest pair) and at a whole millisecond inside a segment's mtime millisecond; `-index` for
 * every index and one above.
 */
function restoreCases(objects: ReplicaObject[]): Case[] {
  const byTime = [...objects].sort((a, b) =>
    a.mtimeNs < b.mtimeNs ? -1 : a.mtimeNs > b.mtimeNs ? 1 : 0
  );
  const name = (o: ReplicaObject) =>
    o.kind === "snapshot"
      ? `snapshot ${hex8(o.index)}`
      : `segment ${hex8(o.index)}_${hex8(o.offset)}`;
  const cases: Case[] = [{ name: "latest", flags: [] }];
  const at = (o: ReplicaObject, why: string): Case => ({
    name: `-timestamp = mtime of ${why} ${name(o)}`,
    flags: ["-timestamp", rfc3339Nano(o.mtimeNs)],
  });
  const snapshots = byTime.filter((o) => o.kind === "snapshot");
  const segments = byTime.filter((o) => o.kind === "wal");
  // (Not the oldest object: our first segment of a generation precedes its first snapshot.)
  cases.push(at(snapshots[0], "the first"));
  cases.push(at(snapshots[1], "the second"));
  cases.push(at(segments[Math.floor(segments.length / 3)], "a third-way"));
  cases.push(at(segments[Math.floor((segments.length * 2) / 3)], "a two-thirds-way"));
  cases.push(at(snapshots[snapshots.length - 1], "the newest"));
  cases.push(at(byTime[byTime.length - 1], "the newest object,"));
  // The first segment of every index: restores that replay each index from its start, on top
  // of whichever snapshot was the newest then (across restarts of the replicator too).
  for (const seg of segments.filter((o) => o.offset === 0)) cases.push(at(seg, "the first"));
  // Just before each later snapshot: the previous snapshot plus all the WAL up to it.
  for (const snap of snapshots.slice(1)) {
    cases.push({
      name: `-timestamp 1 ns before ${name(snap)}`,
      flags: ["-timestamp", rfc3339Nano(snap.mtimeNs - 1n)],
    });
  }
  const between = (a: ReplicaObject, b: ReplicaObject, why: string): Case => ({
    name: `-timestamp between ${name(a)} and ${name(b)}${why} (${b.mtimeNs - a.mtimeNs} ns apart)`,
    flags: ["-timestamp", rfc3339Nano((a.mtimeNs + b.mtimeNs) / 2n)],
  });
  for (const frac of [0.25, 0.5, 0.75]) {
    const i = Math.floor(byTime.length * frac);
    for (let j = i; j + 1 < byTime.length; j++) {
      if (byTime[j + 1].mtimeNs - byTime[j].mtimeNs > 2n) {
        cases.push(between(byTime[j], byTime[j + 1], ""));
        break;
      }
    }
  }
  // The closest pair of distinct mtimes where the later object is a segment (it adds rows).
  let closest: [ReplicaObject, ReplicaObject] | undefined;
  for (let j = 0; j + 1 < byTime.length; j++) {
    const [a, b] = [byTime[j], byTime[j + 1]];
    const gap = b.mtimeNs - a.mtimeNs;
    if (
      gap > 2n && b.kind === "wal" && (!closest || gap < closest[1].mtimeNs - closest[0].mtimeNs)
    ) {
      closest = [a, b];
    }
  }
  if (closest) cases.push(between(closest[0], closest[1], ", the closest pair"));
  // A whole-millisecond timestamp just before a segment's mtime, in the same millisecond: what a
  // user typing millisecond precision gets. v0.3.13 compares full precision and leaves the
  // segment out; a tool that truncates mtimes to milliseconds would wrongly include it.
  const ms = 1_000_000n;
  const sameMs = segments.find((b, i) => {
    const floor = b.mtimeNs - b.mtimeNs % ms;
    const a = byTime[byTime.indexOf(b) - 1];
    return i > segments.length / 2 && floor < b.mtimeNs && a !== undefined && a.mtimeNs < floor;
  });
  if (sameMs) {
    cases.push({
      name: `-timestamp at the whole millisecond just before ${name(sameMs)}'s mtime`,
      flags: ["-timestamp", rfc3339Nano(sameMs.mtimeNs - sameMs.mtimeNs % ms)],
    });
  }

  const maxIndex = Math.max(...objects.map((o) => o.index));
  for (let index = 0; index <= maxIndex; index++) {
    cases.push({ name: `-index ${index.toString(16)}`, flags: ["-index", index.toString(16)] });
  }
  cases.push({
    name: `-index ${(maxIndex + 1).toString(16)} (above)`,
    flags: ["-index", (maxIndex + 1).toString(16)],
  });
  const seen = new Set<string>();
  return cases.filter((c) => !seen.has(c.flags.join(" ")) && seen.add(c.flags.join(" ")));
}

/** Our restore into `<dir>/out.db`; asserts success and that only `out.db` is left. */
async function restoreWithOurs(dir: string, flags: string[], url: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const out = `${dir}/out.db`;
  const res = await runLitestream(["restore", "-o", out, ...flags, url]);
  assert.equal(res.code, 0, `our restore ${flags.join(" ")}: ${describeResult(res)}`);
  const left = [];
  for await (const e of Deno.readDir(dir)) left.push(e.name);
  assert.deepEqual(left, ["out.db"], `our restore must leave only out.db in ${dir}`);
  return out;
}

/** Asserts the writer's table holds exactly ids 1..k (no gaps) and returns k. */
async function assertPrefix(db: string): Promise<number> {
  const [count, max] = (await sqlite(db, "SELECT count(*), coalesce(max(id), 0) FROM t;"))
    .split("|").map(Number);
  assert.equal(count, max, `${db}: ${count} rows up to id ${max} (not a gapless prefix)`);
  return max;
}

/** `undefined` when equal, else sizes and the first differing page. */
function describeMismatch(ours: Uint8Array, theirs: Uint8Array): string | undefined {
  const n = Math.min(ours.length, theirs.length);
  let i = 0;
  while (i < n && ours[i] === theirs[i]) i++;
  if (i === n && ours.length === theirs.length) return undefined;
  return `ours ${ours.length} bytes, v0.3.13's ${theirs.length} bytes; ` +
    (i < n
      ? `first difference at byte ${i} (page ${Math.floor(i / 4096) + 1})`
      : "common prefix equal");
}
