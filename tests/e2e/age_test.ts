/**
 * age encryption end to end, against the real Litestream v0.3.13 (config mode: v0.3.13 reads the
 * `age` block only from a config file):
 *
 * 1. Our `replicate` with `age` writes every object (snapshots, WAL segments, checksum records)
 *    as an age file under its usual name; our restore and v0.3.13's give the same bytes with
 *    every row; `validate` and the listings work; restores without identities, with a wrong
 *    identity, or by URL fail with one line and leave nothing behind.
 * 2. A replica v0.3.13 wrote with `age` restores here to v0.3.13's own bytes.
 * 3. Handover ours → v0.3.13 → ours on one encrypted replica keeps every row.
 * 4. A replica with recipients but no identities still replicates, across a restart.
 * 5. The Deno Deploy validator decrypts an S3 replica with `LITESTREAM_VALIDATE_AGE_IDENTITIES`.
 *
 * Keys are generated with the age library itself.
 *
 * @module
 */

import assert from "node:assert/strict";
import { generateIdentity, identityToRecipient } from "age-encryption";
import { tempDir, waitFor } from "../support/poll.ts";
import { listReplicaObjects } from "../support/fixtures.ts";
import {
  startV0313Replicate,
  stopV0313Replicate,
  v0313Restore,
} from "../support/litestream_v0313.ts";
import { createWriterTable, integrityCheck, sqlite, Writer } from "../support/sqlite_cli.ts";
import {
  describeResult,
  type ReplicateProcess,
  runLitestream,
  startReplicate,
  stopOk,
} from "../support/replicate_process.ts";
import { readDirOrEmpty } from "../../lib/os/fs.ts";
import { startS3rver } from "../support/s3_server.ts";
import { configYaml, s3ReplicaKeys } from "../support/config_yaml.ts";
import { validateReplicas } from "../../deploy/validate.ts";

const IDENTITY = await generateIdentity();
const RECIPIENT = await identityToRecipient(IDENTITY);
const OTHER_IDENTITY = await generateIdentity();
const MAGIC = "age-encryption.org/v1\n";

/** A config both tools read: one database, one file replica with the given `age` keys. */
function config(
  dbPath: string,
  replicaPath: string,
  age: { identities?: string[]; recipients?: string[] },
): string {
  const list = (keys: string[] = []) => `[${keys.join(", ")}]`;
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
    "        snapshot-interval: 2s",
    "        retention: 24h",
    "        age:",
    `          identities: ${list(age.identities)}`,
    `          recipients: ${list(age.recipients)}`,
    "",
  ].join("\n");
}

/** Our replicate, or v0.3.13's, as a phase sees it. */
interface Tool {
  proc: ReplicateProcess;
  /** Stops it: ours must exit 0; v0.3.13 may exit 1 at a shutdown checkpoint (see interop tests). */
  stop(): Promise<void>;
}

function ours(configPath: string, logPath: string): Tool {
  const proc = startReplicate(["-config", configPath], { logPath });
  return { proc, stop: async () => void await stopOk(proc) };
}

async function theirs(configPath: string, logPath: string): Promise<Tool> {
  const proc = await startV0313Replicate(configPath, { logPath });
  return {
    proc,
    async stop() {
      await stopV0313Replicate(proc);
    },
  };
}

/**
 * Runs `tool` until it added a snapshot and segments in ≥ `indexes` WAL indexes to the replica;
 * runs `beforeStop` (stopping the writer, say) and stops it.
 */
async function phase(
  tool: Tool,
  replicaPath: string,
  indexes: number,
  beforeStop?: () => Promise<void>,
): Promise<void> {
  const before = new Set((await listReplicaObjects(replicaPath)).map((o) => o.path));
  try {
    await waitFor(
      `a snapshot and segments in ${indexes} WAL indexes`,
      async () => {
        if (tool.proc.exited) throw new Error(`exited early:\n${await tool.proc.log()}`);
        const fresh = (await listReplicaObjects(replicaPath)).filter((o) => !before.has(o.path));
        return fresh.some((o) => o.kind === "snapshot") &&
          new Set(fresh.filter((o) => o.kind === "wal").map((o) => o.index)).size >= indexes;
      },
      30_000,
      100,
    );
    await beforeStop?.();
  } finally {
    await tool.stop();
  }
}

