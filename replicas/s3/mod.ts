/**
 * The S3 backend: a replica in an Amazon S3 bucket or any S3-compatible
 * store (MinIO, R2, B2, Tigris, …), in Litestream v0.3.13's key layout
 * `<path>/generations/<gen>/snapshots|wal/<name>`. Uploads go multipart past
 * one part, downloads resume with range GETs, every request is counted.
 *
 * Importing this module loads the AWS SDK (about 30 MB): import it
 * dynamically, only when an S3 replica is configured. Config parsing needs
 * only `url.ts`, which is SDK-free.
 *
 * @module
 */

export { s3ClientFromConfig, S3ReplicaClient } from "./client.ts";
export { S3Error, type S3Operation } from "./errors.ts";
export { type S3Counters, type S3Tuning } from "./sdk.ts";
export {
  cleanS3Path,
  parseS3Url,
  type S3Options,
  s3OptionsFromConfig,
  type S3ReplicaConfig,
  type S3UrlOptions,
} from "./url.ts";
