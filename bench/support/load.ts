/**
 * The application's write load: runs `bench/load_writer.ts` in its own process (so its CPU and
 * memory are nobody else's) and reads its report. The clock both sides compare, {@link epochMs},
 * lives here too, so that the writer imports nothing heavier.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** Milliseconds since the epoch with a fraction, comparable across processes. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** What bench/load_writer.ts reports (its one JSON line). */
export interface LoadResult {
  lastId: number;
  transactions: number;
  /** {@link epochMs} just after the last COMMIT returned. */
  lastCommitEpochMs: number;
  elapsedS: number;
  /** How far the writer fell behind its schedule at worst. */
  maxLagMs: number;
}

const LOAD_WRITER = fileURLToPath(new URL("../load_writer.ts", import.meta.url));

/**
 * Runs bench/load_writer.ts on `dbPath`: `rate` transactions per second of one `rowBytes` row
 * each for `seconds`, the last row starting with `token`. Resolves when the writer is done.
 */
export async function runLoadWriter(
  dbPath: string,
  o: { rate: number; seconds: number; rowBytes: number; token: string },
): Promise<LoadResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      LOAD_WRITER,
      dbPath,
      String(o.rate),
      String(o.seconds),
      String(o.rowBytes),
      o.token,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`load writer failed (exit ${out.code}): ${dec.decode(out.stderr)}`);
  }
  return JSON.parse(dec.decode(out.stdout).trim().split("\n").pop()!) as LoadResult;
}
