/**
 * SFTP replicas end to end, against OpenSSH's real sshd: our replicate and
 * the real Litestream v0.3.13 (which logs in with `key-path`) write and
 * restore each other's replicas to the same bytes, and hand one replica over
 * ours → v0.3.13 → ours without losing a row; host keys are checked against
 * known_hosts (match, mismatch refused naming host and both fingerprints,
 * unknown accepted with a warning giving the fingerprint). An age-encrypted
 * SFTP replica of ours restores with v0.3.13 too.
 * Faults are in `sftp_faults_test.ts`.
 */

import assert from "node:assert/strict";
import { generateIdentity, identityToRecipient } from "age-encryption";
import { join } from "node:path";
import { tempDir, waitFor } from "../support/poll.ts";
import { createWriterTable, integrityCheck, sqlite, Writer } from "../support/sqlite_cli.ts";
import { configYaml, type YamlKeys } from "../support/config_yaml.ts";
import { fileHash } from "../support/hash.ts";
import { listReplicaObjects } from "../support/fixtures.ts";
import {
  litestreamV0313,
  startV0313Replicate,
  stopV0313Replicate,
} from "../support/litestream_v0313.ts";
import { type CliResult, describeResult, runCommand, runLitestream } from "../support/cli.ts";
import { startReplicate, waitForRestore } from "../support/replicate_process.ts";
import type { LoggedProcess } from "../support/logged_process.ts";
import { sshdAvailable, startSshd, type TestSshd } from "../support/sshd.ts";

const NO_SANITIZERS = { sanitizeOps: false, sanitizeResources: false, sanitizeExit: false };
const ignore = sshdAvailable() !== undefined;
if (ignore) console.warn(`sftp tests skipped: ${sshdAvailable()}`);

/** Stops our replicate; asserts it exited 0. */
async function stopOurs(rep: LoggedProcess): Promise<void> {
  const { status } = await rep.stop();
  assert.ok(status.success, `ours exited ${status.code}; log:\n${await rep.log()}`);
}