/** Row count and max id of table t, which hold 1..n for an intact restore of n rows. */
async function rows(dbPath: string): Promise<number> {
  const [count, max] = (await sqlite(dbPath, "SELECT count(*), max(id) FROM t;")).split("|");
  assert.equal(count, max, `${dbPath}: ids are 1..n`);
  return Number(count);
}

/** Restores the database of `configPath` with our tool and with v0.3.13; both must agree. */
async function restoreBoth(dir: string, configPath: string, dbPath: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const mine = `${dir}/ours.db`;
  const ref = `${dir}/v0313.db`;
  const r = await runLitestream(["restore", "-config", configPath, "-o", mine, dbPath]);
  assert.equal(r.code, 0, describeResult(r));
  const t = await v0313Restore(["-config", configPath, "-o", ref, dbPath]);
  assert.equal(t.code, 0, `v0.3.13 restore: ${t.stderr}`);
  assert.equal(await integrityCheck(mine), "ok");
  assert.equal(await integrityCheck(ref), "ok");
  const [a, b] = [await Deno.readFile(mine), await Deno.readFile(ref)];
  assert.equal(a.length, b.length, "ours and v0.3.13's restores have the same size");
  assert.ok(a.every((x, i) => x === b[i]), "ours and v0.3.13's restores are identical");
  return mine;
}

/** The first bytes of every file under `dir` (recursively), by path. */
async function heads(dir: string, out = new Map<string, string>()): Promise<Map<string, string>> {
  for (const e of await readDirOrEmpty(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) await heads(path, out);
    else {
      const bytes = await Deno.readFile(path);
      out.set(path, new TextDecoder().decode(bytes.subarray(0, MAGIC.length)));
    }
  }
  return out;
}

