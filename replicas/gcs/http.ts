/**
 * Requests to the GCS JSON API: the endpoint (Google's, or the one
 * `STORAGE_EMULATOR_HOST` names), bearer tokens, timeouts, retries of
 * transient failures with jittered exponential backoff, request counting,
 * and errors that name the object, the operation and what to fix.
 *
 * @module
 */

import {
  explainPermission,
  LitestreamError,
  messageWithCause,
  MissingPermissionError,
} from "../../lib/errors.ts";
import { backoff } from "../../lib/os/async.ts";
import type { TokenSource } from "./auth.ts";
import type { StoreCounters, StoreOperation } from "../counters.ts";

/** Operations, labelled as v0.3.13's `litestream_replica_operation_total`. */
export type GcsOperation = StoreOperation;

/** Request and byte counters of one client; read by metrics and tests. */
export type GcsCounters = StoreCounters;

/** Transfer and resilience knobs; the defaults suit production, tests shrink them. */
export interface GcsTuning {
  /** Resumable-upload chunk (a multiple of 256 KiB); smaller objects go in one request. Default 8 MiB. */
  chunkSize?: number;
  /** Attempts per request. Default 5. */
  maxAttempts?: number;
  /** First retry waits up to this (full jitter), doubling each time. Default 200 ms. */
  backoffMs?: number;
  /** From sending a request to its response headers. Default 2 min. */
  requestTimeoutMs?: number;
  /** A download body that delivers nothing for this long is resumed. Default 30 s. */
  idleTimeoutMs?: number;
  /** Ranged resumptions of a download without progress in between. Default 5. */
  maxResumes?: number;
}

/** The production values of every `GcsTuning` knob. */
export const TUNING_DEFAULTS: Required<GcsTuning> = {
  chunkSize: 8 * 1024 * 1024,
  maxAttempts: 5,
  backoffMs: 200,
  requestTimeoutMs: 120_000,
  idleTimeoutMs: 30_000,
  maxResumes: 5,
};

/** A GCS request failure, naming the object (`gcs://bucket/name`) and the operation. */
export class GcsError extends LitestreamError {
  /** Creates an error for `operation` on `url`; `status` is the HTTP status (0: none). */
  constructor(
    readonly operation: GcsOperation,
    readonly url: string,
    readonly status: number,
    readonly detail: string,
    options?: ErrorOptions,
  ) {
    super(`${url}: ${operation} failed: ${detail}`, options);
  }
}

/** Hints for statuses whose fix is in the user's configuration. */
const HINTS: Record<number, string> = {
  401: "check the Google credentials (GOOGLE_APPLICATION_CREDENTIALS)",
  403: "check the credentials' permissions on this bucket",
};

/** Appended to errors about a bucket that does not exist. */
export const NO_BUCKET_HINT = " (create the bucket or correct its name)";

/** Statuses worth another attempt. */
const TRANSIENT = new Set([408, 429, 500, 502, 503, 504]);

/** The endpoint for `STORAGE_EMULATOR_HOST` (`host:port`, or a URL), as Google's libraries read it. */
export function emulatorEndpoint(host: string): string {
  const url = /^[a-z]+:\/\//i.test(host) ? host : `http://${host}`;
  return url.replace(/\/+$/, "");
}

/** One request: what to send, and which answers the caller handles itself. */
export interface GcsRequest {
  operation: GcsOperation;
  /** `gcs://bucket/name` for errors. */
  object: string;
  method: string;
  /** Absolute URL, or a path (with query) below the endpoint. */
  url: string;
  headers?: Record<string, string>;
  /**
   * A small body, or the bytes of a large one: those are sent as a stream, made anew for each
   * attempt (Deno's `fetch` keeps about 150 MB of native memory around after repeated 8 MiB
   * `Uint8Array` bodies, against 65 MB streamed, and streams them half as fast).
   */
  body?: string | Uint8Array[];
  /** Statuses returned to the caller rather than thrown (404 for a missing object, 308, …). */
  accept?: number[];
  /** Attempts for this request; default the tuning's `maxAttempts`. */
  attempts?: number;
}

/** Sends requests to one endpoint with one token source. */
export class GcsHttp {
  /** Creates a sender; `auth` undefined sends no credentials (an emulator). */
  constructor(
    readonly endpoint: string,
    readonly auth: TokenSource | undefined,
    readonly counters: GcsCounters,
    readonly tuning: Required<GcsTuning>,
  ) {}

  /**
   * Sends `req`, retrying network failures, timeouts and 408/429/5xx answers
   * with backoff, and a 401 once with a fresh token. Returns a response whose
   * status is 2xx or in `req.accept`; anything else is a `GcsError`.
   */
  async send(req: GcsRequest): Promise<Response> {
    const attempts = req.attempts ?? this.tuning.maxAttempts;
    let refreshed = false;
    for (let attempt = 1;; attempt++) {
      let failure: { status: number; detail: string; cause?: unknown };
      try {
        const res = await this.#once(req);
        if (res.ok || req.accept?.includes(res.status)) return res;
        const detail = await errorDetail(res);
        if (res.status === 401 && this.auth && !refreshed) {
          refreshed = true;
          this.auth.invalidate();
          attempt--;
          continue;
        }
        failure = { status: res.status, detail };
        if (!TRANSIENT.has(res.status)) throw this.#error(req, failure, attempt);
      } catch (err) {
        if (err instanceof LitestreamError) throw err;
        // A missing Deno permission: no retry helps; name the flag.
        const permission = explainPermission(err, req.object);
        if (permission instanceof MissingPermissionError) throw permission;
        failure = { status: 0, detail: messageWithCause(err), cause: err };
      }
      if (attempt >= attempts) throw this.#error(req, failure, attempt);
      await backoff(attempt, this.tuning.backoffMs);
    }
  }

  async #once(req: GcsRequest): Promise<Response> {
    const headers: Record<string, string> = { ...req.headers };
    if (this.auth) headers.Authorization = `Bearer ${await this.auth.token()}`;
    const url = /^https?:/.test(req.url) ? req.url : this.endpoint + req.url;
    const abort = new AbortController();
    const timer = setTimeout(
      () => abort.abort(new Error(`no response within ${this.tuning.requestTimeoutMs} ms`)),
      this.tuning.requestTimeoutMs,
    );
    this.counters.requests[req.operation]++;
    try {
      return await fetch(url, {
        method: req.method,
        headers,
        body: typeof req.body === "string" ? req.body : req.body && ReadableStream.from(req.body),
        signal: abort.signal,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  #error(req: GcsRequest, f: { status: number; detail: string; cause?: unknown }, n: number) {
    const hint = HINTS[f.status]
      ? ` (${HINTS[f.status]})`
      : f.status === 404 && /bucket/i.test(f.detail)
      ? NO_BUCKET_HINT
      : "";
    const tries = n > 1 ? ` (after ${n} attempts)` : "";
    const status = f.status ? `HTTP ${f.status}: ` : "";
    return new GcsError(
      req.operation,
      req.object,
      f.status,
      `${status}${f.detail}${hint}${tries}`,
      {
        cause: f.cause,
      },
    );
  }
}

/** The message of a JSON API (or XML) error body, on one line. */
export async function errorDetail(res: Response): Promise<string> {
  const text = await res.text().catch(() => "");
  try {
    const msg = JSON.parse(text)?.error?.message;
    if (typeof msg === "string" && msg) return msg.split("\n")[0];
  } catch { /* not JSON */ }
  return text.replace(/\s+/g, " ").trim().slice(0, 200) || res.statusText || "no detail";
}
