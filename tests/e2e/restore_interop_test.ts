/**
 * Restore interoperability: for a file replica written by the real Litestream v0.3.13, our
 * `restore` must produce exactly the bytes v0.3.13's own `restore` produces for the same flags,
 * leave nothing but the output file behind, and do better where v0.3.13 is specified to fail
 * (a `-timestamp` after the last upload restores the latest state).
 */

import assert from "node:assert/strict";
import { tempDir } from "../support/poll.ts";
import {
  buildV0313FileReplica,
  type ReplicaObject,
  rfc3339Nano,
  type V0313FileReplica,
} from "../support/fixtures.ts";
import { REPO_ROOT, restoreWithV0313, v0313Restore } from "../support/litestream_v0313.ts";
import { hex8 } from "../../lib/names.ts";
import { integrityCheck } from "../support/sqlite_cli.ts";

/** One restore to run with both tools. */
interface Case {
  name: string;
  /** Flags placed before the replica URL (`-o` is added per tool). */
  flags: string[];
}

Deno.test("restore output is byte-identical to v0.3.13's on a v0.3.13 file replica", async (t) => {
  await using dir = await tempDir("restore-interop-");
  // Built once for all steps: it costs several seconds of real replication.
  const fx = await buildV0313FileReplica(`${dir.path}/fixture`);
  assert.ok(fx.generations.length >= 2, `fixture has generations ${fx.generations}`);

  let n = 0;
  const caseDir = (name: string) => `${dir.path}/cases/${String(++n).padStart(2, "0")}-${name}`;

  for (const c of interopCases(fx)) {
    await t.step(c.name, async () => {
      const base = caseDir(c.name.replace(/[^A-Za-z0-9]+/g, "_").slice(0, 60));
      const ref = await restoreWithV0313(`${base}/v0313`, c.flags, fx.replicaUrl);
      await restoreWithOursAndCompare(`${base}/ours`, c.flags, fx.replicaUrl, ref);
    });
  }

  await t.step(
    "-timestamp after the last upload: v0.3.13 fails, ours restores the latest",
    async () => {
      const last = fx.objects.reduce((m, o) => o.mtimeNs > m ? o.mtimeNs : m, 0n);
      const flags = ["-timestamp", rfc3339Nano(last + 3_600_000_000_000n)];
      const base = caseDir("timestamp_after_last_upload");

      await Deno.mkdir(`${base}/v0313`, { recursive: true });
      const theirs = await v0313Restore(["-o", `${base}/v0313/out.db`, ...flags, fx.replicaUrl]);
      assert.equal(theirs.code, 1, `v0.3.13 was expected to fail; stderr: ${theirs.stderr}`);
      assert.match(theirs.stderr, /no matching backups found/);

      const latest = await restoreWithV0313(`${base}/v0313-latest`, [], fx.replicaUrl);
      await restoreWithOursAndCompare(`${base}/ours`, flags, fx.replicaUrl, latest);
    },
  );
});

/**
 * The flag combinations compared with v0.3.13, all chosen from the replica's actual objects so
 * that v0.3.13 itself succeeds: latest, each generation, timestamps equal to and between object
 * mtimes in every generation (v0.3.13 restores those into the generation whose time bounds hold
 * them), and hex indexes of the latest generation up to one above the highest.
 */
