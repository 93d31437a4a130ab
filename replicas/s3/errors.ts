/**
 * S3 failures as users see them: `S3Error` names the object URL and the
 * operation, with a hint where the fix is in the user's configuration. The
 * SDK retries each request itself (see `sdk.ts`); what reaches `callS3` has
 * failed for good.
 *
 * @module
 */

import {
  explainPermission,
  LitestreamError,
  messageWithCause,
  MissingPermissionError,
} from "../../lib/errors.ts";
import type { StoreOperation } from "../counters.ts";

/** Object-store operations, labelled as v0.3.13's `litestream_replica_operation_total`. */
export type S3Operation = StoreOperation;

/** An S3 request failure, naming the object URL and the operation. */
export class S3Error extends LitestreamError {
  /** Creates an error for `operation` on `url` (`s3://bucket/key`) with the S3 error `code`. */
  constructor(
    readonly operation: S3Operation,
    readonly url: string,
    readonly code: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`${url}: ${operation} failed: ${code ? `${code}: ` : ""}${detail}`, options);
  }
}

/** Runs one SDK call for the object `key` as `operation`, turning its failure into an `S3Error`. */
export type S3Call = <T>(operation: S3Operation, key: string, fn: () => Promise<T>) => Promise<T>;

/** Hints appended to errors whose fix is in the user's configuration. */
const HINTS: Record<string, string> = {
  NoSuchBucket: "create the bucket or correct its name",
  PreconditionFailed: "the object was replaced during the download",
  InvalidAccessKeyId: "check access-key-id and secret-access-key",
  SignatureDoesNotMatch: "check access-key-id and secret-access-key",
  AccessDenied: "check the credentials' permissions on this bucket",
};

const NO_CREDENTIALS = "no S3 credentials found: set access-key-id and secret-access-key in the " +
  "replica config, or LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY (or the AWS_* " +
  "variables, an AWS profile or an instance role)";

/**
 * Runs `fn`, an SDK call on the object at `url`; its failure becomes an
 * `S3Error` (or, for missing credentials, a `LitestreamError` naming the
 * replica `location`). `LitestreamError`s pass through unchanged.
 */
export async function callS3<T>(
  operation: S3Operation,
  url: string,
  location: string,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof LitestreamError) throw err;
    const permission = explainPermission(err, url);
    if (permission instanceof MissingPermissionError) throw permission;
    const e = err as {
      name?: string;
      code?: string;
      $metadata?: { httpStatusCode?: number; attempts?: number };
    };
    if (e.name === "CredentialsProviderError") {
      throw new LitestreamError(`${location}: ${NO_CREDENTIALS}`, { cause: err });
    }
    const code = e.code ?? (e.name && e.name !== "Error" ? e.name : "");
    const attempts = e.$metadata?.attempts ?? 1;
    const detail = describeError(err);
    // node:https names the certificate problem in its code; fetch (rustls) in its cause.
    const hint = HINTS[code]
      ? ` (${HINTS[code]})`
      : /CERT|UNABLE_TO_VERIFY/.test(code) || /peer certificate/.test(detail)
      ? " (the endpoint's TLS certificate is not trusted; skip-verify: true accepts it)"
      : "";
    const tries = attempts > 1 ? ` (after ${attempts} attempts)` : "";
    throw new S3Error(operation, url, code, `${detail}${hint}${tries}`, {
      cause: err,
    });
  }
}

/** The useful part of an SDK or network error, on one line. */
export function describeError(err: unknown): string {
  const e = err as { message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  let msg = messageWithCause(err);
  // The SDK's message for a bodiless error response is just its name.
  if (!msg || msg === "UnknownError") msg = `HTTP ${e.$metadata?.httpStatusCode ?? "error"}`;
  return msg;
}