Deno.test("age: our replica is encrypted, restores with ours and v0.3.13 alike, validates", async (t) => {
  await using dir = await tempDir("age-ours-");
  const dbPath = `${dir.path}/app.db`;
  const replicaPath = `${dir.path}/replica`;
  const configPath = `${dir.path}/litestream.yml`;
  const keys = { identities: [IDENTITY], recipients: [RECIPIENT] };
  await Deno.writeTextFile(configPath, config(dbPath, replicaPath, keys));
  await createWriterTable(dbPath);
  const writer = await Writer.start(dbPath);
  let lastId = 0;
  try {
    await phase(ours(configPath, `${dir.path}/ours.log`), replicaPath, 3, async () => {
      lastId = await writer.stop();
    });
  } finally {
    await writer.stop().catch(() => {});
  }

  await t.step("every object is an age file under its usual name, records included", async () => {
    const all = await heads(`${replicaPath}/generations`);
    const names = [...all.keys()].map((p) => p.slice(replicaPath.length + 1));
    assert.ok(names.some((n) => /\/snapshots\/[0-9a-f]{8}\.snapshot\.lz4$/.test(n)), `${names}`);
    assert.ok(names.some((n) => /\/wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/.test(n)), `${names}`);
    assert.ok(names.some((n) => /\/checksums\/[0-9a-f]{8}_[0-9a-f]{8}\.json$/.test(n)), `${names}`);
    for (const [path, head] of all) assert.equal(head, MAGIC, path);
  });

  await t.step("ours and v0.3.13 restore the same bytes, holding every row", async () => {
    const restored = await restoreBoth(`${dir.path}/restore`, configPath, dbPath);
    assert.equal(await rows(restored), lastId);
  });

  await t.step("validate DB_PATH decrypts the replica and finds it equal", async () => {
    const r = await runLitestream(["validate", "-json", "-config", configPath, dbPath], {
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, describeResult(r));
    const out = JSON.parse(r.out) as { status: string }[];
    assert.deepEqual(out.map((row) => row.status), ["ok"]);
  });

  await t.step("listings show the stored (encrypted) sizes, as v0.3.13 does", async () => {
    const r = await runLitestream(["wal", "-json", "-config", configPath, dbPath]);
    assert.equal(r.code, 0, describeResult(r));
    const listed = JSON.parse(r.out) as { index: number; offset: number; size: number }[];
    const objects = (await listReplicaObjects(replicaPath)).filter((o) => o.kind === "wal");
    assert.deepEqual(
      listed.map((w) => w.size),
      objects.map((o) => o.size),
    );
  });

  const failing = async (name: string, keys: { identities?: string[]; recipients?: string[] }) => {
    const cfg = `${dir.path}/${name}.yml`;
    await Deno.writeTextFile(cfg, config(dbPath, replicaPath, keys));
    const outDir = `${dir.path}/${name}-out`;
    await Deno.mkdir(outDir);
    const r = await runLitestream(["restore", "-config", cfg, "-o", `${outDir}/db`, dbPath]);
    assert.equal(r.code, 1, describeResult(r));
    assert.equal(r.err.trim().split("\n").length, 1, `one line: ${r.err}`);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(outDir)), [], "nothing left behind");
    return { err: r.err.trim(), cfg };
  };

  await t.step("recipients without identities: the restore says which key is missing", async () => {
    const { err, cfg } = await failing("no-identities", { recipients: [RECIPIENT] });
    assert.match(err, /\.snapshot\.lz4: the object is age-encrypted and no age identities/);
    assert.ok(err.includes(`set dbs[0].replicas[0].age.identities in ${cfg}`), err);
  });

  await t.step("a wrong identity: one line naming the object, no identity matched", async () => {
    const { err } = await failing("wrong-identity", { identities: [OTHER_IDENTITY] });
    assert.match(
      err,
      new RegExp(
        `${replicaPath}/generations/[0-9a-f]{16}/snapshots/[0-9a-f]{8}\\.snapshot\\.lz4: no identity matched`,
      ),
    );
  });

  await t.step("damaged ciphertext: one line naming the object, no partial output", async () => {
    const copy = `${dir.path}/damaged`;
    await new Deno.Command("cp", { args: ["-a", replicaPath, copy] }).output();
    const snapshot = (await listReplicaObjects(copy)).find((o) => o.kind === "snapshot")!;
    const bytes = await Deno.readFile(snapshot.path);
    bytes[bytes.length >> 1] ^= 0x40;
    await Deno.writeFile(snapshot.path, bytes);
    const cfg = `${dir.path}/damaged.yml`;
    await Deno.writeTextFile(cfg, config(dbPath, copy, keys));
    const outDir = `${dir.path}/damaged-out`;
    await Deno.mkdir(outDir);
    const r = await runLitestream(["restore", "-config", cfg, "-o", `${outDir}/db`, dbPath]);
    assert.equal(r.code, 1, describeResult(r));
    assert.equal(r.err.trim().split("\n").length, 1, `one line: ${r.err}`);
    assert.ok(r.err.includes(`${snapshot.path}: age payload does not authenticate`), r.err);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(outDir)), [], "nothing left behind");
  });

  await t.step("a replica URL has no keys: the restore says the object is encrypted", async () => {
    const outDir = `${dir.path}/url-out`;
    await Deno.mkdir(outDir);
    const r = await runLitestream(["restore", "-o", `${outDir}/db`, `file://${replicaPath}`]);
    assert.equal(r.code, 1, describeResult(r));
    assert.match(r.err, /age-encrypted, and no age identities were given/);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(outDir)), []);
  });

  await t.step(
    "validate of a replica URL: each object named once, records counted as encrypted",
    async () => {
      const r = await runLitestream(["validate", "-json", `file://${replicaPath}`]);
      assert.equal(r.code, 1, describeResult(r));
      const rows = JSON.parse(r.out) as { records: number | string; status: string }[];
      assert.ok(rows.length >= 1, r.out);
      for (const row of rows) {
        const named = row.status.match(/[^ ;]+\.(lz4|json): age-encrypted/g) ?? [];
        assert.ok(named.length >= 1, row.status);
        assert.equal(new Set(named).size, named.length, `each object once: ${row.status}`);
        assert.doesNotMatch(row.status, /not JSON/);
      }
      assert.ok(rows.some((row) => typeof row.records === "number" && row.records >= 1), r.out);
    },
  );
});

