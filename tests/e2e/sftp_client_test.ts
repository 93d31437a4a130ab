/**
 * The SFTP replica client against OpenSSH's real sshd: the `ReplicaClient`
 * contract shared with every backend (through a TCP proxy, so downloads can be
 * broken mid-body), then what is SFTP's own: host keys (pinned, known_hosts,
 * unknown), logins refused, broken connections mid-upload, idle close.
 */

import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { Logger } from "../../lib/log.ts";
import { newGeneration } from "../../lib/names.ts";
import { readDirOrEmpty } from "../../lib/os/fs.ts";
import { SftpError, type SftpOptions, SftpReplicaClient } from "../../replicas/sftp/mod.ts";
import { oneShotCiphersFinalised } from "../../replicas/sftp/one_shot_chacha20.ts";
import { CONNECTIONS_PER_LOGIN, HANDSHAKES_PER_HOST } from "../../replicas/sftp/session.ts";
import { replicaClientContract } from "../../replicas/contract.ts";
import { bytesOf, chunked, rejectsWith, streamOf } from "../../replicas/test_streams.ts";
import { tempDir, waitFor } from "../support/poll.ts";
import { sshdAvailable, startSshd, type TestSshd } from "../support/sshd.ts";
import { startTcpFaultProxy } from "../support/tcp_fault_proxy.ts";
import { payload } from "../support/wal_source.ts";
import { REPO_ROOT } from "../support/npm_cache.ts";

const NO_SANITIZERS = { sanitizeOps: false, sanitizeResources: false, sanitizeExit: false };
const ignore = sshdAvailable() !== undefined;
if (ignore) console.warn(`sftp tests skipped: ${sshdAvailable()}`);

/** Paths of every file under `dir`, relative to `root`. */
async function filesUnder(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readDirOrEmpty(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) out.push(...await filesUnder(root, path));
    else out.push(relative(root, path));
  }
  return out.sort();
}

/** Log lines captured from a client's logger. */
function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: new Logger({ level: "debug", write: (l) => lines.push(l) }), lines };
}

/** Options for a client of `sshd` (or of a proxy in front of it at `port`) rooted at `path`. */
function options(sshd: TestSshd, path: string, extra: Partial<SftpOptions> = {}): SftpOptions {
  return {
    host: "127.0.0.1",
    port: sshd.port,
    user: sshd.user,
    keyPath: sshd.keyPath,
    hostKey: sshd.hostKey,
    path,
    ...extra,
  };
}

