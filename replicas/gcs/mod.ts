/**
 * The GCS backend: a replica in a Google Cloud Storage bucket, in Litestream
 * v0.3.13's layout `<path>/generations/<gen>/snapshots|wal/<name>`, on the
 * JSON API with `fetch` (no Google library: see README, "GCS"). Small objects
 * upload in one multipart request, larger ones in resumable chunks; downloads
 * resume with ranged reads; credentials come from Google's default chain, or
 * none with `STORAGE_EMULATOR_HOST`.
 *
 * Import dynamically, only when a GCS replica is configured. Config parsing
 * needs only `url.ts`.
 *
 * @module
 */

export { gcsClientFromConfig, type GcsConnection, GcsReplicaClient } from "./client.ts";
export {
  type CredentialEnv,
  CredentialsError,
  credentialsFromJson,
  processEnv,
  type TokenSource,
} from "./auth.ts";
export { type GcsCounters, GcsError, type GcsOperation, type GcsTuning } from "./http.ts";
export { type GcsOptions, gcsOptionsFromConfig, gcsPrefix, type GcsReplicaConfig } from "./url.ts";
