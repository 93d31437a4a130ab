/**
 * The Azure Blob Storage backend (`abs`): a replica in a container of an
 * Azure storage account (or Azurite, or a sovereign cloud through
 * `endpoint`), in Litestream v0.3.13's blob layout
 * `<path>/generations/<gen>/snapshots|wal/<name>`. Uploads go as staged
 * blocks past one block, downloads resume with ranged reads, the SDK retries
 * each request with exponential backoff.
 *
 * Importing this module loads the Azure SDK: import it dynamically, only when
 * an `abs` replica is configured. Config parsing needs only `url.ts`, which
 * is SDK-free.
 *
 * @module
 */

export { absClientFromConfig, type AbsCounters, AbsReplicaClient } from "./client.ts";
export { AbsError, type AbsOperation } from "./errors.ts";
export { type AbsTuning } from "./sdk.ts";
export {
  AbsConfigError,
  type AbsOptions,
  absOptionsFromConfig,
  type AbsReplicaConfig,
  parseAbsUrl,
} from "./url.ts";