Deno.test({
  name: "sftp client contract (real sshd, through a TCP proxy)",
  ignore,
  ...NO_SANITIZERS,
  fn: async (t) => {
    await using sshd = await startSshd();
    await using proxy = startTcpFaultProxy(sshd.port);
    const root = join(sshd.dir, "replicas");
    const clients: SftpReplicaClient[] = [];
    try {
      await replicaClientContract(t, {
        client: (name) => {
          const c = new SftpReplicaClient(
            options(sshd, join(root, name), { port: proxy.port }),
            capture().log,
          );
          clients.push(c);
          return c;
        },
        keys: (c) => filesUnder(join(root, c.location.split(root + "/")[1])),
        putRaw: async (c, key, data) => {
          const path = join(root, c.location.split(root + "/")[1], key);
          await Deno.mkdir(dirname(path), { recursive: true });
          await Deno.writeFile(path, data);
        },
        ranges: {
          breakReads: (times, afterBytes) => proxy.cut("down", times, afterBytes),
          check: (c) => assert.ok(c.session.connects >= 2, `connects: ${c.session.connects}`),
        },
      });
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  },
});

Deno.test({
  name: "sftp client: host keys, refused logins, dropped connections, idle close",
  ignore,
  ...NO_SANITIZERS,
  fn: async (t) => {
    await using sshd = await startSshd();
    await using proxy = startTcpFaultProxy(sshd.port);
    const root = join(sshd.dir, "client");
    const clients: SftpReplicaClient[] = [];
    const client = (extra: Partial<SftpOptions> = {}, log = capture().log) => {
      const c = new SftpReplicaClient(options(sshd, root, extra), log, { idleMs: 300 });
      clients.push(c);
      return c;
    };
    try {
      await t.step(
        "a pinned host-key that differs is refused, naming host and both keys",
        async () => {
          const other = (await Deno.readTextFile(`${sshd.keyPath}.pub`)).trim();
          const err = await rejectsWith(
            () => client({ hostKey: other }).generations(),
            SftpError,
            "host key verification failed",
          );
          assert.match(
            err.message,
            new RegExp(`^sftp://${sshd.user}@127\\.0\\.0\\.1:${sshd.port}/`),
          );
          assert.ok(
            err.message.includes(
              `127.0.0.1:${sshd.port} presented ssh-ed25519 ${sshd.hostFingerprint}`,
            ),
          );
          assert.ok(err.message.includes("host-key expects ssh-ed25519 SHA256:"), err.message);
        },
      );

      await t.step(
        "an unknown host key is accepted once, with one warning per process giving its fingerprint",
        async () => {
          const { log, lines } = capture();
          const c = client({ hostKey: undefined }, log);
          await c.generations();
          await c.close();
          await c.generations(); // A second connection: no second warning.
          assert.equal(c.session.connects, 2);
          // Nor from another replica on that host (the many databases of a dir entry).
          const other = client({ hostKey: undefined }, log);
          await other.generations();
          await other.close();
          const warnings = lines.filter((l) => l.includes("host key not verified"));
          assert.equal(warnings.length, 1, lines.join("\n"));
          assert.ok(warnings[0].includes(sshd.hostFingerprint), warnings[0]);
          assert.ok(warnings[0].includes(sshd.hostKey), warnings[0]);
        },
      );

      await t.step(
        "a wrong key or password is refused, naming the replica and what to check",
        async () => {
          await using keys = await tempDir();
          const wrongKey = join(keys.path, "wrong");
          await new Deno.Command("ssh-keygen", {
            args: ["-q", "-t", "ed25519", "-N", "", "-f", wrongKey],
          }).output();
          for (
            const extra of [
              { keyPath: wrongKey },
              { keyPath: undefined, password: "not-the-password" },
            ]
          ) {
            const err = await rejectsWith(
              () => client(extra).generations(),
              SftpError,
              "login failed",
            );
            assert.ok(
              err.message.startsWith(`sftp://${sshd.user}@127.0.0.1:${sshd.port}/`),
              err.message,
            );
            assert.match(err.message, /refused user .* check user, password and key-path/);
            assert.equal(err.transient, false);
          }
          await rejectsWith(
            () => client({ keyPath: join(keys.path, "missing") }).generations(),
            SftpError,
            "cannot read key-path",
          );
        },
      );

      await t.step(
        "a refused login is tried once for every replica that shares it, then not for a minute",
        async () => {
          // A dir entry's databases share a login; a wrong password must not cost one failed
          // login per database or connection, nor one per retry (fail2ban bans after five).
          const extra = { keyPath: undefined, password: "also-not-the-password" };
          const sharing = Array.from({ length: 3 * CONNECTIONS_PER_LOGIN }, () => client(extra));
          const failed = async () =>
            (await sshd.log()).match(/Failed password for .* from 127\.0\.0\.1/g)?.length ?? 0;
          const before = await failed();
          for (let round = 0; round < 2; round++) {
            const errors = await Promise.all(
              sharing.map((c) => rejectsWith(() => c.generations(), SftpError, "login failed")),
            );
            for (const err of errors) assert.match(err.message, /refused user .* the password/);
          }
          await waitFor("sshd to log the failed login", async () => await failed() > before);
          assert.equal(await failed(), before + 1, "one failed login for all of them");
        },
      );

      await t.step(
        "a connection dropped mid-upload leaves no object under its final name",
        async () => {
          const c = client({ port: proxy.port });
          const gen = newGeneration();
          const data = payload(3, 2 * 1024 * 1024);
          await c.generations(); // Connected: the cut falls inside the upload.
          proxy.cut("up", 1, 500_000);
          const err = await rejectsWith(() => c.writeSnapshot(gen, 0, chunked(data)), SftpError);
          assert.ok(
            err.message.includes(c.describe("snapshot", { generation: gen, index: 0, offset: 0 })),
            err.message,
          );
          assert.deepEqual(await c.snapshots(gen), []);
          // The next write reconnects, replaces the temporary file and leaves nothing else.
          await c.writeSnapshot(gen, 0, chunked(data));
          assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0)), data);
          assert.deepEqual([c.counters.requests.PUT, c.counters.bytes.PUT], [1, data.length]);
          assert.equal(c.counters.bytes.GET, data.length);
          assert.deepEqual(await filesUnder(join(root, "generations", gen)), [
            "snapshots/00000000.snapshot.lz4",
          ]);
        },
      );

      await t.step(
        "listings retry on a fresh connection when the old one was dropped",
        async () => {
          const c = client({ port: proxy.port });
          await c.writeWalSegment(
            { generation: newGeneration(), index: 0, offset: 0 },
            streamOf("w"),
          );
          const before = c.session.connects;
          assert.ok(proxy.dropAll() >= 1);
          assert.ok((await c.generations()).length >= 1);
          assert.equal(c.session.connects, before + 1);
        },
      );

      await t.step(
        "chacha20-poly1305 is negotiated and its one-shot ciphers are finalised; AES-GCM still works",
        async () => {
          const { log, lines } = capture();
          const c = client({}, log);
          const before = oneShotCiphersFinalised();
          const gen = newGeneration();
          const data = payload(5, 1024 * 1024);
          await c.writeSnapshot(gen, 0, chunked(data));
          assert.deepEqual(await bytesOf(await c.readSnapshot(gen, 0)), data);
          const connected = lines.filter((l) => l.includes("sftp connected"));
          assert.equal(connected.length, 1, lines.join("\n"));
          assert.ok(connected[0].includes("chacha20-poly1305@openssh.com"), connected[0]);
          // ssh2 took the wrapped constructors: three ciphers per packet each way, all finalised.
          assert.ok(oneShotCiphersFinalised() - before >= 2 * 3 * (data.length / 32768));

          await using gcmOnly = await startSshd({ config: ["Ciphers aes128-gcm@openssh.com"] });
          const gcm = capture();
          const g = new SftpReplicaClient(options(gcmOnly, root), gcm.log);
          clients.push(g);
          await g.writeSnapshot(gen, 0, chunked(data));
          assert.deepEqual(await bytesOf(await g.readSnapshot(gen, 0)), data);
          assert.ok(
            gcm.lines.some((l) => l.includes("aes128-gcm@openssh.com")),
            gcm.lines.join("\n"),
          );
        },
      );

      await t.step("a process that loaded ssh2 before the wrappers refuses chacha20", async () => {
        // ssh2 evaluated first: it holds node:crypto's own constructors, which would leak.
        const script = join(root, "early_ssh2.ts");
        await Deno.writeTextFile(
          script,
          [
            `import "ssh2";`,
            `import { SftpReplicaClient } from "${
              import.meta.resolve("../../replicas/sftp/mod.ts")
            }";`,
            `const c = new SftpReplicaClient(${JSON.stringify(options(sshd, root))});`,
            `await c.generations().then(() => console.log("connected"), (e) => console.log(e.message));`,
            `await c.close();`,
          ].join("\n"),
        );
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--config", join(REPO_ROOT, "deno.json"), script],
          stderr: "inherit",
        }).output();
        const text = new TextDecoder().decode(out.stdout);
        assert.ok(text.includes("ssh2 was loaded before"), text);
      });

      await t.step(
        "a lease read after a listing is two LSTATs in one round trip, and sees every change",
        async () => {
          const dir = join(sshd.dir, "lease-check");
          const make = () => {
            const c = new SftpReplicaClient(options(sshd, dir), capture().log);
            clients.push(c);
            return c;
          };
          const [a, b] = [make(), make()];
          const text = (s: string) => new TextEncoder().encode(s);
          const read = async (c: SftpReplicaClient) => {
            const l = await c.readLease();
            return l && [new TextDecoder().decode(l.data), l.version];
          };
          const v1 = await a.writeLease(text("one"), undefined);
          // Count what a's reads ask the server, on its open channel.
          const sent = { lstat: 0, opendir: 0, open: 0 };
          type Channel = Record<string, (...args: unknown[]) => void>;
          const sftp = await a.session.use((s) => Promise.resolve(s as unknown as Channel));
          for (const op of Object.keys(sent) as (keyof typeof sent)[]) {
            const real = sftp[op];
            sftp[op] = (...args) => {
              sent[op]++;
              real.apply(sftp, args);
            };
          }
          assert.deepEqual(await read(a), ["one", v1]);
          assert.deepEqual(sent, { lstat: 2, opendir: 0, open: 0 }, "its own write, checked");

          const v2 = await b.writeLease(text("two"), v1);
          assert.deepEqual(await read(a), ["two", v2], "another writer's next file");
          assert.deepEqual(sent, { lstat: 4, opendir: 1, open: 1 }, "listed and read");
          assert.deepEqual(await read(a), ["two", v2]);
          assert.deepEqual(sent, { lstat: 6, opendir: 1, open: 1 }, "then checked again");

          // The lease directory removed, and written again from the first number by another
          // writer: same number as a last saw, other content.
          await Deno.remove(join(dir, "lease"), { recursive: true });
          const again = await b.writeLease(
            text("three!"),
            await b.writeLease(text("x"), undefined),
          );
          assert.equal(again, v2);
          assert.deepEqual(await read(a), ["three!", v2], "same number, other size");
          await Deno.remove(join(dir, "lease"), { recursive: true });
          assert.equal(await a.readLease(), undefined, "removed");
        },
      );

      await t.step(
        "a replica directory the server cannot create fails the write, naming it, instead of looping",
        async () => {
          // Under /proc, mkdir says the parent is missing while the parent exists: making the
          // parents again and again never ends.
          const path = "/proc/litestream-no-such-replica";
          let settled: unknown;
          client({ path }).writeSnapshot(newGeneration(), 0, streamOf("snap")).then(
            () => settled = "written",
            (err) => settled = err,
          );
          const err = await waitFor("the write to settle", () => settled, 15_000);
          assert.ok(err instanceof SftpError, `expected SftpError, got ${err}`);
          assert.match(
            err.message,
            new RegExp(`${path}/generations/.*: mkdir failed: No such file`),
          );
        },
      );

      await t.step(
        "a server that never answers fails once after the connect timeout, not three times",
        async () => {
          using silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
          const accepted: Deno.Conn[] = [];
          (async () => {
            for await (const c of silent) accepted.push(c);
          })().catch(() => {});
          const { log, lines } = capture();
          const c = new SftpReplicaClient(
            options(sshd, root, { port: silent.addr.port }),
            log,
            { connectTimeoutMs: 300 },
          );
          clients.push(c);
          await rejectsWith(() => c.generations(), SftpError, "Timed out while waiting");
          assert.equal(c.session.connects, 1);
          assert.equal(accepted.length, 1);
          for (const a of accepted) a.close();

          // A connection that breaks is retried, and each retry is logged.
          await using cut = startTcpFaultProxy(sshd.port);
          const r = new SftpReplicaClient(options(sshd, root, { port: cut.port }), log);
          clients.push(r);
          cut.cut("down", 1, 3000);
          await r.generations();
          assert.equal(r.session.connects, 2);
          assert.equal(
            lines.filter((l) => l.includes("sftp connection failed; retrying")).length,
            1,
          );
        },
      );

      await t.step("an idle client closes its connection and reopens it when used", async () => {
        const c = client();
        await c.generations();
        assert.ok(c.session.connected);
        await waitFor("the idle connection to close", () => !c.session.connected, 10_000);
        await c.generations();
        assert.equal(c.session.connects, 2);
      });
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  },
});