Deno.test("age: a replica v0.3.13 wrote with age restores here to v0.3.13's bytes", async () => {
  await using dir = await tempDir("age-v0313-");
  const dbPath = `${dir.path}/app.db`;
  const replicaPath = `${dir.path}/replica`;
  const configPath = `${dir.path}/litestream.yml`;
  await Deno.writeTextFile(
    configPath,
    config(dbPath, replicaPath, { identities: [IDENTITY], recipients: [RECIPIENT] }),
  );
  await createWriterTable(dbPath);
  const writer = await Writer.start(dbPath);
  let lastId = 0;
  try {
    await phase(await theirs(configPath, `${dir.path}/v0313.log`), replicaPath, 2, async () => {
      lastId = await writer.stop();
      // v0.3.13 ships the last commit within its sync interval; wait for it to be restorable.
      await waitFor(
        "v0.3.13 to ship the last commit",
        async () => {
          const t = await v0313Restore([
            "-config",
            configPath,
            "-o",
            `${dir.path}/probe.db`,
            dbPath,
          ]);
          const n = t.code === 0 ? await rows(`${dir.path}/probe.db`) : -1;
          await Deno.remove(`${dir.path}/probe.db`).catch(() => {});
          return n === lastId;
        },
        20_000,
        200,
      );
    });
  } finally {
    await writer.stop().catch(() => {});
  }
  for (const [path, head] of await heads(`${replicaPath}/generations`)) {
    assert.equal(head, MAGIC, `v0.3.13 encrypted ${path}`);
  }
  const restored = await restoreBoth(`${dir.path}/restore`, configPath, dbPath);
  assert.equal(await rows(restored), lastId);
});

Deno.test("age: handover ours → v0.3.13 → ours on one encrypted replica keeps every row", async () => {
  await using dir = await tempDir("age-handover-");
  const dbPath = `${dir.path}/app.db`;
  const replicaPath = `${dir.path}/replica`;
  const configPath = `${dir.path}/litestream.yml`;
  await Deno.writeTextFile(
    configPath,
    config(dbPath, replicaPath, { identities: [IDENTITY], recipients: [RECIPIENT] }),
  );
  await createWriterTable(dbPath);
  const writer = await Writer.start(dbPath);
  let lastId = 0;
  try {
    await phase(ours(configPath, `${dir.path}/ours1.log`), replicaPath, 2);
    await phase(await theirs(configPath, `${dir.path}/v0313.log`), replicaPath, 2);
    await phase(ours(configPath, `${dir.path}/ours2.log`), replicaPath, 2, async () => {
      lastId = await writer.stop();
    });
  } finally {
    await writer.stop().catch(() => {});
  }
  const log = await Deno.readTextFile(`${dir.path}/v0313.log`);
  assert.ok(!/no identity matched|age:|decrypt/i.test(log), `v0.3.13 read our objects:\n${log}`);
  const restored = await restoreBoth(`${dir.path}/restore`, configPath, dbPath);
  assert.equal(await rows(restored), lastId);
});

Deno.test("age: recipients without identities still replicate, across a restart", async () => {
  await using dir = await tempDir("age-recipients-only-");
  const dbPath = `${dir.path}/app.db`;
  const replicaPath = `${dir.path}/replica`;
  const configPath = `${dir.path}/litestream.yml`;
  const fullPath = `${dir.path}/full.yml`;
  await Deno.writeTextFile(configPath, config(dbPath, replicaPath, { recipients: [RECIPIENT] }));
  await Deno.writeTextFile(
    fullPath,
    config(dbPath, replicaPath, { identities: [IDENTITY], recipients: [RECIPIENT] }),
  );
  await createWriterTable(dbPath);
  const writer = await Writer.start(dbPath);
  let lastId = 0;
  try {
    await phase(ours(configPath, `${dir.path}/ours.log`), replicaPath, 2);
    await phase(ours(configPath, `${dir.path}/ours.log`), replicaPath, 2, async () => {
      lastId = await writer.stop();
    });
  } finally {
    await writer.stop().catch(() => {});
  }
  const log = await Deno.readTextFile(`${dir.path}/ours.log`);
  assert.ok(!/level=ERROR/.test(log), `no errors logged:\n${log}`);
  const restored = await restoreBoth(`${dir.path}/restore`, fullPath, dbPath);
  assert.equal(await rows(restored), lastId);

  // Identities alone cannot replicate: objects would go out unencrypted.
  const idOnly = `${dir.path}/identities-only.yml`;
  await Deno.writeTextFile(idOnly, config(dbPath, replicaPath, { identities: [IDENTITY] }));
  const r = await runLitestream(["replicate", "-config", idOnly]);
  assert.equal(r.code, 1, describeResult(r));
  assert.match(
    r.err,
    /dbs\[0\]\.replicas\[0\]\.age\.recipients: replicate needs at least one age recipient/,
  );
});