function interopCases(fx: V0313FileReplica): Case[] {
  const cases: Case[] = [{ name: "latest", flags: [] }];
  const label = (g: string) => `generation ${fx.generations.indexOf(g) + 1} (${g})`;
  const objName = (o: ReplicaObject) =>
    o.kind === "snapshot"
      ? `snapshot ${hex8(o.index)}`
      : `segment ${hex8(o.index)}_${hex8(o.offset)}`;

  for (const g of fx.generations) {
    cases.push({ name: `-generation of ${label(g)}`, flags: ["-generation", g] });
  }

  for (const g of fx.generations) {
    const objs = fx.objects.filter((o) => o.generation === g)
      .sort((a, b) => a.mtimeNs < b.mtimeNs ? -1 : a.mtimeNs > b.mtimeNs ? 1 : 0);
    const snapshots = objs.filter((o) => o.kind === "snapshot");
    const segments = objs.filter((o) => o.kind === "wal");
    const at = (o: ReplicaObject, why: string): Case => ({
      name: `-timestamp = mtime of ${why} ${objName(o)} in ${label(g)}`,
      flags: ["-timestamp", rfc3339Nano(o.mtimeNs)],
    });
    // The oldest object: snapshot-only restore (every segment is newer).
    cases.push(at(objs[0], "the oldest object,"));
    // A segment in the middle: snapshot plus a partial WAL replay.
    cases.push(at(segments[Math.floor(segments.length / 2)], "the middle"));
    // The newest snapshot: chosen by time, not index; segments sharing its mtime count too.
    cases.push(at(snapshots[snapshots.length - 1], "the newest"));
    // The newest object: the generation's whole history.
    cases.push(at(objs[objs.length - 1], "the newest object,"));
    // Between two objects' mtimes, early and late in the generation.
    for (const frac of [0.3, 0.8]) {
      const pair = distinctNeighbours(objs, Math.floor(objs.length * frac));
      if (!pair) continue;
      const [a, b] = pair;
      cases.push({
        name: `-timestamp between ${objName(a)} and ${objName(b)} in ${label(g)}`,
        flags: ["-timestamp", rfc3339Nano((a.mtimeNs + b.mtimeNs) / 2n)],
      });
    }
  }

  const latestGen = fx.generations[fx.generations.length - 1];
  const latestObjs = fx.objects.filter((o) => o.generation === latestGen);
  const maxIndex = Math.max(...latestObjs.map((o) => o.index));
  for (let index = 0; index <= maxIndex; index++) {
    const snap = latestObjs.some((o) => o.kind === "snapshot" && o.index === index);
    cases.push({
      name: `-index ${index.toString(16)}${snap ? " (a snapshot's index)" : ""} in the latest ${
        label(latestGen)
      }`,
      flags: ["-index", index.toString(16)],
    });
  }
  // Above the highest index restores the latest state; upper case is valid hex for v0.3.13.
  const above = maxIndex < 0xff ? "FF" : (maxIndex + 1).toString(16);
  cases.push({ name: `-index ${above} (above the highest)`, flags: ["-index", above] });

  // -index together with -generation on an older generation.
  const oldGen = fx.generations[0];
  const oldMax = Math.max(...fx.objects.filter((o) => o.generation === oldGen).map((o) => o.index));
  const mid = Math.max(1, Math.floor(oldMax / 2));
  cases.push({
    name: `-generation ${label(oldGen)} -index ${mid.toString(16)}`,
    flags: ["-generation", oldGen, "-index", mid.toString(16)],
  });

  // Small generations can make two choices coincide; run each flag set once.
  const seen = new Set<string>();
  return cases.filter((c) => !seen.has(c.flags.join(" ")) && seen.add(c.flags.join(" ")));
}

/** From position `i` on, the first pair of consecutive objects with different mtimes. */
function distinctNeighbours(
  objs: ReplicaObject[],
  i: number,
): [ReplicaObject, ReplicaObject] | undefined {
  for (let j = Math.max(0, i); j + 1 < objs.length; j++) {
    if (objs[j + 1].mtimeNs > objs[j].mtimeNs + 1n) return [objs[j], objs[j + 1]];
  }
  return undefined;
}

/**
 * Runs our restore into `<dir>/out.db` and checks: exit 0, nothing but `out.db` left in `dir`,
 * bytes equal to `reference`, and a clean integrity check.
 */
async function restoreWithOursAndCompare(
  dir: string,
  flags: string[],
  url: string,
  reference: string,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const out = `${dir}/out.db`;
  const args = ["run", "-A", `${REPO_ROOT}/main.ts`, "restore", "-o", out, ...flags, url];
  // cwd = repo root so deno.json (import map, lock file) applies to main.ts.
  const res = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(res.stderr);
  assert.equal(res.code, 0, `our restore ${flags.join(" ")} exited ${res.code}: ${stderr}`);

  const left = [];
  for await (const e of Deno.readDir(dir)) left.push(e.name);
  assert.deepEqual(left.sort(), ["out.db"], `our restore must leave only out.db in ${dir}`);

  const mismatch = await describeMismatch(out, reference);
  assert.equal(mismatch, undefined, `our restore ${flags.join(" ")} differs from v0.3.13's`);

  assert.equal(await integrityCheck(out), "ok", "integrity_check of our restore");
}

/** `undefined` when the files are byte-identical, else sizes and the first differing page. */
async function describeMismatch(ours: string, reference: string): Promise<string | undefined> {
  const [a, b] = await Promise.all([Deno.readFile(ours), Deno.readFile(reference)]);
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  if (i === n && a.length === b.length) return undefined;
  // Page size from the reference's SQLite header (big-endian u16 at 16; 1 means 65536).
  const raw = b.length >= 18 ? (b[16] << 8) | b[17] : 0;
  const pageSize = raw === 1 ? 65536 : raw || 4096;
  const where = i < n
    ? `first difference at byte ${i} (page ${Math.floor(i / pageSize) + 1})`
    : `identical for the first ${n} bytes`;
  return `ours is ${a.length} bytes, v0.3.13's is ${b.length} bytes; ${where}, ` +
    `page size ${pageSize}`;
}
