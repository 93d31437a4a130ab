/**
 * The real Litestream v0.3.13 binary, for interoperability tests.
 *
 * The binary comes from the npm package `@flydotio/litestream-linux-x64@1.0.1` and is installed
 * once into the git-ignored cache `<repo>/.cache/litestream-v0.3.13/` (see `npm_cache.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { type LoggedProcess, startLogged } from "./logged_process.ts";
import { integrityCheck } from "./sqlite_cli.ts";
import { installCached } from "./npm_cache.ts";

export { REPO_ROOT } from "./npm_cache.ts";

const PACKAGE = "@flydotio/litestream-linux-x64@1.0.1";
const EXPECTED_VERSION = "v0.3.13";
const BIN_IN_PREFIX = "node_modules/@flydotio/litestream-linux-x64/litestream";

/** Memoised per process so concurrent callers in one test file share one install. */
let binaryPromise: Promise<string> | undefined;

/**
 * Returns the absolute path of the Litestream v0.3.13 binary, installing it on first use.
 * Safe to call concurrently from several processes. Throws if the binary does not report v0.3.13.
 */
export function litestreamV0313(): Promise<string> {
  if (!binaryPromise) {
    const attempt = locateOrInstall();
    binaryPromise = attempt;
    // A failed install should not poison later calls in the same process.
    attempt.catch(() => {
      if (binaryPromise === attempt) binaryPromise = undefined;
    });
  }
  return binaryPromise;
}

async function locateOrInstall(): Promise<string> {
  const prefix = await installCached({
    spec: PACKAGE,
    dir: "litestream-v0.3.13",
    works: (prefix) => reportsExpectedVersion(`${prefix}/${BIN_IN_PREFIX}`),
  });
  return `${prefix}/${BIN_IN_PREFIX}`;
}

async function reportsExpectedVersion(bin: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(bin, { args: ["version"], stdout: "piped", stderr: "null" })
      .output();
    return out.success && new TextDecoder().decode(out.stdout).trim() === EXPECTED_VERSION;
  } catch {
    return false; // missing or not executable
  }
}

/** Result of a one-shot v0.3.13 command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `litestream restore ARGS...` with v0.3.13 and returns its exit code and output.
 * Never throws for a non-zero exit: callers assert on `code`.
 */
export async function v0313Restore(
  args: string[],
  options: { cwd?: string } = {},
): Promise<CommandResult> {
  const bin = await litestreamV0313();
  const out = await new Deno.Command(bin, {
    args: ["restore", ...args],
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * v0.3.13's `restore -o <dir>/out.db ...flags url` as the reference for a comparison: asserts it
 * succeeded and that its output passes the integrity check (so a later mismatch is about our
 * output), and returns the output path.
 */
export async function restoreWithV0313(dir: string, flags: string[], url: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const out = `${dir}/out.db`;
  const res = await v0313Restore(["-o", out, ...flags, url]);
  assert.equal(
    res.code,
    0,
    `v0.3.13 restore ${flags.join(" ")} failed (the reference itself is wrong): ${res.stderr}`,
  );
  assert.equal(
    await integrityCheck(out),
    "ok",
    `v0.3.13's own restore ${flags.join(" ")} is corrupt`,
  );
  return out;
}

/**
 * A running `litestream replicate` (v0.3.13). Its `stop()` resolves with a non-zero status rather
 * than throwing: v0.3.13 exits 1 when its shutdown sync decides to checkpoint (`checkpoint:
 * mode=PASSIVE err=release read lock: context canceled`), after the replica is already up to
 * date, so callers decide what is acceptable.
 */
export type V0313Replicate = LoggedProcess;

/**
 * Starts `litestream replicate -config CONFIG` (v0.3.13) with extra environment `env`. Output
 * goes to `logPath` (default: the config path plus `.log`), appended so restarts keep earlier
 * output.
 */
export async function startV0313Replicate(
  configPath: string,
  options: { logPath?: string; cwd?: string; env?: Record<string, string> } = {},
): Promise<V0313Replicate> {
  return startLogged(await litestreamV0313(), ["replicate", "-config", configPath], {
    logPath: options.logPath ?? `${configPath}.log`,
    cwd: options.cwd,
    env: options.env,
    name: "litestream v0.3.13",
  });
}

/**
 * v0.3.13's own failures at SIGTERM (exit 1), after its replica is up to date: its shutdown sync
 * caught about to checkpoint, or racing its replica loop for the same segment's temporary file
 * (one of the two writes renames it away from the other).
 */
const V0313_SHUTDOWN_ERRORS = [
  "release read lock: context canceled",
  // File replicas: "stat ….wal.lz4.tmp: no such file or directory"; SFTP: its own wording.
  /client write: .*\.tmp/,
];

/** True when a v0.3.13 log line is one of its known shutdown errors. */
export function isV0313ShutdownError(line: string): boolean {
  return V0313_SHUTDOWN_ERRORS.some((e) => typeof e === "string" ? line.includes(e) : e.test(line));
}

/**
 * Stops a v0.3.13 replicate (SIGTERM) and judges how it ended. Accepted: exit 0; exit 1 with one
 * of its known shutdown errors; and a hang in its shutdown sync, which races its own replica
 * loop and sometimes never returns (seen over S3, GCS and SFTP): it is killed after `timeoutMs`
 * and said so. Callers that need its last commits wait until the replica has them before
 * stopping it. Anything else throws with its log.
 */
export async function stopV0313Replicate(
  rep: V0313Replicate,
  timeoutMs = 15_000,
): Promise<"exited" | "hung"> {
  try {
    const { status } = await rep.stop(timeoutMs);
    const log = await rep.log();
    assert.ok(
      status.success || (status.code === 1 && log.split("\n").some(isV0313ShutdownError)),
      `v0.3.13 exited ${status.code}; log:\n${log}`,
    );
    return "exited";
  } catch (err) {
    if (!rep.exited || !/did not exit within/.test((err as Error).message)) throw err;
    console.log("  v0.3.13 hung in its shutdown sync and was killed");
    return "hung";
  }
}
