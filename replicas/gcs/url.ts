/**
 * GCS replica options from a config entry or a `gcs://bucket/path` URL, with
 * v0.3.13's rules (`newGCSReplicaClientFromConfig`), and the object-name
 * prefix v0.3.13 derives from the path. Free of I/O; config parsing imports
 * only this file.
 *
 * @module
 */

import { LitestreamError } from "../../lib/errors.ts";
import { cleanS3Path } from "../s3/url.ts";

/** Settings of one GCS replica. */
export interface GcsOptions {
  bucket: string;
  /** The path as configured (see `gcsPrefix` for the object-name prefix). */
  path: string;
}

/** The GCS fields of a replica config entry (`ReplicaConfig` fits). */
export interface GcsReplicaConfig {
  url?: string;
  bucket?: string;
  path?: string;
}

/**
 * Options from a config entry, as v0.3.13: `url` excludes `path` and
 * `bucket`; the URL's host is the bucket and its path (cleaned, without its
 * leading `/`) the path.
 */
export function gcsOptionsFromConfig(cfg: GcsReplicaConfig): GcsOptions {
  if (cfg.url && cfg.path) throw new LitestreamError("cannot specify url & path for gcs replica");
  if (cfg.url && cfg.bucket) {
    throw new LitestreamError("cannot specify url & bucket for gcs replica");
  }
  let { bucket = "", path = "" } = cfg;
  if (cfg.url) {
    let u: URL;
    try {
      u = new URL(cfg.url);
    } catch {
      throw new LitestreamError(`invalid gcs replica URL: ${cfg.url}`);
    }
    if (u.protocol !== "gcs:") throw new LitestreamError(`not a gcs:// URL: ${cfg.url}`);
    bucket = decodeURIComponent(u.host);
    path = cleanS3Path(decodeURIComponent(u.pathname));
  }
  if (!bucket) throw new LitestreamError("bucket required for gcs replica");
  return { bucket, path };
}

/**
 * The object-name prefix of a replica path: Go's `path.Join(path, …)` as
 * v0.3.13 builds names, so a configured `path: /db` keeps its leading `/`
 * (GCS names may begin with one, and v0.3.13 stored them so), `""` and `.`
 * are the bucket root, and `..` and doubled slashes are cleaned.
 */
export function gcsPrefix(path: string): string {
  const clean = cleanS3Path(path);
  return path.startsWith("/") ? `/${clean}` : clean;
}
