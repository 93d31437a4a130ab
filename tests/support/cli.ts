/**
 * Runs the litestream CLI (`deno run <permissions> main.ts ...`) as a user
 * would, for tests: exit code, output, and how long it took.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** Absolute path of the CLI entry point. */
export const MAIN_TS: string = fileURLToPath(new URL("../../main.ts", import.meta.url));

/** What one CLI run produced. */
export interface CliResult {
  code: number;
  /** Standard output as bytes (a restored database with `-o -`). */
  stdout: Uint8Array;
  /** Standard output as text. */
  out: string;
  /** Standard error as text. */
  err: string;
  /** Wall-clock milliseconds from spawn to exit. */
  ms: number;
}

/** Options of {@linkcode runLitestream}. */
export interface CliOptions {
  /** Deno permission flags; default `["-A"]`. */
  permissions?: string[];
  cwd?: string;
  /** Extra environment, over ours (no colours; `LITESTREAM_CONFIG` blanked unless given). */
  env?: Record<string, string>;
  /** SIGKILL after this long (reported as exit 137 with a note in `err`); default 60 s. */
  timeoutMs?: number;
}

/** Runs `deno run <permissions> main.ts ...args` to completion. */
export function runLitestream(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return runCommand(
    Deno.execPath(),
    ["run", ...(options.permissions ?? ["-A"]), MAIN_TS, ...args],
    options,
  );
}

/** Runs any command (the v0.3.13 binary, for one) with the same environment and time limit. */
export async function runCommand(
  cmd: string,
  args: string[],
  options: CliOptions = {},
): Promise<CliResult> {
  const started = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    env: { NO_COLOR: "1", LITESTREAM_CONFIG: "", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let killed = false;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const timer = setTimeout(() => {
    killed = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: out.stdout,
    out: dec.decode(out.stdout),
    err: dec.decode(out.stderr) + (killed ? `\n[killed after ${timeoutMs} ms]` : ""),
    ms: performance.now() - started,
  };
}

/** Describes a CLI result for assertion messages. */
export function describeResult(r: CliResult): string {
  return `exit ${r.code} after ${r.ms.toFixed(0)} ms\n--- stdout ---\n${
    r.out.slice(0, 3000)
  }\n--- stderr ---\n${r.err.slice(0, 3000)}`;
}
