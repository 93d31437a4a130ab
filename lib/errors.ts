/**
 * Errors a user sees. Each carries enough context (file, key, flag, object)
 * to be printed as one line by the CLI.
 *
 * @module
 */

/** Base class for every error that the CLI prints as a one-line message. */
export class LitestreamError extends Error {
  /** Creates an error with a one-line message and an optional cause. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Wrong command-line usage (arguments, flags that conflict): one line naming what is wrong. */
export class UsageError extends LitestreamError {}

/**
 * A flag that Go's flag package would refuse while parsing (unknown, missing its argument, a value
 * of the wrong form): printed with the command's usage, as v0.3.13 prints it. Every other usage
 * error is one line.
 */
export class FlagError extends UsageError {}

/** An invalid configuration file or value; the message names the file and the key. */
export class ConfigError extends LitestreamError {
  /** Creates an error naming the config `file` and `key` at fault. */
  constructor(readonly file: string, readonly key: string, detail: string) {
    super(`${file}: ${key}: ${detail}`);
  }
}

/** A replica object that cannot be trusted: bad checksum, bad framing, a gap. */
export class CorruptionError extends LitestreamError {
  /** Creates an error naming the replica `object` (a key or path) and what is wrong with it. */
  constructor(readonly object: string, detail: string) {
    super(`${object}: ${detail}`);
  }
}

/**
 * A replica object that cannot be decrypted with the configured age identities: none are
 * configured (`identitiesMissing`), or none of them is a recipient of the object.
 */
export class DecryptionError extends LitestreamError {
  /** Creates an error naming the replica `object` and what stops its decryption. */
  constructor(readonly object: string, detail: string, readonly identitiesMissing = false) {
    super(`${object}: ${detail}`);
  }
}

/** Nothing in the replica(s) matches what was asked for. */
export class NotFoundError extends LitestreamError {}

/**
 * The first line of `err`'s message, followed by its cause's where that adds to it: `fetch`
 * rejects with only "fetch failed", and the reason (refused, a certificate) is in the cause.
 */
export function messageWithCause(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string } };
  const msg = String(e?.message ?? err).split("\n")[0].trim();
  const cause = e?.cause?.message?.split("\n")[0].trim();
  return cause && !msg.includes(cause) ? (msg ? `${msg}: ${cause}` : cause) : msg;
}

/** A Deno permission the operation needs was not granted; the message names the flag. */
export class MissingPermissionError extends LitestreamError {}

/**
 * Turns Deno's permission error into one naming the exact `--allow-…` flag (after `where`, the
 * object or replica, when given); every other error passes through unchanged.
 */
export function explainPermission(err: unknown, where?: string): unknown {
  if (!(err instanceof Deno.errors.NotCapable) && !(err instanceof Deno.errors.PermissionDenied)) {
    return err;
  }
  const msg = String((err as Error).message);
  const flag = msg.match(/--allow-[a-z-]+/)?.[0];
  if (!flag || err instanceof Deno.errors.PermissionDenied && !msg.includes("--allow-")) return err;
  const what = msg.match(/Requires (.+?), (?:run again|specify)/)?.[1] ?? "a permission";
  const prefix = where ? `${where}: ` : "";
  return new MissingPermissionError(
    `${prefix}missing Deno permission: ${what}; run again with ${flag}`,
    { cause: err },
  );
}