function assertOk(r: CliResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed: ${describeResult(r)}`);
}

/** Asserts `path` passes the integrity check and holds exactly ids 1..lastId in `t`. */
async function assertHoldsRows(path: string, lastId: number, what: string): Promise<void> {
  assert.equal(await integrityCheck(path), "ok", `${what}: integrity check`);
  assert.equal(
    await sqlite(path, "SELECT count(*), coalesce(max(id), 0) FROM t;"),
    `${lastId}|${lastId}`,
    `${what}: rows of t (count|max id)`,
  );
}

/** A config file (for both tools) with one database and one SFTP replica; returns its path. */
async function writeConfig(dir: string, name: string, db: string, replica: YamlKeys) {
  const path = join(dir, `${name}.yml`);
  await Deno.writeTextFile(
    path,
    configYaml([{ path: db, replicas: [{ "snapshot-interval": "2s", ...replica }] }]),
  );
  return path;
}

/** Our restore and v0.3.13's of the config's database; asserts both succeed with equal bytes. */
async function restoreBoth(dir: string, config: string, db: string, tag: string) {
  const ours = join(dir, `${tag}-ours.db`);
  const theirs = join(dir, `${tag}-v0313.db`);
  assertOk(await runLitestream(["restore", "-config", config, "-o", ours, db]), "our restore");
  assertOk(
    await runCommand(await litestreamV0313(), ["restore", "-config", config, "-o", theirs, db]),
    "v0.3.13 restore",
  );
  assert.equal(await fileHash(ours), await fileHash(theirs), `${tag}: ours and v0.3.13 differ`);
  return ours;
}

/** The WAL indexes (`generation/index`) the replica directory holds segments of. */
/** The whole second of the newest snapshot's or WAL segment's mtime in the replica. */
async function newestSecond(replicaDir: string): Promise<bigint> {
  let newest = 0n;
  for (const o of await listReplicaObjects(replicaDir)) {
    if (o.kind !== "wal" && o.kind !== "snapshot") continue;
    const second = o.mtimeNs / 1_000_000_000n;
    if (second > newest) newest = second;
  }
  return newest;
}

async function walIndexes(replicaDir: string): Promise<Set<string>> {
  const objects = await listReplicaObjects(replicaDir);
  return new Set(objects.filter((o) => o.kind === "wal").map((o) => `${o.generation}/${o.index}`));
}

/** Waits until the replica holds segments of `indexes` WAL indexes not in `before`. */
async function waitForIndexes(replicaDir: string, indexes: number, before = new Set<string>()) {
  await waitFor(
    `${indexes} new WAL indexes in ${replicaDir}`,
    async () => {
      return [...await walIndexes(replicaDir)].filter((k) => !before.has(k)).length >= indexes;
    },
    30_000,
    200,
  );
}

/** The SFTP replica keys v0.3.13 reads (it ignores host-key; ours pins it). */
function replicaKeys(sshd: TestSshd, path: string): YamlKeys {
  return sshd.replicaKeys(path, { "host-key": `"${sshd.hostKey}"` });
}

Deno.test({
  name: "sftp: our replica restores with ours and v0.3.13 to the same bytes, and so does v0.3.13's",
  ignore,
  ...NO_SANITIZERS,
  fn: async (t) => {
    await using sshd = await startSshd();
    await using dir = await tempDir();
    const identity = await generateIdentity();
    const age = `{identities: [${identity}], recipients: [${await identityToRecipient(identity)}]}`;
    for (
      const [writer, encrypted] of [["ours", false], ["v0.3.13", false], ["ours", true]] as const
    ) {
      const name = encrypted ? `${writer}-age` : writer;
      await t.step(
        `replica written by ${writer}${encrypted ? ", age-encrypted" : ""}`,
        async () => {
          const db = join(dir.path, `${name}.db`);
          const replicaDir = join(sshd.dir, `replica-${name}`);
          await createWriterTable(db);
          const keys = { ...replicaKeys(sshd, replicaDir), ...(encrypted ? { age } : {}) };
          const config = await writeConfig(dir.path, name, db, keys);
          const logPath = join(dir.path, `${name}.log`);
          const rep = writer === "ours"
            ? startReplicate(["-config", config], { logPath })
            : await startV0313Replicate(config, { logPath });
          const app = await Writer.start(db, { pauseMs: 5 });
          let lastId: number;
          try {
            await waitForIndexes(replicaDir, 3);
            lastId = await app.stop();
          } finally {
            await app.stop().catch(() => {});
          }
          if (writer === "ours") {
            await stopOurs(rep); // Its shutdown sync ships the last commit.
          } else {
            // v0.3.13's shutdown sync can race its replica loop for one segment and hang: let it
            // ship everything before the signal.
            await waitForRestore(dir.path, ["-config", config, db], [{ table: "t", lastId }]);
            await stopV0313Replicate(rep);
          }
          const out = await restoreBoth(dir.path, config, db, name);
          await assertHoldsRows(out, lastId, `restore of the replica ${name} wrote`);
          const objects = await listReplicaObjects(replicaDir);
          assert.ok(objects.some((o) => o.kind === "snapshot"), "snapshots in the replica");
          const head = new TextDecoder().decode(
            (await Deno.readFile(objects[0].path)).slice(0, 21),
          );
          assert.equal(head === "age-encryption.org/v1", encrypted, `object starts with ${head}`);
        },
      );
    }
  },
});

Deno.test({
  name: "sftp: handover ours → v0.3.13 → ours on one replica keeps every row",
  ignore,
  ...NO_SANITIZERS,
  fn: async () => {
    await using sshd = await startSshd();
    await using dir = await tempDir();
    const db = join(dir.path, "app.db");
    const replicaDir = join(sshd.dir, "replica");
    await createWriterTable(db);
    const config = await writeConfig(dir.path, "app", db, replicaKeys(sshd, replicaDir));
    const app = await Writer.start(db, { pauseMs: 5 });
    let lastId = 0;
    let before = new Set<string>();
    let previousSecond = 0n;
    try {
      for (const [i, who] of (["ours", "v0.3.13", "ours"] as const).entries()) {
        const logPath = join(dir.path, `phase${i}-${who}.log`);
        const rep = who === "ours"
          ? startReplicate(["-config", config], { logPath })
          : await startV0313Replicate(config, { logPath });
        // Each phase ships WAL indexes of its own before it stops.
        await waitForIndexes(replicaDir, 2, before);
        if (i === 2) {
          // SFTP gives object times in whole seconds, and a restore picks the generation updated
          // last: the last phase must write in a later second than the one before it, or the
          // two generations tie and the choice between them is the generation names' order.
          await waitFor(
            "an upload in a later second than the previous phase's",
            async () => await newestSecond(replicaDir) > previousSecond,
          );
          lastId = await app.stop();
        }
        // A v0.3.13 killed at a shutdown hang leaves its last commits to the next phase.
        await (who === "ours" ? stopOurs(rep) : stopV0313Replicate(rep));
        before = await walIndexes(replicaDir);
        previousSecond = await newestSecond(replicaDir);
      }
    } finally {
      await app.stop().catch(() => {});
    }
    const out = await restoreBoth(dir.path, config, db, "handover");
    await assertHoldsRows(out, lastId, "restore after the handovers");
  },
});

Deno.test({
  name: "sftp: host keys from known_hosts: match, mismatch refused, unknown warned with its " +
    "fingerprint",
  ignore,
  ...NO_SANITIZERS,
  fn: async (t) => {
    await using sshd = await startSshd();
    await using dir = await tempDir();
    const db = join(dir.path, "app.db");
    await createWriterTable(db);
    await sqlite(db, "INSERT INTO t (v) VALUES (randomblob(100));");
    const config = await writeConfig(dir.path, "app", db, sshd.replicaKeys(join(sshd.dir, "r")));
    const home = join(dir.path, "home");
    await Deno.mkdir(join(home, ".ssh"), { recursive: true });
    const knownHosts = (text: string) => Deno.writeTextFile(join(home, ".ssh/known_hosts"), text);
    // Deno's cache lives under HOME unless DENO_DIR says where: keep using the warm one.
    const denoDir = Deno.env.get("DENO_DIR") ??
      join(Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME")!, ".cache"), "deno");
    const generations = () =>
      runLitestream(["generations", "-config", config, db], {
        env: { HOME: home, DENO_DIR: denoDir },
      });
    const hostPort = `127.0.0.1:${sshd.port}`;

    await t.step("no entry anywhere: it connects and warns, giving the fingerprint", async () => {
      const r = await generations();
      assertOk(r, "generations");
      // In the config's log format, as the command's own errors are.
      assert.match(r.err, /level=WARN msg="sftp host key not verified/);
      assert.ok(r.err.includes(sshd.hostFingerprint), r.err);
      assert.ok(r.err.includes(hostPort), r.err);
    });

    await t.step("a known_hosts entry that matches: no warning", async () => {
      await knownHosts(`# test\n${sshd.knownHostsLine()}\n`);
      const r = await generations();
      assertOk(r, "generations");
      assert.doesNotMatch(r.err, /host key/);
    });

    await t.step(
      "a known_hosts entry with another key: refused, naming host and both keys",
      async () => {
        const other = (await Deno.readTextFile(`${sshd.keyPath}.pub`)).split(" ").slice(0, 2).join(
          " ",
        );
        await knownHosts(`[127.0.0.1]:${sshd.port} ${other}\n`);
        const fp =
          (await runCommand("ssh-keygen", ["-l", "-f", `${sshd.keyPath}.pub`])).out.split(" ")[1];
        const r = await generations();
        assert.notEqual(r.code, 0, describeResult(r));
        assert.match(r.err, /host key verification failed/);
        for (const s of [hostPort, sshd.hostFingerprint, fp, "known_hosts:1"]) {
          assert.ok(r.err.includes(s), `stderr lacks ${s}: ${r.err}`);
        }
      },
    );
  },
});
