/**
 * The two implementations compared (ours and the real Litestream v0.3.13): how to run a
 * `litestream` subcommand with either, the order runs alternate in, and the replicator both
 * tools run from the same YAML config under GNU time.
 *
 * @module
 */

import { litestreamV0313, REPO_ROOT } from "../../tests/support/litestream_v0313.ts";
import { removeTree, scratchDir } from "./cache.ts";
import { type MeasuredProcess, type RunStats, startMeasured } from "./measure.ts";
import type { BenchContext } from "./report.ts";

/** The two implementations compared. */
export type Tool = "ours" | "v0.3.13";

/** Ours first; scenarios alternate the order from run to run. */
export const TOOLS: readonly Tool[] = ["ours", "v0.3.13"];

/** Run `i` (0-based) goes ours → v0.3.13 when `i` is even, the other way round when odd. */
export function toolOrder(i: number): Tool[] {
  return i % 2 === 0 ? ["ours", "v0.3.13"] : ["v0.3.13", "ours"];
}

/**
 * Runs `run` `ctx.runs` times for each tool, in {@link toolOrder}, each time in a fresh
 * directory under the scenario's scratch directory that is removed after it; returns each
 * tool's samples in run order. `after` runs once the runs ended or one failed.
 */
export async function alternateRuns<T>(
  ctx: BenchContext,
  name: string,
  run: (tool: Tool, dir: string) => Promise<T>,
  after?: () => Promise<void>,
): Promise<Record<Tool, T[]>> {
  const scratch = await scratchDir(name);
  const samples: Record<Tool, T[]> = { ours: [], "v0.3.13": [] };
  try {
    for (let i = 0; i < ctx.runs; i++) {
      ctx.log(`[${name}] run ${i + 1}/${ctx.runs}`);
      for (const tool of toolOrder(i)) {
        const dir = `${scratch}/${toolSlug(tool)}-${i}`;
        samples[tool].push(await run(tool, dir));
        await removeTree(dir);
      }
    }
  } finally {
    await after?.();
    await removeTree(scratch);
  }
  return samples;
}

/** The label of a tool in tables. */
export function toolLabel(tool: Tool): string {
  return tool === "ours" ? "ours (Deno)" : "v0.3.13";
}

/** The tool's name in file and directory names (`ours`, `v0313`). */
export function toolSlug(tool: Tool): string {
  return tool === "ours" ? "ours" : "v0313";
}

/**
 * `deno` arguments running our `main.ts` as the README documents and the release binary is
 * compiled (`deno.json`'s `compile` task): all permissions, and V8's young generation capped at
 * 1 MB per semi-space, which frees the SFTP and age libraries' per-packet buffers early.
 */
export const OURS_RUN = ["run", "-A", "--v8-flags=--max-semi-space-size=1", `${REPO_ROOT}/main.ts`];

/** `[command, args]` running `litestream SUBCOMMAND ARGS...` with `tool`. */
export async function toolCommand(tool: Tool, args: string[]): Promise<[string, string[]]> {
  return tool === "ours"
    ? [Deno.execPath(), [...OURS_RUN, ...args]]
    : [await litestreamV0313(), args];
}

/** Environment of every replicator: no colours, no config or AWS settings from the caller. */
const TOOL_ENV = {
  NO_COLOR: "1",
  LITESTREAM_CONFIG: "",
  AWS_ACCESS_KEY_ID: "",
  AWS_SECRET_ACCESS_KEY: "",
  LITESTREAM_ACCESS_KEY_ID: "",
  LITESTREAM_SECRET_ACCESS_KEY: "",
};

/** Logged by v0.3.13 when SIGTERM catches its shutdown sync about to checkpoint (harmless). */
const KNOWN_SHUTDOWN_ERROR = "release read lock: context canceled";

/**
 * True when a replicator's exit is a success: code 0, or v0.3.13's exit 1 when SIGTERM caught
 * its shutdown sync about to checkpoint (after the replica was up to date).
 */
export function cleanReplicatorExit(code: number, log: string): boolean {
  return code === 0 || (code === 1 && log.includes(KNOWN_SHUTDOWN_ERROR));
}

/**
 * Starts `litestream replicate -config CONFIG` with `tool` under GNU time, logging to
 * `CONFIG.log`.
 */