Deno.test("age: the Deno Deploy validator decrypts an S3 replica with the identities", async () => {
  await using dir = await tempDir("age-deploy-");
  await using s3 = await startS3rver();
  const dbPath = `${dir.path}/app.db`;
  const configPath = `${dir.path}/litestream.yml`;
  const prefix = "age/db";
  await Deno.writeTextFile(
    configPath,
    configYaml([{
      path: dbPath,
      replicas: [{
        ...s3ReplicaKeys({ srv: s3, path: prefix }),
        age: `{identities: [${IDENTITY}], recipients: [${RECIPIENT}]}`,
      }],
    }]),
  );
  await createWriterTable(dbPath);
  // 10 MB of incompressible rows: the encrypted snapshot spans several 4 MiB ranged parts.
  await sqlite(
    dbPath,
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) " +
      "INSERT INTO t (v) SELECT randomblob(1000) FROM n;",
  );
  const writer = await Writer.start(dbPath);
  const proc = startReplicate(["-config", configPath], { logPath: `${dir.path}/ours.log` });
  try {
    await waitFor(
      "three WAL segments and a checksum record",
      async () => {
        if (proc.exited) throw new Error(`exited early:\n${await proc.log()}`);
        const log = await proc.log();
        return (log.match(/wal segment written/g) ?? []).length >= 3 &&
          /snapshot written/.test(log);
      },
      30_000,
      100,
    );
    await writer.stop();
  } finally {
    await writer.stop().catch(() => {});
    await stopOk(proc);
  }
  // Our restore reads the encrypted snapshot as parallel ranged parts and decrypts it in order.
  const restored = `${dir.path}/restored.db`;
  const r = await runLitestream([
    "restore",
    "-config",
    configPath,
    "-parallelism",
    "4",
    "-o",
    restored,
    dbPath,
  ]);
  assert.equal(r.code, 0, describeResult(r));
  assert.equal(await integrityCheck(restored), "ok");
  assert.equal(await rows(restored), Number(await sqlite(dbPath, "SELECT max(id) FROM t;")));

  const env = {
    LITESTREAM_VALIDATE_REPLICAS: `s3://${s3.bucket}/${prefix}`,
    LITESTREAM_VALIDATE_ENDPOINT: s3.endpoint,
    LITESTREAM_VALIDATE_REGION: "us-east-1",
    LITESTREAM_ACCESS_KEY_ID: s3.accessKeyId,
    LITESTREAM_SECRET_ACCESS_KEY: s3.secretAccessKey,
  };
  const good = await validateReplicas({ ...env, LITESTREAM_VALIDATE_AGE_IDENTITIES: IDENTITY });
  assert.equal(good.ok, true, JSON.stringify(good));
  const records = good.replicas[0].generations.map((g) => g.records);
  assert.ok(records.some((n) => n > 0), `records checked: ${records}`);

  const wrong = await validateReplicas({
    ...env,
    LITESTREAM_VALIDATE_AGE_IDENTITIES: OTHER_IDENTITY,
  });
  assert.equal(wrong.ok, false);
  assert.match(JSON.stringify(wrong.replicas[0]), /no identity matched/);

  const none = await validateReplicas(env);
  assert.equal(none.ok, false);
  assert.match(JSON.stringify(none.replicas[0]), /age-encrypted/);
});
