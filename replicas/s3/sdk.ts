/**
 * Set-up of the AWS SDK clients for one S3 replica: region look-up,
 * credentials, timeouts and retries, request counting, and the settings that
 * S3-compatible servers need. Loads the SDK: import only when an S3 replica
 * is used.
 *
 * Objects are read through Deno's `fetch` (the SDK's `FetchHttpHandler`), everything else
 * through `node:http`: under Deno, `node:http` delivers a body as many short-lived `Buffer`s
 * that V8 frees late (a restore of a large snapshot in parallel parts peaked near 300 MB),
 * while a `fetch` body reads straight into the caller's buffer.
 *
 * @module
 */

import { GetBucketLocationCommand, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { FetchHttpHandler } from "@smithy/fetch-http-handler";
import { createHash } from "node:crypto";
import { Agent as HttpsAgent } from "node:https";
import { LitestreamError, MissingPermissionError } from "../../lib/errors.ts";
import { VERSION } from "../../lib/version.ts";
import { callS3, type S3Operation } from "./errors.ts";
import type { S3Options } from "./url.ts";
import type { StoreCounters } from "../counters.ts";

/** Request and byte counters of one client; read by metrics and tests. */
export type S3Counters = StoreCounters;

/** Transfer and resilience knobs; the defaults suit production, tests shrink them. */
export interface S3Tuning {
  /** Multipart part size in bytes (≥ 5 MiB); bodies up to this size go as one PutObject. Default 8 MiB. */
  partSize?: number;
  /** Parts uploaded concurrently; memory use is about (queueSize + 1) × partSize. Default 2. */
  queueSize?: number;
  /** Attempts per request (SDK standard retry: exponential backoff with jitter). Default 5. */
  maxAttempts?: number;
  /** TCP/TLS connect timeout. Default 10 s. */
  connectTimeoutMs?: number;
  /** Inactivity timeout of a request's socket, also while streaming a body. Default 30 s. */
  idleTimeoutMs?: number;
  /** Time limit from sending a request to its response headers (uploads included). Default 5 min. */
  requestTimeoutMs?: number;
  /** Range-GET resumptions of a download without progress in between. Default 5. */
  maxResumes?: number;
  /**
   * Bytes per ranged part when a snapshot is read in parallel. Default 4 MiB: with the default
   * 8 parts in flight and one being consumed, 36 MiB of part buffers.
   */
  readPartSize?: number;
}

/** The production values of every `S3Tuning` knob. */
export const TUNING_DEFAULTS: Required<S3Tuning> = {
  partSize: 8 * 1024 * 1024,
  queueSize: 2,
  maxAttempts: 5,
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  requestTimeoutMs: 300_000,
  maxResumes: 5,
  readPartSize: 4 * 1024 * 1024,
};

/** SDK command → counted operation. */
const COMMAND_OPERATIONS: Record<string, S3Operation> = {
  GetObjectCommand: "GET",
  GetBucketLocationCommand: "GET",
  PutObjectCommand: "PUT",
  CreateMultipartUploadCommand: "PUT",
  UploadPartCommand: "PUT",
  CompleteMultipartUploadCommand: "PUT",
  ListObjectsCommand: "LIST",
  DeleteObjectsCommand: "DELETE",
  AbortMultipartUploadCommand: "DELETE",
};

/** The SDK clients of one replica: one for reading objects, one for everything else. */
export interface SdkClients {
  client: S3Client;
  /** Sends GetObject (the same client as `client` where `fetch` cannot be used). */
  reader: S3Client;
}

/**
 * The SDK clients for the replica at `location` (looking up the bucket's
 * region when neither a region nor an endpoint is set); every request they
 * send is counted in `counters`, or, for `shared` clients, only the region
 * look-up (their users count their own requests per command: see `shared_sdk.ts`).
 */
export async function createSdkClient(
  options: S3Options,
  tuning: Required<S3Tuning>,
  counters: S3Counters,
  location: string,
  shared = false,
): Promise<SdkClients> {
  const { region, endpoint, bucket } = options;
  const create = (region: string): SdkClients => {
    const client = newClient(options, tuning, shared ? undefined : counters, region);
    // Deno's fetch cannot skip certificate checks.
    if (options.skipVerify) return { client, reader: client };
    const reader = newClient(options, tuning, shared ? undefined : counters, region, true);
    return { client, reader };
  };
  if (region) return create(region);
  if (endpoint) return create("us-east-1");
  // Through fetch where it can check the certificate (see newClient): no --allow-sys needed.
  const probe = newClient(options, tuning, counters, "us-east-1", !options.skipVerify);
  try {
    const out = await callS3(
      "GET",
      `s3://${bucket}`,
      location,
      () => probe.send(new GetBucketLocationCommand({ Bucket: bucket })),
    ).catch((err) => {
      if (err instanceof MissingPermissionError) throw err;
      throw new LitestreamError(`${err.message}; set "region" in the replica config`, {
        cause: err,
      });
    });
    // An empty constraint means us-east-1; "EU" is the legacy name of eu-west-1.
    const c = out.LocationConstraint ?? "";
    return create(c === "" ? "us-east-1" : c === "EU" ? "eu-west-1" : c);
  } finally {
    probe.destroy();
  }
}

/**
 * Counts every request sent through `stack` (a client's, or one command's) into `counters`,
 * each attempt of a retried request included.
 */
export function countRequests(stack: S3Client["middlewareStack"], counters: S3Counters): void {
  stack.add(
    (next, context) => (args) => {
      const op = COMMAND_OPERATIONS[context.commandName ?? ""];
      if (op) counters.requests[op]++;
      return next(args);
    },
    // Below the retry middleware, so every attempt counts.
    { step: "finalizeRequest", priority: "low", name: "litestreamRequestCounter" },
  );
}

/** A client sending through `node:http`, or through `fetch` for a `reader` (GETs only). */
function newClient(
  options: S3Options,
  t: Required<S3Tuning>,
  counters: S3Counters | undefined,
  region: string,
  reader = false,
): S3Client {
  const { endpoint, skipVerify } = options;
  const config: S3ClientConfig = {
    region,
    endpoint: endpoint || undefined,
    forcePathStyle: options.forcePathStyle ?? !!endpoint,
    credentials: staticCredentials(options),
    maxAttempts: t.maxAttempts,
    retryMode: "standard",
    // The default user agent reads os.release(), which needs --allow-sys (not granted on Deno Deploy).
    defaultUserAgentProvider: () => Promise.resolve([["litestream-deno", VERSION]]),
    requestHandler: reader
      // A GET sends no body: until its headers arrive the connection is idle.
      ? new ReadHandler(Math.min(t.requestTimeoutMs, t.idleTimeoutMs))
      : {
        connectionTimeout: t.connectTimeoutMs,
        socketTimeout: t.idleTimeoutMs,
        requestTimeout: t.requestTimeoutMs,
        throwOnRequestTimeout: true,
        // Deno's fetch cannot skip certificate checks; its node:https can.
        ...(skipVerify
          ? { httpsAgent: new HttpsAgent({ keepAlive: true, rejectUnauthorized: false }) }
          : {}),
      },
  };
  const custom = !!endpoint && !isAwsEndpoint(endpoint);
  if (custom) {
    // Most S3-compatible servers reject or mangle the SDK's default CRC
    // checksums and aws-chunked bodies; send checksums only where the API demands one.
    config.requestChecksumCalculation = "WHEN_REQUIRED";
    config.responseChecksumValidation = "WHEN_REQUIRED";
  }
  const client = new S3Client(config);
  if (counters) countRequests(client.middlewareStack, counters);
  if (custom) {
    client.middlewareStack.add(
      (next, context) => (args) => {
        if (context.commandName === "DeleteObjectsCommand") useContentMd5(args.request);
        return next(args);
      },
      // "low" runs after the SDK's flexibleChecksumsMiddleware (build step, normal priority).
      { step: "build", priority: "low", name: "litestreamContentMd5" },
    );
  }
  return client;
}

/**
 * The SDK's `fetch` handler with a connection pool of its own, closed with the SDK client (the
 * global `fetch` pool would keep idle connections open after the replica is closed), and network
 * failures marked retryable: Deno fails a dropped or refused connection with a `TypeError`
 * ("fetch failed") that the SDK's retry does not recognise (it knows the browsers' messages only).
 */
class ReadHandler extends FetchHttpHandler {
  readonly #pool: Deno.HttpClient | undefined;

  constructor(requestTimeout: number) {
    // Not every runtime has it (Deno Deploy may not): the global pool then.
    const pool = typeof Deno.createHttpClient === "function"
      ? Deno.createHttpClient({})
      : undefined;
    super({
      requestTimeout,
      customFetch: (input: RequestInfo | URL, init?: RequestInit) =>
        fetch(input, pool ? { ...init, client: pool } : init).catch((err) => {
          if (err instanceof TypeError) Object.assign(err, { $retryable: {} });
          throw err;
        }),
    });
    this.#pool = pool;
  }

  override destroy(): void {
    this.#pool?.close();
  }
}

/**
 * Replaces the SDK's CRC32 checksum headers on DeleteObjects with the classic
 * `Content-MD5` that v0.3.13 (SDK v1) sent: servers that predate flexible
 * checksums require it, and some reject the `x-amz-checksum-*` headers.
 */
function useContentMd5(request: unknown): void {
  const req = request as { headers?: Record<string, string>; body?: unknown };
  if (!req.headers || (typeof req.body !== "string" && !(req.body instanceof Uint8Array))) return;
  for (const name of Object.keys(req.headers)) {
    if (/^x-amz-(checksum-|sdk-checksum-algorithm$)/i.test(name)) delete req.headers[name];
  }
  req.headers["content-md5"] = createHash("md5").update(req.body).digest("base64");
}

/**
 * Explicit keys; else `LITESTREAM_*` keys when the `AWS_*` ones are unset (as
 * v0.3.13's CLI maps them); else `undefined`: the SDK's default chain (env,
 * profile, container, instance metadata with a 1 s timeout and no retries).
 */
function staticCredentials(o: S3Options): S3ClientConfig["credentials"] {
  if (o.accessKeyId && o.secretAccessKey) {
    return { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey };
  }
  const env = (name: string) => Deno.env.get(name) || undefined;
  const id = env("AWS_ACCESS_KEY_ID") ?? env("LITESTREAM_ACCESS_KEY_ID");
  const secret = env("AWS_SECRET_ACCESS_KEY") ?? env("LITESTREAM_SECRET_ACCESS_KEY");
  if (!id || !secret) return undefined;
  return { accessKeyId: id, secretAccessKey: secret, sessionToken: env("AWS_SESSION_TOKEN") };
}

function isAwsEndpoint(endpoint: string): boolean {
  return /(^|\.)amazonaws\.com(\.cn)?$/.test(new URL(endpoint).hostname);
}
