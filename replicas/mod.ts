/**
 * Builds `ReplicaClient`s from config entries or replica URLs. Backends that
 * pull in heavy dependencies (the AWS SDK) are imported only when used.
 *
 * @module
 */

import { posix } from "node:path";
import { expandPath, REPLICA_DEFAULTS, type ReplicaConfig } from "../lib/config.ts";
import { LitestreamError } from "../lib/errors.ts";
import type { ReplicaClient } from "../lib/replica_client.ts";
import { FileReplicaClient, type FileReplicaOptions } from "./file.ts";

/** A replica config for a bare URL, with v0.3.13's defaults; the name is the type. */
export function replicaConfigFromUrl(url: string): ReplicaConfig {
  const type = url.slice(0, url.indexOf(":")).toLowerCase();
  if (type !== "file" && type !== "s3") {
    throw new LitestreamError(
      `unsupported replica URL scheme ${JSON.stringify(type)}: ${url} (use file:// or s3://)`,
    );
  }
  return { name: type, type, url, skipVerify: false, ...REPLICA_DEFAULTS };
}

/** The directory of a `file://` URL, cleaned and made absolute. */
export function fileUrlPath(url: string): string {
  const rest = url.replace(/^file:\/\//i, "");
  return expandPath(posix.normalize("/" + decodeURIComponent(rest)).replace(/\/$/, "") || "/");
}

/** Creates the client for a replica config. `file` options set modes of written objects. */
export async function createReplicaClient(
  cfg: ReplicaConfig,
  file: FileReplicaOptions = {},
): Promise<ReplicaClient> {
  if (cfg.type === "file") {
    return new FileReplicaClient(cfg.url ? fileUrlPath(cfg.url) : expandPath(cfg.path!), file);
  }
  const { s3ClientFromConfig } = await import("./s3.ts");
  return s3ClientFromConfig(cfg);
}