export async function startReplicator(tool: Tool, configPath: string): Promise<MeasuredProcess> {
  const [cmd, args] = await toolCommand(tool, ["replicate", "-config", configPath]);
  return startMeasured(cmd, args, { logPath: `${configPath}.log`, cwd: REPO_ROOT, env: TOOL_ENV });
}

/**
 * Stops a replicator and returns its statistics. A failure other than the accepted one of
 * {@link cleanReplicatorExit} throws with the log.
 */
export async function stopReplicator(p: MeasuredProcess): Promise<RunStats> {
  const { stats, code } = await p.stop();
  if (!cleanReplicatorExit(code, await p.log())) {
    throw new Error(`replicator exited with code ${code}; log:\n${(await p.log()).slice(-4000)}`);
  }
  return stats;
}

/** Stops a process if a run failed half-way, keeping the original error. */
export async function killQuietly(p: MeasuredProcess | undefined): Promise<void> {
  if (p && !p.exited) await p.kill().catch(() => {});
}

/**
 * Where a replicator writes: a directory, a prefix in an S3 bucket or an Azure container, or one
 * in a GCS bucket (on the server `STORAGE_EMULATOR_HOST` names, which both tools read from the
 * environment).
 */
export type ReplicaTarget =
  & (
    | { type: "file"; path: string }
    | { type: "gcs"; endpoint: string; bucket: string; path: string }
    | {
      type: "s3";
      endpoint: string;
      bucket: string;
      path: string;
      accessKeyId: string;
      secretAccessKey: string;
    }
    | {
      type: "sftp";
      /** `host:port`. */
      host: string;
      user: string;
      keyPath: string;
      /** The server's public key (ours pins it; v0.3.13 ignores the key). */
      hostKey: string;
      path: string;
    }
    | {
      type: "abs";
      /** Service URL with the account (Azurite: `http://127.0.0.1:P/devstoreaccount1`). */
      endpoint: string;
      accountName: string;
      accountKey: string;
      container: string;
      path: string;
    }
  )
  & {
    /** Encrypt every object with age (the `age` block both tools read). */
    age?: AgeKeys;
  };

/** An age key pair: the recipient encrypts, the identity decrypts. */
export interface AgeKeys {
  identity: string;
  recipient: string;
}

/**
 * The YAML config both tools read: one database, one replica (with an `age` block when the
 * target has keys). Settings not given keep their defaults (v0.3.13's: monitor and sync every
 * 1 s, checkpoints at 1,000 pages / every 1 min).
 */
export function replicateConfig(
  dbPath: string,
  replica: ReplicaTarget,
  settings: { db?: Record<string, string | number>; replica?: Record<string, string | number> } =
    {},
): string {
  const lines = ["dbs:", `  - path: ${dbPath}`];
  for (const [k, v] of Object.entries(settings.db ?? {})) lines.push(`    ${k}: ${v}`);
  lines.push("    replicas:");
  const keys: Record<string, string | number> = replicaKeys(replica);
  if (replica.age) {
    keys.age = `{ identities: [${replica.age.identity}], recipients: [${replica.age.recipient}] }`;
  }
  let first = true;
  for (const [k, v] of Object.entries({ ...keys, ...settings.replica })) {
    lines.push(`${first ? "      - " : "        "}${k}: ${v}`);
    first = false;
  }
  return lines.join("\n") + "\n";
}

/** The YAML keys of `replica`'s entry, as both tools read them. */
function replicaKeys(replica: ReplicaTarget): Record<string, string | number> {
  switch (replica.type) {
    case "file":
      return { type: "file", path: replica.path };
    case "s3":
      return {
        type: "s3",
        bucket: replica.bucket,
        path: replica.path,
        endpoint: replica.endpoint,
        region: "us-east-1",
        "force-path-style": "true",
        "access-key-id": replica.accessKeyId,
        "secret-access-key": replica.secretAccessKey,
      };
    case "sftp":
      return {
        type: "sftp",
        host: replica.host,
        user: replica.user,
        "key-path": replica.keyPath,
        "host-key": `"${replica.hostKey}"`,
        path: replica.path,
      };
    case "gcs":
      return { type: "gcs", bucket: replica.bucket, path: replica.path };
    case "abs":
      return {
        type: "abs",
        "account-name": replica.accountName,
        "account-key": replica.accountKey,
        bucket: replica.container,
        path: replica.path,
        endpoint: replica.endpoint,
      };
  }
}
