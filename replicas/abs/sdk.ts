/**
 * Set-up of the Azure SDK's container client for one replica: shared-key
 * credentials, the SDK's own retries (exponential backoff) and timeouts.
 * Loads the SDK: import only when an `abs` replica is used.
 *
 * @module
 */

import {
  ContainerClient,
  newPipeline,
  StorageRetryPolicyType,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import os from "node:os";
import { VERSION } from "../../lib/version.ts";
import type { AbsOptions } from "./url.ts";

/** Transfer and resilience knobs; the defaults suit production, tests shrink them. */
export interface AbsTuning {
  /** Block size in bytes; bodies up to this size go as one Put Blob. Default 8 MiB. */
  blockSize?: number;
  /** Blocks staged concurrently; memory use is about (queueSize + 1) × blockSize. Default 2. */
  queueSize?: number;
  /** Attempts per request (exponential backoff between them). Default 5. */
  maxTries?: number;
  /** First retry delay; it doubles per attempt up to `maxRetryDelayMs`. Default 200 ms. */
  retryDelayMs?: number;
  /** Longest retry delay. Default 10 s. */
  maxRetryDelayMs?: number;
  /**
   * Time limit of one attempt (an upload's body included; a read's until its headers, and a
   * read's body that delivers nothing for this long is resumed). Default 5 min.
   */
  tryTimeoutMs?: number;
  /** Ranged re-reads of a download that broke, without progress in between. Default 5. */
  maxResumes?: number;
  /** Bytes per ranged part when a snapshot is read in parallel. Default 4 MiB (as S3). */
  readPartSize?: number;
}

/** The production values of every `AbsTuning` knob. */
export const TUNING_DEFAULTS: Required<AbsTuning> = {
  blockSize: 8 * 1024 * 1024,
  queueSize: 2,
  maxTries: 5,
  retryDelayMs: 200,
  maxRetryDelayMs: 10_000,
  tryTimeoutMs: 300_000,
  maxResumes: 5,
  readPartSize: 4 * 1024 * 1024,
};

/** The shared-key credential of the replica's account (it also signs read SASes). */
export function createCredential(options: AbsOptions): StorageSharedKeyCredential {
  return new StorageSharedKeyCredential(options.accountName, options.accountKey);
}

/** The SDK client of the replica's container (no request is made here). */
export function createContainerClient(
  options: AbsOptions,
  tuning: Required<AbsTuning>,
  credential: StorageSharedKeyCredential,
): ContainerClient {
  const pipeline = newPipeline(credential, {
    retryOptions: {
      retryPolicyType: StorageRetryPolicyType.EXPONENTIAL,
      maxTries: tuning.maxTries,
      retryDelayInMs: tuning.retryDelayMs,
      maxRetryDelayInMs: tuning.maxRetryDelayMs,
      tryTimeoutInMs: tuning.tryTimeoutMs,
    },
    userAgentOptions: { userAgentPrefix: `litestream-deno/${VERSION}` },
  });
  return withoutOsRelease(() =>
    new ContainerClient(`${options.endpoint}/${encodeURIComponent(options.container)}`, pipeline)
  );
}

/**
 * Runs `create` (a client constructor, synchronous) with `os.release()` answering `""` when Deno
 * is not allowed to read it: the SDK puts the OS release in its User-Agent, read once while the
 * client's pipeline is built, and without `--allow-sys=osRelease` every request would fail.
 */
function withoutOsRelease<T>(create: () => T): T {
  if (Deno.permissions.querySync({ name: "sys", kind: "osRelease" }).state === "granted") {
    return create();
  }
  const release = os.release;
  os.release = () => "";
  try {
    return create();
  } finally {
    os.release = release;
  }
}
