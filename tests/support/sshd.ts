/**
 * OpenSSH's `sshd` (Debian's `openssh-server`) for tests: one instance per
 * call on a free 127.0.0.1 port, with a throwaway ed25519 host key and user
 * key, `UsePAM no`, `StrictModes no` and its own authorized_keys. Optionally
 * it runs in a private mount namespace with a small tmpfs mounted at a
 * chosen directory (a disk that fills up), seen only by sshd and its sessions.
 * Must run as root (sshd's privilege separation); `.ci/run` installs sshd.
 *
 * @module
 */

import { join } from "node:path";
import { runCommand } from "./cli.ts";
import { type LoggedProcess, startLogged } from "./logged_process.ts";
import { freePort } from "./net.ts";
import { tempDir } from "./poll.ts";
import type { YamlKeys } from "./config_yaml.ts";

/** Where Debian installs the server. */
export const SSHD = "/usr/sbin/sshd";

/** Options of {@link startSshd}. */
export interface SshdOptions {
  /** Mount a tmpfs of this size (`2m`) at `tmpfs.dir`, visible to sshd's sessions only. */
  tmpfs?: { dir: string; size: string };
  /** Further `sshd_config` lines (`Ciphers aes128-ctr`, say). */
  config?: string[];
}

/** A running test sshd. */
export interface TestSshd extends AsyncDisposable {
  readonly host: "127.0.0.1";
  readonly port: number;
  /** The login user: whoever runs the tests. */
  readonly user: string;
  /** The user's private key file (for `key-path`). */
  readonly keyPath: string;
  /** The server's public host key, `ssh-ed25519 AAAA…` (for `host-key`). */
  readonly hostKey: string;
  /** `SHA256:…` of the host key, as `ssh-keygen -l` prints it. */
  readonly hostFingerprint: string;
  /** A scratch directory for the test (holds the keys and config). */
  readonly dir: string;
  /** sshd's log. */
  log(): Promise<string>;
  /** `[127.0.0.1]:port ssh-ed25519 AAAA…`: a known_hosts line for this server. */
  knownHostsLine(): string;
  /** `sftp://user@127.0.0.1:port<path>` (`path` absolute). */
  url(path: string): string;
  /** Keys of a replica entry with `host`, `user`, `key-path` and `path` (plus `extra`). */
  replicaKeys(path: string, extra?: YamlKeys): YamlKeys;
  /** Runs a shell command on the server over `ssh` (inside sshd's mount namespace). */
  exec(command: string): Promise<string>;
  /** Kills every open SSH session (their sshd processes); the listener stays. */
  dropSessions(): Promise<number>;
  /** Stops the listener and every session. */
  stop(): Promise<void>;
  /** Starts the listener again on the same port (after `stop`). */
  start(): Promise<void>;
}

/** Whether this machine can run test sshd instances (installed, and we are root). */
export function sshdAvailable(): string | undefined {
  try {
    Deno.statSync(SSHD);
  } catch {
    return `${SSHD} not installed (apt-get install openssh-server; .ci/run does)`;
  }
  if (Deno.uid() !== 0) return "test sshd needs root (privilege separation)";
  return undefined;
}

async function keygen(path: string): Promise<void> {
  const r = await runCommand("ssh-keygen", [
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    "test",
    "-f",
    path,
  ]);
  if (r.code !== 0) throw new Error(`ssh-keygen failed: ${r.err}`);
}

/** The pids of every descendant of `pid` (from /proc), deepest last. */
async function descendants(pid: number): Promise<number[]> {
  const children = await Deno.readTextFile(`/proc/${pid}/task/${pid}/children`).catch(() => "");
  const direct = children.trim().split(/\s+/).filter((s) => s !== "").map(Number);
  const out: number[] = [];
  for (const c of direct) out.push(c, ...await descendants(c));
  return out;
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
  }
}

