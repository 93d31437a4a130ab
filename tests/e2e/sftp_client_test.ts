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
import { SftpError, SftpReplicaClient, type SftpOptions } from "../../replicas/sftp/mod.ts";
import { replicaClientContract } from "../../replicas/contract.ts";
import { bytesOf, chunked, rejectsWith, streamOf } from "../../replicas/test_streams.ts";
import { tempDir, waitFor } from "../support/poll.ts";
import { startSshd, sshdAvailable, type TestSshd } from "../support/sshd.ts";
import { startTcpFaultProxy } from "../support/tcp_fault_proxy.ts";
import { payload } from "../support/wal_source.ts";

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
