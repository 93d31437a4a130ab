/**
 * The start every load scenario shares: a fresh database with the writer's table, a fresh
 * replica target, the tool's config, and the replicator running with its first snapshot
 * taken. On failure it stops what it started.
 *
 * @module
 */

import { createWriterTable } from "../../tests/support/sqlite_cli.ts";
import type { MeasuredProcess } from "./measure.ts";
import type { PreparedTarget, TargetFactory } from "./targets.ts";
import { killQuietly, replicateConfig, startReplicator, type Tool } from "./tools.ts";

/** A replicator running on a fresh database, its first snapshot on the replica. */
export interface FreshRun {
  dbPath: string;
  configPath: string;
  prepared: PreparedTarget;
  proc: MeasuredProcess;
}

/** Starts `tool` on a fresh database in `dir`, replicating to a fresh target of `factory`. */
export async function startFreshRun(
  tool: Tool,
  dir: string,
  factory: TargetFactory,
): Promise<FreshRun> {
  await Deno.mkdir(dir, { recursive: true });
  const dbPath = `${dir}/app.db`;
  await createWriterTable(dbPath);
  const prepared = await factory.setup(tool, dir);
  const configPath = `${dir}/litestream.yml`;
  await Deno.writeTextFile(configPath, replicateConfig(dbPath, prepared.target));
  let proc: MeasuredProcess | undefined;
  try {
    proc = await startReplicator(tool, configPath);
    await prepared.waitForSnapshot(proc, 60_000);
    return { dbPath, configPath, prepared, proc };
  } catch (err) {
    await killQuietly(proc);
    await prepared.cleanup();
    throw err;
  }
}
