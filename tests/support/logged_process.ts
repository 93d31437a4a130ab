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
  /** Process id of the program (the shell `exec`s it), or of its wrapper when one was given. */
  readonly pid: number;
  /** Process id of the program itself: the wrapper's child when there is a wrapper. */
  programPid(): Promise<number>;
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

/** Options of {@link startLogged}. */
export interface LoggedOptions {
  logPath: string;
  /** Name for messages. */
  name: string;
  cwd?: string;
  env?: Record<string, string>;
  /**
   * A command that runs the program as its only child (GNU time, say): `[...wrapper, cmd,
   * ...args]`. Signals then go to the program, not the wrapper.
   */
  wrapper?: string[];
}

/**
 * Starts `cmd ...args` with its output appended to `logPath`. The shell `exec`s the program (or
 * its wrapper), so signals reach it directly and the program writes its log file itself (nothing
 * here pumps pipes).
 */
export function startLogged(cmd: string, args: string[], options: LoggedOptions): LoggedProcess {
  const { logPath, name } = options;
  const argv = [...options.wrapper ?? [], cmd, ...args];
  const child = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      'log="$1"; shift; exec "$0" "$@" >>"$log" 2>&1',
      argv[0],
      logPath,
      ...argv.slice(1),
    ],
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
  const programPid = options.wrapper
    ? waitFor(
      `${name} to start under ${options.wrapper[0]}`,
      async () => {
        if (exited) throw new Error(`${name} exited at once; log:\n${await log()}`);
        const children = await Deno.readTextFile(`/proc/${child.pid}/task/${child.pid}/children`)
          .catch(() => "");
        return Number(children.trim().split(/\s+/)[0]) || undefined;
      },
      10_000,
      5,
    )
    : Promise.resolve(child.pid);
  programPid.catch(() => {}); // awaited by whoever needs it; no unhandled rejection meanwhile
  /** Sends `signal` to the program itself (to the wrapper if the program never started). */
  async function signalProgram(signal: Deno.Signal): Promise<void> {
    if (exited) return;
    try {
      Deno.kill(await programPid, signal);
    } catch {
      // Never started under its wrapper, or already gone: the wrapper is what is left.
      if (!exited) child.kill(signal);
    }
  }

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
    await signalProgram("SIGTERM").catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const result = await Promise.race([status, timedOut]);
    clearTimeout(timer);
    if (result === "timeout") {
      await kill();
      throw new Error(
        `${name} did not exit within ${timeoutMs} ms of SIGTERM; log:\n${await log()}`,
      );
    }
    return { status: result, ms: performance.now() - started };
  }

  async function kill() {
    await signalProgram("SIGKILL").catch(() => {});
    return await status;
  }

  return {
    pid: child.pid,
    programPid: () => programPid,
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
