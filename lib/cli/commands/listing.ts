/**
 * Shared plumbing of the listing commands (`generations`, `snapshots`,
 * `wal`): flags, argument resolution and per-replica error handling.
 *
 * @module
 */

import { type FlagSpec, parseFlags } from "../flags.ts";
import { Logger } from "../../log.ts";
import type { ReplicaClient } from "../../replica_client.ts";
import {
  CONFIG_FLAGS,
  loggerFor,
  onePositional,
  type ResolvedReplicas,
  resolveReplicas,
} from "./common.ts";

/** Flags of every listing command. */
export const LISTING_FLAGS: FlagSpec = { ...CONFIG_FLAGS, replica: "string", json: "boolean" };

/** Parses a listing command's arguments and resolves its replicas. */
export async function prepareListing(
  args: string[],
  extra: FlagSpec = {},
): Promise<{ values: Record<string, unknown>; resolved: ResolvedReplicas; log: Logger }> {
  const { values, positionals } = parseFlags(args, { ...LISTING_FLAGS, ...extra });
  const resolved = await resolveReplicas(
    onePositional(positionals),
    values,
    new Logger({ format: "plain" }),
  );
  return { values, resolved, log: loggerFor(resolved.config, { forceStderr: true }) };
}

/**
 * Runs `list` for each replica; a replica whose listing fails is logged and
 * skipped, as v0.3.13 does, and makes the command exit 1 after printing the rest.
 */
export async function perReplica<T>(
  resolved: ResolvedReplicas,
  log: Logger,
  list: (name: string, client: ReplicaClient) => Promise<T[]>,
): Promise<{ rows: T[]; exitCode: number }> {
  let exitCode = 0;
  const results = await Promise.all(resolved.clients.map(async ({ name, client }) => {
    try {
      return await list(name, client);
    } catch (err) {
      log.error("cannot list replica", { replica: name, location: client.location, error: err });
      exitCode = 1;
      return [];
    }
  }));
  return { rows: results.flat(), exitCode };
}
