/**
 * `litestream validate [flags] DB_PATH`: compare the primary with a restore
 * of each replica at one exact position.
 * `litestream validate [flags] REPLICA_URL`: check a replica on its own.
 *
 * @module
 */

import { join } from "node:path";
import { defaultMetaPath } from "../../core/meta.ts";
import { lockMeta } from "../../core/handles.ts";
import { LitestreamError } from "../../errors.ts";
import { syncReadStream } from "../../os/fs.ts";
import { parseFlags } from "../flags.ts";
import { Logger } from "../../log.ts";
import { isUrl } from "../config.ts";
import type { Pos } from "../../names.ts";
import { parseDuration } from "../duration.ts";
import type { ReplicaClient, SnapshotInfo } from "../../replica_client.ts";
import { buildManaged } from "../server.ts";
import { readWalHeaderBytes, scanWal } from "../../core/shadow_wal.ts";
import { openDatabase } from "../../sqlite/driver.ts";
import {
  compareAt,
  type GenerationReport,
  primaryChecksum,
  replicaReaches,
  validateReplicaObjects,
  type ValidationReport,
  waitForPosition,
} from "../../validate/position.ts";
import { validateInProcess } from "../../core/validation.ts";
import { CONFIG_FLAGS, onePositional, printRows, resolveReplicas } from "./common.ts";

/** Usage text of the command. */
export const usage = `Usage: litestream validate [arguments] DB_PATH
       litestream validate [arguments] REPLICA_URL

With DB_PATH, compares a checksum of the live database at its current WAL
position with a restore of each replica to the same position (syncing the
replicas first, or waiting for the running "litestream replicate" to).
With REPLICA_URL, checks every object of the replica and that its snapshots
and WAL agree, without the primary.

Arguments:
  -config PATH     config file (default $LITESTREAM_CONFIG or /etc/litestream.yml)
  -no-expand-env   do not expand $VARIABLES in the config file
  -replica NAME    only this replica (config mode)
  -timeout DUR     how long to wait for replicas to reach the position (default 30s)
  -json            print JSON instead of a table
`;

/** Runs the command; returns the exit code (1 on any mismatch or error). */
export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    ...CONFIG_FLAGS,
    replica: "string",
    timeout: "string",
    json: "boolean",
  });
  const arg = onePositional(positionals);
  const timeout = values.timeout === undefined ? 30_000 : parseDuration(values.timeout);
  if (timeout === undefined || timeout <= 0) {
    throw new LitestreamError(`invalid value ${JSON.stringify(values.timeout)} for flag -timeout`);
  }
  const json = Boolean(values.json);
  const quiet = new Logger({ format: "plain", level: "warn" });
  const resolved = await resolveReplicas(arg, values, quiet);

  if (isUrl(arg)) {
    const reports: GenerationReport[] = [];
    for (const { name, client } of resolved.clients) {
      reports.push(...await validateReplicaObjects(name, client));
    }
    printRows(
      ["replica", "generation", "snapshots", "segments", "records", "latest", "status"],
      reports.map((r) => [
        r.replica,
        r.generation,
        r.snapshots,
        r.segments,
        r.records || "none found",
        r.latest ?? "",
        r.ok ? "ok" : r.errors.join("; "),
      ]),
      json,
    );
    if (reports.length === 0) throw new LitestreamError(`${arg}: no generations found`);
    return reports.every((r) => r.ok) ? 0 : 1;
  }

  const db = resolved.db!;
  const metaPath = db.metaPath ?? defaultMetaPath(db.path);
  await Deno.mkdir(metaPath, { recursive: true });
  const lock = lockMeta(metaPath);
  let reports: ValidationReport[];
  if (lock) {
    // No replicator runs: replicate in this process, then compare.
    lock.close();
    const [managed] = await buildManaged([{
      ...db,
      replicas: db.replicas.filter((r) => resolved.clients.some((c) => c.name === r.name)),
    }], quiet);
    try {
      await managed.db.sync();
      if (!managed.db.pos()) throw new LitestreamError(`${db.path}: database does not exist`);
      reports = [];
      for (const replica of managed.replicas) {
        reports.push(await validateInProcess(managed.db, replica, timeout));
      }
    } finally {
      // Another replicator may be waiting for these replicas' leases.
      await Promise.all(managed.replicas.map((r) => r.release().catch(() => {})));
      await managed.db.close();
    }
  } else {
    reports = await validateAgainstRunning(db.path, metaPath, resolved.clients, timeout);
  }
  printRows(
    ["replica", "position", "primary", "replica_checksum", "status", "ms"],
    reports.map((
      r,
    ) => [
      r.replica,
      r.position,
      r.primary ?? "",
      r.restored ?? "",
      r.ok ? "ok" : r.error ?? "mismatch",
      r.ms,
    ]),
    json,
  );
  return reports.every((r) => r.ok) ? 0 : 1;
}

