/**
 * Azure Blob Storage failures as users see them: `AbsError` names the blob
 * URL and the operation, with a hint where the fix is in the user's
 * configuration. The SDK retries each request itself (see `sdk.ts`); what
 * reaches `callAbs` has failed for good.
 *
 * @module
 */

import {
  explainPermission,
  LitestreamError,
  messageWithCause,
  MissingPermissionError,
} from "../../lib/errors.ts";
import { ACCOUNT_KEY_ENV } from "./url.ts";
import type { StoreOperation } from "../counters.ts";

/** Blob operations, labelled as v0.3.13's `litestream_replica_operation_total`. */
export type AbsOperation = StoreOperation;

/** A Blob Storage request failure, naming the blob URL and the operation. */
export class AbsError extends LitestreamError {
  /** Creates an error for `operation` on `url` (`abs://account@container/key`) with the service `code`. */
  constructor(
    readonly operation: AbsOperation,
    readonly url: string,
    readonly code: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`${url}: ${operation} failed: ${code ? `${code}: ` : ""}${detail}`, options);
  }
}

/** Runs one SDK call on the blob `key` as `operation`, turning its failure into an `AbsError`. */
export type AbsCall = <T>(operation: AbsOperation, key: string, fn: () => Promise<T>) => Promise<T>;

const KEY_HINT = `check account-name and account-key (or ${ACCOUNT_KEY_ENV})`;

/** Hints appended to errors whose fix is in the user's configuration. */
const HINTS: Record<string, string> = {
  AuthenticationFailed: KEY_HINT,
  InvalidAuthenticationInfo: KEY_HINT,
  AuthorizationFailure: `${KEY_HINT}, and the account's permissions and network rules`,
  ContainerNotFound: "create the container or correct bucket",
  ResourceNotFound: "check account-name, bucket and endpoint",
  AccountIsDisabled: "the storage account is disabled",
  ConditionNotMet: "the blob was replaced during the download",
};

/** Network failures that mean the endpoint is wrong or unreachable. */
const NETWORK_HINT = "check endpoint, and that the storage service is reachable";

/**
 * Runs `fn`, an SDK call on the blob at `url`; its failure becomes an
 * `AbsError` naming `url` and `operation`. `LitestreamError`s pass through.
 */
export async function callAbs<T>(
  operation: AbsOperation,
  url: string,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toAbsError(operation, url, err);
  }
}

/** `err` (an SDK `RestError`, a network error) as an `AbsError` on `url`. */
export function toAbsError(operation: AbsOperation, url: string, err: unknown): LitestreamError {
  if (err instanceof LitestreamError) return err;
  // A missing Deno permission (Deno's node:https reads the root certificates under --allow-sys).
  const permission = explainPermission(err, url);
  if (permission instanceof MissingPermissionError) return permission;
  const e = err as { code?: string; statusCode?: number; details?: { errorCode?: string } };
  const code = e.details?.errorCode ?? (e.code && !/^[A-Z_]+$/.test(e.code) ? e.code : "");
  // Node's error codes (the SDK), or fetch's TypeError (our reads).
  const network = !e.statusCode &&
    (/^(E[A-Z]+|REQUEST_SEND_ERROR)$/.test(e.code ?? "") || err instanceof TypeError);
  const hint = HINTS[code] ? ` (${HINTS[code]})` : network ? ` (${NETWORK_HINT})` : "";
  return new AbsError(operation, url, code, `${describeError(err)}${hint}`, { cause: err });
}

/** The useful part of an SDK or network error, on one line. */
export function describeError(err: unknown): string {
  const e = err as { message?: string; statusCode?: number; code?: string };
  return messageWithCause(err) || (e.statusCode ? `HTTP ${e.statusCode}` : e.code ?? "error");
}