/** Starts an sshd; `await using` stops it and removes its keys. */
export async function startSshd(options: SshdOptions = {}): Promise<TestSshd> {
  const why = sshdAvailable();
  if (why) throw new Error(why);
  await Deno.mkdir("/run/sshd", { recursive: true });
  const scratch = await tempDir("litestream-sshd-");
  const dir = scratch.path;
  const hostKeyPath = join(dir, "host_ed25519");
  const keyPath = join(dir, "user_ed25519");
  await Promise.all([keygen(hostKeyPath), keygen(keyPath)]);
  await Deno.copyFile(`${keyPath}.pub`, join(dir, "authorized_keys"));
  const hostKey = (await Deno.readTextFile(`${hostKeyPath}.pub`)).trim().split(/\s+/)
    .slice(0, 2).join(" ");
  const fp = await runCommand("ssh-keygen", ["-l", "-f", `${hostKeyPath}.pub`]);
  const hostFingerprint = fp.out.split(/\s+/)[1];
  const user = (await runCommand("id", ["-un"])).out.trim();
  const port = freePort();
  const config = join(dir, "sshd_config");
  await Deno.writeTextFile(
    config,
    [
      // sshd keeps the first value of a keyword: the caller's lines go first to override.
      ...options.config ?? [],
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKeyPath}`,
      "PidFile none",
      "UsePAM no",
      "StrictModes no",
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "PasswordAuthentication yes",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin yes",
      "Subsystem sftp internal-sftp",
      "MaxStartups 100",
      "MaxSessions 100",
      "LogLevel VERBOSE",
      "",
    ].join("\n"),
  );
  const sshdArgs = ["-D", "-e", "-f", config, "-p", String(port)];
  let proc: LoggedProcess | undefined;
  const logPath = join(dir, "sshd.log");
  const start = async () => {
    const t = options.tmpfs;
    const after = (await Deno.readTextFile(logPath).catch(() => "")).length;
    const mountThenExec = `d="$1"; shift; mkdir -p "$d" && ` +
      `mount -t tmpfs -o size=${t?.size} tmpfs "$d" && exec "$0" "$@"`;
    proc = t
      ? startLogged(
        "unshare",
        [
          "-m",
          "--propagation",
          "private",
          "/bin/sh",
          "-c",
          mountThenExec,
          SSHD,
          t.dir,
          ...sshdArgs,
        ],
        { logPath, name: "sshd" },
      )
      : startLogged(SSHD, sshdArgs, { logPath, name: "sshd" });
    await proc.waitForLog(/Server listening on 127\.0\.0\.1/, { after });
  };
  const stop = async () => {
    if (!proc || proc.exited) return;
    const pid = await proc.programPid();
    const kids = await descendants(pid);
    await proc.kill();
    killAll(kids);
  };
  await start();
  const sshd: TestSshd = {
    host: "127.0.0.1",
    port,
    user,
    keyPath,
    hostKey,
    hostFingerprint,
    dir,
    log: () => Deno.readTextFile(logPath).catch(() => ""),
    knownHostsLine: () => `[127.0.0.1]:${port} ${hostKey}`,
    url: (path) => `sftp://${user}@127.0.0.1:${port}${path}`,
    replicaKeys: (path, extra = {}) => ({
      type: "sftp",
      host: `127.0.0.1:${port}`,
      user,
      "key-path": keyPath,
      path,
      ...extra,
    }),
    exec: async (command) => {
      const r = await runCommand("ssh", [
        "-i",
        keyPath,
        "-p",
        String(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        `${user}@127.0.0.1`,
        command,
      ]);
      if (r.code !== 0) throw new Error(`ssh ${command}: exit ${r.code}: ${r.err}`);
      return r.out;
    },
    dropSessions: async () => {
      if (!proc || proc.exited) return 0;
      const kids = await descendants(await proc.programPid());
      killAll(kids);
      return kids.length;
    },
    stop,
    start,
    async [Symbol.asyncDispose]() {
      await stop();
      await scratch[Symbol.asyncDispose]();
    },
  };
  return sshd;
}
