/**
 * SFTP failures as users see them: each names the replica or object URL and
 * the operation, with a hint where the fix is in the user's hands. Transient
 * failures (the connection broke, timed out or was refused) are marked so the
 * session can reconnect and retry.
 *
 * @module
 */

import { LitestreamError } from "../../lib/errors.ts";

/** SFTP status codes (draft-ietf-secsh-filexfer-02) that callers act on. */
export const SFTP_STATUS = { EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4 } as const;

/** A failed operation on an SFTP replica, naming the object (or replica) URL. */
export class SftpError extends LitestreamError {
  /** Creates the error for `operation` on `url`; `transient` failures may succeed when retried. */
  constructor(
    readonly operation: string,
    readonly url: string,
    detail: string,
    readonly transient = false,
    options?: ErrorOptions,
  ) {
    super(`${url}: ${operation} failed: ${detail}`, options);
  }

  /** Whether the server refused access (SFTP's PERMISSION_DENIED), not the operation failing. */
  get accessDenied(): boolean {
    return statusCode(this.cause) === SFTP_STATUS.PERMISSION_DENIED;
  }
}

/** The SFTP status code of an ssh2 request error, if it is one. */
export function statusCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "number" ? code : undefined;
}

/**
 * Whether an ssh2 error is about the connection rather than the request: the
 * socket broke or was refused, a timeout, or the channel closed with requests
 * pending ("No response from server").
 */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof SftpError) return err.transient;
  if (err instanceof LitestreamError) return false;
  const e = err as { code?: unknown; level?: string; message?: string };
  if (typeof e?.code === "string") return true; // ECONNRESET, ECONNREFUSED, EPIPE, …
  if (e?.level === "client-timeout" || e?.level === "client-socket") return true;
  return /No response from server|Not connected|closed|socket|timed out/i.test(e?.message ?? "");
}

/** One line describing an ssh2 or network error. */
export function describe(err: unknown): string {
  const e = err as { message?: string; code?: unknown };
  const msg = (e?.message ?? String(err)).split("\n")[0];
  return typeof e?.code === "string" && !msg.includes(e.code) ? `${e.code}: ${msg}` : msg;
}
