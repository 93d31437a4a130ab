/**
 * The meta directory of a database (spec §3): the `generation` file naming the current
 * generation and, per generation, one shadow WAL file per index. Layout as v0.3.13's, so
 * either tool resumes the other's generation.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { equalBytes } from "../os/bytes.ts";
import { readDirOrEmpty, removeIfExists } from "../os/fs.ts";
import { hex8, isGeneration, newGeneration } from "../names.ts";
import { createShadow, openShadow, readWalHeaderBytes, type ShadowState } from "./shadow_wal.ts";

/** The default meta directory of a database: `.<name>-litestream` beside it. */
export function defaultMetaPath(dbPath: string): string {
  return join(dirname(dbPath), `.${basename(dbPath)}-litestream`);
}

/** Path of the shadow WAL file for `index` in `generation`. */
export function shadowWalPath(metaPath: string, generation: string, index: number): string {
  return join(metaPath, "generations", generation, "wal", `${hex8(index)}.wal`);
}

/**
 * The generation recorded in the meta directory with its newest shadow WAL, when that
 * shadow still matches the real WAL's header; otherwise the `generation` file is removed
 * and the reason returned. Undefined when none is recorded.
 */
export async function resumeGeneration(
  metaPath: string,
  walPath: string,
): Promise<{ generation: string; shadow: ShadowState } | string | undefined> {
  const file = join(metaPath, "generation");
  const name = (await Deno.readTextFile(file).catch(() => "")).trim();
  if (!isGeneration(name)) return undefined;
  let index = -1;
  for (const e of await readDirOrEmpty(join(metaPath, "generations", name, "wal"))) {
    const m = /^([0-9a-f]{8})\.wal$/.exec(e.name);
    if (m) index = Math.max(index, parseInt(m[1], 16));
  }
  const shadow = index < 0
    ? "no shadow wal"
    : await openShadow(shadowWalPath(metaPath, name, index), index);
  const walHeader = readWalHeaderBytes(walPath);
  const problem = typeof shadow === "string"
    ? shadow
    : !walHeader
    ? "primary wal header missing"
    : !equalBytes(walHeader, shadow.headerBytes)
    ? "wal header mismatch"
    : undefined;
  if (!problem) return { generation: name, shadow: shadow as ShadowState };
  await removeIfExists(file);
  return problem;
}

/**
 * Starts a new generation: its index-0 shadow WAL from the current real WAL (header and
 * committed frames), then the `generation` file replaced atomically to name it.
 */
export async function startGeneration(
  metaPath: string,
  walPath: string,
  modes: { fileMode: number; dirMode: number },
): Promise<{ generation: string; shadow: ShadowState; copied: number }> {
  const generation = newGeneration();
  await Deno.mkdir(join(metaPath, "generations", generation, "wal"), {
    recursive: true,
    mode: modes.dirMode,
  });
  const { shadow, copy } = await createShadow(
    walPath,
    shadowWalPath(metaPath, generation, 0),
    0,
    modes.fileMode,
  );
  const file = join(metaPath, "generation");
  await Deno.writeTextFile(`${file}.tmp`, `${generation}\n`, { mode: modes.fileMode });
  await Deno.rename(`${file}.tmp`, file);
  return { generation, shadow, copied: copy.copied };
}

/** Removes every generation's shadow directory but `keep`'s. */
export async function removeOtherGenerations(metaPath: string, keep?: string): Promise<void> {
  const dir = join(metaPath, "generations");
  for (const e of await readDirOrEmpty(dir)) {
    if (e.name !== keep) await Deno.remove(join(dir, e.name), { recursive: true }).catch(() => {});
  }
}