/**
 * Validation while another process replicates: hold a read transaction (no
 * checkpoint can pass it), checksum the database as of the WAL's committed
 * end, then wait for each replica to reach that position and compare.
 */
async function validateAgainstRunning(
  dbPath: string,
  metaPath: string,
  clients: { name: string; client: ReplicaClient }[],
  timeout: number,
): Promise<ValidationReport[]> {
  const started = performance.now();
  const generation = (await Deno.readTextFile(join(metaPath, "generation"))).trim();
  const snapshots = new Map<string, SnapshotInfo[]>();
  for (const { name, client } of clients) snapshots.set(name, await client.snapshots(generation));

  const conn = await openDatabase(dbPath, { busyTimeoutMs: 1000 });
  // Sync reads only, closed after SQLite: see readAtSync.
  const file = Deno.openSync(dbPath, { read: true });
  let pos: Pos | undefined;
  let primary = "";
  try {
    if (conn.canPersistWal) await conn.setPersistWal(true);
    const walPath = `${dbPath}-wal`;
    // A read transaction begun while the WAL is fully checkpointed reads the database file
    // alone and does not stop the replicator restarting the WAL: then read it again.
    for (let attempt = 1; !pos; attempt++) {
      await conn.exec("BEGIN");
      try {
        await conn.queryRow("SELECT COUNT(1) FROM sqlite_master");
        const wal = await scanWal(walPath);
        if (!wal) throw new LitestreamError(`${dbPath}: no WAL to validate against`);
        const index = await shadowIndexFor(metaPath, generation, wal.headerBytes, timeout);
        const at = { generation, index, offset: wal.committedEnd };
        let failure: unknown;
        primary = await primaryChecksum(() => syncReadStream(file), walPath, at.offset, dbPath)
          .catch((err) => (failure = err, ""));
        const after = readWalHeaderBytes(walPath);
        if (after && after.every((b, i) => b === wal.headerBytes[i])) {
          if (failure) throw failure;
          pos = at;
        } else if (attempt === WAL_RESTART_ATTEMPTS) {
          throw new LitestreamError(
            `${dbPath}: the WAL restarted during validation ${attempt} times; run it again`,
          );
        }
      } finally {
        await conn.exec("ROLLBACK");
      }
    }
  } finally {
    await conn.close();
    file.close();
  }
  const reports: ValidationReport[] = [];
  for (const { name, client } of clients) {
    try {
      await waitForPosition(name, pos, () => replicaReaches(client, pos), timeout);
    } catch (err) {
      reports.push({
        replica: name,
        position: "",
        ok: false,
        error: (err as Error).message,
        ms: 0,
      });
      continue;
    }
    reports.push(await compareAt(name, client, pos, primary, snapshots.get(name)!, started));
  }
  return reports;
}

/** Reads of the primary before `validate` gives up on a WAL that keeps restarting under it. */
const WAL_RESTART_ATTEMPTS = 5;

/** The index of the running replicator's shadow WAL whose header equals the real WAL's. */
async function shadowIndexFor(
  metaPath: string,
  generation: string,
  header: Uint8Array,
  timeout: number,
): Promise<number> {
  const dir = join(metaPath, "generations", generation, "wal");
  const deadline = Date.now() + timeout;
  while (true) {
    const names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).filter((n) =>
      /^[0-9a-f]{8}\.wal$/.test(n)
    ).sort();
    for (const n of names.reverse()) {
      const h = readWalHeaderBytes(join(dir, n));
      if (h && h.every((b, i) => b === header[i])) return parseInt(n, 16);
    }
    if (Date.now() > deadline) {
      throw new LitestreamError(
        `no shadow WAL in ${dir} matches the database's WAL yet (is replicate running?)`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