Deno.test({
  name: "sftp: the replicas of one login share its few connections; many logins of one host " +
    "connect at once without sshd dropping any (MaxStartups)",
  ignore,
  ...NO_SANITIZERS,
  fn: async () => {
    // This sshd refuses every unauthenticated connection beyond our handshake limit.
    const limit = HANDSHAKES_PER_HOST;
    await using sshd = await startSshd({ config: [`MaxStartups ${limit}:100:${limit}`] });
    const logins = async () => (await sshd.log()).match(/Accepted publickey/g)?.length ?? 0;
    // The databases of a dir entry: one login.
    const dbs = Array.from(
      { length: 16 * limit },
      (_, i) =>
        new SftpReplicaClient(options(sshd, join(sshd.dir, "many", `db${i}`)), capture().log),
    );
    // Replicas with a login each (here: a copy of the key apiece).
    const keys = await Promise.all(Array.from({ length: 2 * limit }, async (_, i) => {
      const path = join(sshd.dir, `key${i}`);
      await Deno.copyFile(sshd.keyPath, path);
      return path;
    }));
    const own = keys.map((keyPath, i) =>
      new SftpReplicaClient(
        options(sshd, join(sshd.dir, "own", `db${i}`), { keyPath }),
        capture().log,
      )
    );
    const clients = [...dbs, ...own];
    // One login is one store for the replica loop's retries; another key is another store.
    assert.equal(dbs[0].store, dbs[1].store);
    assert.notEqual(dbs[0].store, own[0].store);
    try {
      const listed = await Promise.all(clients.map((c) => c.generations()));
      assert.deepEqual(listed, clients.map(() => []));
      await waitFor(
        "sshd to log every login",
        async () => await logins() >= CONNECTIONS_PER_LOGIN + own.length,
        10_000,
      );
      assert.equal(await logins(), CONNECTIONS_PER_LOGIN + own.length);
      const connects = clients.reduce((n, c) => n + c.session.connects, 0);
      assert.equal(connects, clients.length, "no connection was dropped and made again");
      assert.doesNotMatch(await sshd.log(), /MaxStartups throttling|drop connection/);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  },
});

Deno.test({
  name:
    "sftp: a replica that closes leaves a shared connection to the others; the last one closes it",
  ignore,
  ...NO_SANITIZERS,
  fn: async () => {
    await using sshd = await startSshd();
    // One more replica than the login has connections: the first and the last share one.
    const clients = Array.from(
      { length: CONNECTIONS_PER_LOGIN + 1 },
      (_, i) =>
        new SftpReplicaClient(
          options(sshd, join(sshd.dir, "shared", `db${i}`)),
          capture().log,
          { idleMs: 60_000 },
        ),
    );
    const [first, last] = [clients[0], clients.at(-1)!];
    try {
      await Promise.all(clients.map((c) => c.generations()));
      assert.equal(last.session.connects, 1);
      await first.close();
      assert.ok(last.session.connected, "still open for the replica that shares it");
      assert.deepEqual(await last.generations(), []);
      assert.equal(last.session.connects, 1, "no new connection");
      await last.close();
      assert.ok(!last.session.connected, "closed by the last replica using it");
      assert.ok(clients[1].session.connected, "the others' connections are their own");
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  },
});
