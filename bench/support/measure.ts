/**
 * Measuring child processes with GNU time (wall, user and system CPU, peak RSS): one-shot
 * commands ({@link timeCommand}) and long-running programs sampled through `/proc` while they
 * run ({@link startMeasured}).
 *
 * @module
 */

import { startLogged } from "../../tests/support/logged_process.ts";

/** GNU time, which reports a child's CPU time and peak RSS. */
export const GNU_TIME = "/usr/bin/time";

/** Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux). */
export const CLK_TCK = 100;

/** One measured run of a child process. */
export interface RunStats {
  /** Wall time in seconds, measured by this process around the child. */
  wallS: number;
  /** User CPU seconds of the child (GNU time `%U`). */
  userS: number;
  /** System CPU seconds of the child (GNU time `%S`). */
  sysS: number;
  /** Peak resident set size in MB (10^6 bytes; GNU time `%M` reports KiB). */
  maxRssMB: number;
}

/** User plus system CPU seconds. */
export function cpuS(s: RunStats): number {
  return s.userS + s.sysS;
}

/** GNU time's arguments writing `%e %U %S %M` to `timeFile`, before the measured command. */
function timeWrapper(timeFile: string): string[] {
  return [GNU_TIME, "-f", "%e %U %S %M", "-o", timeFile, "--"];
}

/** Reads what {@link timeWrapper} wrote, with the wall time measured by the caller. */
async function readTimeFile(timeFile: string, wallS: number): Promise<RunStats> {
  const text = await Deno.readTextFile(timeFile);
  const [, user, sys, rssKiB] = text.trim().split("\n").pop()!.split(" ").map(Number);
  return { wallS, userS: user, sysS: sys, maxRssMB: (rssKiB * 1024) / 1e6 };
}

/**
 * Runs `cmd args...` under GNU time and returns its statistics. Throws, quoting stderr, when the
 * command fails. Output of the command itself is captured and discarded.
 */
export async function timeCommand(
  cmd: string,
  args: string[],
  options: { cwd?: string } = {},
): Promise<RunStats> {
  const timeFile = await Deno.makeTempFile({ prefix: "bench-time-" });
  try {
    const [time, ...timeArgs] = timeWrapper(timeFile);
    const started = performance.now();
    const out = await new Deno.Command(time, {
      args: [...timeArgs, cmd, ...args],
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const wallS = (performance.now() - started) / 1000;
    if (!out.success) {
      throw new Error(
        `${cmd} ${args.join(" ")} failed (exit ${out.code}):\n` +
          new TextDecoder().decode(out.stderr),
      );
    }
    return await readTimeFile(timeFile, wallS);
  } finally {
    await Deno.remove(timeFile).catch(() => {});
  }
}

/** Throws a readable error when GNU time is missing (install it with `apt-get install time`). */
export async function requireGnuTime(): Promise<void> {
  try {
    const out = await new Deno.Command(GNU_TIME, {
      args: ["-f", "%M", "true"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.success) return;
  } catch {
    // reported below
  }
  throw new Error(`${GNU_TIME} (GNU time) is required: apt-get install -y time`);
}

/** True when two files have identical bytes (`cmp -s`). */
export async function sameBytes(a: string, b: string): Promise<boolean> {
  const out = await new Deno.Command("cmp", { args: ["-s", a, b] }).output();
  if (out.code > 1) throw new Error(`cmp ${a} ${b} failed (exit ${out.code})`);
  return out.code === 0;
}

/** A process started under GNU time by {@link startMeasured}. */
export interface MeasuredProcess {
  /** Process id of the measured program itself (GNU time's child). */
  readonly pid: number;
  /** File receiving the program's stdout and stderr. */
  readonly logPath: string;
  readonly exited: boolean;
  /** `performance.now()` when the process was spawned. */
  readonly startedAt: number;
  /** CPU seconds (user + system, all threads) used so far, from `/proc/<pid>/stat`. */
  cpuS(): Promise<number>;
  /** Current resident set size in MB (`VmRSS`). */
  rssMB(): Promise<number>;
  log(): Promise<string>;
  /**
   * Sends SIGTERM to the program (replicators then run a final sync) and returns GNU time's
   * statistics of the whole run and the exit code. SIGKILLs it and throws after `timeoutMs`.
   */
  stop(timeoutMs?: number): Promise<{ stats: RunStats; code: number }>;
  /** SIGKILLs the program if it still runs (cleanup after a failure). */
  kill(): Promise<void>;
}

/**
 * Starts `cmd args...` under GNU time, its output appended to `logPath`. Unlike
 * {@link timeCommand}, the program keeps running until {@link MeasuredProcess.stop}; meanwhile
 * its CPU time and RSS can be sampled through `/proc`.
 */
export async function startMeasured(
  cmd: string,
  args: string[],
  options: { logPath: string; cwd?: string; env?: Record<string, string> },
): Promise<MeasuredProcess> {
  const timeFile = await Deno.makeTempFile({ prefix: "bench-time-" });
  const startedAt = performance.now();
  const proc = startLogged(cmd, args, {
    logPath: options.logPath,
    name: cmd,
    cwd: options.cwd,
    env: options.env,
    wrapper: timeWrapper(timeFile),
  });
  let pid: number;
  try {
    pid = await proc.programPid();
  } catch (err) {
    await proc.kill();
    await Deno.remove(timeFile).catch(() => {});
    throw err;
  }

  const procStat = async (): Promise<number> => {
    const text = await Deno.readTextFile(`/proc/${pid}/stat`);
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // Fields 14 (utime) and 15 (stime) of proc(5); the slice starts at field 3.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  };
  const statusKiB = async (key: string): Promise<number> => {
    const text = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
    if (!m) throw new Error(`no ${key} in /proc/${pid}/status`);
    return Number(m[1]);
  };

  return {
    pid,
    logPath: options.logPath,
    get exited() {
      return proc.exited;
    },
    startedAt,
    cpuS: procStat,
    rssMB: async () => (await statusKiB("VmRSS")) * 1024 / 1e6,
    log: proc.log,
    async stop(timeoutMs = 60_000) {
      try {
        const { status } = await proc.stop(timeoutMs);
        const wallS = (performance.now() - startedAt) / 1000;
        return { stats: await readTimeFile(timeFile, wallS), code: status.code };
      } finally {
        await Deno.remove(timeFile).catch(() => {});
      }
    },
    async kill() {
      await proc.kill();
      await Deno.remove(timeFile).catch(() => {});
    },
  };
}
