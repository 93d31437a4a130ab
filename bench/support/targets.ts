/**
 * What the replicate scenarios share: where a run's replicator writes ({@link TargetFactory}: a
 * file replica here, S3 in `bench/s3.ts`), the memory limit and default run count of those
 * scenarios, and the restore that checks a replica after a run.
 *
 * @module
 */

import { integrityCheck, sqlite } from "../../tests/support/sqlite_cli.ts";
import { REPO_ROOT } from "./cache.ts";
import type { MeasuredProcess } from "./measure.ts";
import { generateIdentity, identityToRecipient } from "age-encryption";
import {
  ageReplicaLister,
  fileReplicaLister,
  type ReplicaLister,
  waitForSnapshot,
} from "./replica_watch.ts";
import type { S3Request } from "./s3rver.ts";
import { type ReplicaTarget, type Tool, toolCommand } from "./tools.ts";

/** Peak memory allowed for our replicator, in MB (10^6 bytes), with a file replica. */
export const MAX_RSS_MB = 100;

/**
 * Peak memory allowed for our replicator with a GCS, Azure Blob Storage, SFTP or age-encrypted
 * replica, in MB (issue 12's bar), and while it uploads the S3 first snapshot.
 */
export const BACKEND_RSS_MB = 150;

/** Runs per tool of the long scenarios unless `--runs` says otherwise. */
export const DEFAULT_RUNS = 3;

/**
 * Where one run replicates to, and how to look at it. `setup` prepares the target for a run in
 * `dir`; `cleanup` releases it (an S3 server process, for example).
 */
export interface TargetFactory {
  kind: "file" | "s3" | "sftp" | "abs" | "gcs";
  /** How the time to the first snapshot is taken, when not from listings of a file replica. */
  snapshotTiming?: string;
  /** Milliseconds between listings while waiting for the replica. */
  pollMs: number;
  setup(tool: Tool, dir: string): Promise<PreparedTarget>;
}

/** A replica target ready for one run. */
export interface PreparedTarget {
  target: ReplicaTarget;
  lister: ReplicaLister;
  /** Requests the object-store server received so far (S3 and GCS only). */
  requests?: () => S3Request[];
  /**
   * Waits until the first snapshot is complete on the replica; returns when that happened
   * (`epochMs()`, as seen by the benchmark). Throws if `proc` exits first or on timeout.
   */
  waitForSnapshot(proc: MeasuredProcess, timeoutMs: number): Promise<number>;
  cleanup(): Promise<void>;
}

/** A file replica in `<dir>/replica`. */
export const FILE_TARGETS: TargetFactory = {
  kind: "file",
  pollMs: 20,
  setup(_tool, dir) {
    const path = `${dir}/replica`;
    const lister = fileReplicaLister(path);
    return Promise.resolve({
      target: { type: "file", path },
      lister,
      // Both tools write `<name>.tmp` and rename it: a listed snapshot is complete.
      waitForSnapshot: (proc, timeoutMs) => waitForSnapshot(lister, proc, timeoutMs, this.pollMs),
      cleanup: () => Promise.resolve(),
    });
  },
};

/**
 * {@link FILE_TARGETS} with every object encrypted with age (a fresh key pair per run); the
 * lister decrypts what it reads.
 */
export const AGE_FILE_TARGETS: TargetFactory = {
  ...FILE_TARGETS,
  async setup(tool, dir) {
    const identity = await generateIdentity();
    const age = { identity, recipient: await identityToRecipient(identity) };
    const plain = await FILE_TARGETS.setup(tool, dir);
    // Waiting for the snapshot only lists names: the plain lister's wait serves.
    return {
      ...plain,
      target: { ...plain.target, age },
      lister: ageReplicaLister(plain.lister, identity),
    };
  },
};

/**
 * Restores with OUR restore through the config and checks integrity and that the table holds
 * exactly rows 1..`rows`.
 */
export async function verifyRestore(
  configPath: string,
  dbPath: string,
  out: string,
  rows: number,
): Promise<void> {
  const [cmd, args] = await toolCommand("ours", [
    "restore",
    "-config",
    configPath,
    "-o",
    out,
    dbPath,
  ]);
  const res = await new Deno.Command(cmd, {
    args,
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!res.success) {
    throw new Error(`restore of ${dbPath} failed: ${new TextDecoder().decode(res.stderr)}`);
  }
  const integrity = await integrityCheck(out);
  const got = await sqlite(out, "SELECT count(*) || '|' || coalesce(max(id), 0) FROM t;");
  await Deno.remove(out);
  if (integrity !== "ok" || got !== `${rows}|${rows}`) {
    throw new Error(`restore of ${dbPath}: integrity ${integrity}, rows|max ${got}, want ${rows}`);
  }
}
