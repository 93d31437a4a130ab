/**
 * Test helper: a long-running program (our replicate, or the real v0.3.13)
 * whose output goes to a log file, with waiting on log lines and an orderly
 * stop (SIGTERM, then SIGKILL after a deadline).
 *
 * @module
 */

import { waitFor } from "./poll.ts";

/** A running program whose stdout and stderr go to a log file. */
export interface LoggedProcess extends AsyncDisposable {
  /** Process id of the program (the shell `exec`s it). */
  readonly pid: number;
  /** File receiving the process's combined stdout and stderr (appended across restarts). */
  readonly logPath: string;
  /** Resolves with the exit status whenever the process ends. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Whether the process has exited (for whatever reason). */
  readonly exited: boolean;
  /** Current contents of the log. */
  log(): Promise<string>;
  /** Current length of the log in characters: pass it as `after` to wait only for newer lines. */
  mark(): Promise<number>;
  /**
   * Waits until the log (from character `after` on) matches `pattern`; returns the match.
   * Throws, quoting the log, on timeout or when the process exits first.
   */
  waitForLog(
    pattern: RegExp,
    options?: { after?: number; timeoutMs?: number },
  ): Promise<RegExpExecArray>;
  /**
   * Sends SIGTERM (final sync, then exit) and resolves with the exit status and how long the
   * shutdown took. If it does not exit within `timeoutMs` it is SIGKILLed and this throws.
   */
  stop(timeoutMs?: number): Promise<{ status: Deno.CommandStatus; ms: number }>;
  /** SIGKILLs the process (a crash) and waits for it to end. */
  kill(): Promise<Deno.CommandStatus>;
}

/**
 * Starts `cmd ...args` with its output appended to `logPath`. The shell `exec`s the program, so
 * signals reach it directly and the program writes its log file itself (nothing here pumps pipes).
 */
export function startLogged(
  cmd: string,
  args: string[],
  options: { logPath: string; name: string; cwd?: string; env?: Record<string, string> },
): LoggedProcess {
  const { logPath, name } = options;
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'log="$1"; shift; exec "$0" "$@" >>"$log" 2>&1', cmd, logPath, ...args],
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();

  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const log = () => Deno.readTextFile(logPath).catch(() => "");

  async function waitForLog(
    pattern: RegExp,
    { after = 0, timeoutMs = 15_000 }: { after?: number; timeoutMs?: number } = {},
  ): Promise<RegExpExecArray> {
    const re = new RegExp(pattern.source, pattern.flags.replace("g", ""));
    try {
      return await waitFor(`log line /${pattern.source}/ in ${logPath}`, async () => {
        const m = re.exec((await log()).slice(after));
        if (m) return m;
        if (exited) throw new Error(`${name} exited (${JSON.stringify(await status)})`);
        return undefined;
      }, timeoutMs);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- log ---\n${await log()}`, { cause: err });
    }
  }

  async function stop(timeoutMs = 15_000) {
    const started = performance.now();
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch { /* exited between the check and the kill */ }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const result = await Promise.race([status, timedOut]);
    clearTimeout(timer);
    if (result === "timeout") {
      child.kill("SIGKILL");
      await status;
      throw new Error(
        `${name} did not exit within ${timeoutMs} ms of SIGTERM; log:\n${await log()}`,
      );
    }
    return { status: result, ms: performance.now() - started };
  }

  async function kill() {
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
    return await status;
  }

  return {
    pid: child.pid,
    logPath,
    status,
    get exited() {
      return exited;
    },
    log,
    mark: async () => (await log()).length,
    waitForLog,
    stop,
    kill,
    async [Symbol.asyncDispose]() {
      if (!exited) await stop().catch(() => kill());
      await status;
    },
  };
}
