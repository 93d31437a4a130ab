/**
 * Builds `ReplicaClient`s from config entries or replica URLs. Every backend but `file` pulls in
 * npm packages or much code, so each is imported only when used ({@linkcode importLazily}), as is
 * the age decorator (a replica with an `age` block).
 *
 * @module
 */

import { posix } from "node:path";
import { expandPath, type ReplicaConfig } from "./config.ts";
import type { ReplicaClient } from "../replica_client.ts";
import type { Logger } from "../log.ts";
import { FileReplicaClient, type FileReplicaOptions } from "../../replicas/file/client.ts";
import { AbsConfigError } from "../../replicas/abs/url.ts";
import { LitestreamError } from "../errors.ts";
import { importLazily } from "../os/lazy_import.ts";

/** The directory of a `file://` URL, cleaned and made absolute. */
export function fileUrlPath(url: string): string {
  const rest = url.replace(/^file:\/\//i, "");
  return expandPath(posix.normalize("/" + decodeURIComponent(rest)).replace(/\/$/, "") || "/");
}

/**
 * Creates the client for a replica config, wrapped in the age decorator when the config has an
 * `age` block. `file` options set modes of written objects; `log` gets a backend's warnings (an
 * SFTP host key that nothing vouches for).
 */
export async function replicaClientFromConfig(
  cfg: ReplicaConfig,
  file: FileReplicaOptions = {},
  log?: Logger,
): Promise<ReplicaClient> {
  const client = await backendClient(cfg, file, log);
  if (!cfg.age) return client;
  const { ageClientFromConfig } = await importLazily<typeof import("../../replicas/age/mod.ts")>(
    new URL("../../replicas/age/mod.ts", import.meta.url),
  );
  return ageClientFromConfig(client, cfg.age);
}

/** The storage backend's own client for a replica config. */
async function backendClient(
  cfg: ReplicaConfig,
  file: FileReplicaOptions,
  log?: Logger,
): Promise<ReplicaClient> {
  if (cfg.type === "file") {
    return new FileReplicaClient(cfg.url ? fileUrlPath(cfg.url) : expandPath(cfg.path!), file);
  }
  if (cfg.type === "sftp") {
    const { sftpClientFromConfig } = await importLazily<
      typeof import("../../replicas/sftp/mod.ts")
    >(new URL("../../replicas/sftp/mod.ts", import.meta.url));
    return sftpClientFromConfig({ ...cfg, keyPath: cfg.keyPath && expandPath(cfg.keyPath) }, log);
  }
  if (cfg.type === "abs") {
    const { absClientFromConfig } = await importLazily<
      typeof import("../../replicas/abs/client.ts")
    >(new URL("../../replicas/abs/client.ts", import.meta.url));
    try {
      return absClientFromConfig(cfg);
    } catch (err) {
      // A bare abs:// URL has no config file to name; say which setting is missing.
      if (err instanceof AbsConfigError) throw new LitestreamError(`${cfg.url}: ${err.message}`);
      throw err;
    }
  }
  if (cfg.type === "gcs") {
    const { gcsClientFromConfig } = await importLazily<
      typeof import("../../replicas/gcs/client.ts")
    >(new URL("../../replicas/gcs/client.ts", import.meta.url));
    return gcsClientFromConfig(cfg);
  }
  const { s3ClientFromConfig } = await importLazily<typeof import("../../replicas/s3/client.ts")>(
    new URL("../../replicas/s3/client.ts", import.meta.url),
  );
  return s3ClientFromConfig(cfg);
}
