/**
 * Local S3 servers for tests, on 127.0.0.1 with a bucket ready: s3rver
 * in-process (always available), and moto (`moto_server`) when installed.
 *
 * @module
 */

import { readLines } from "./sqlite_cli.ts";
import S3rver from "s3rver";
import { waitFor } from "./poll.ts";
import { freePort } from "./net.ts";
import { S3ReplicaClient } from "../../replicas/s3/client.ts";

/** A running S3 server with one bucket. */
export interface TestS3Server extends AsyncDisposable {
  /** Which emulator: `s3rver` or `moto`. */
  readonly name: string;
  /** `http[s]://127.0.0.1:<port>` (path-style addressing). */
  readonly endpoint: string;
  readonly bucket: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Requests the server logged so far, as `METHOD target` lines (moto only; `undefined` for s3rver). */
  requestLog?(): string[];
  /** Stops the server and removes its data. */
  close(): Promise<void>;
}

const BUCKET = "litestream-test";

/** The v0.3.13 URL form of a replica on `srv`: `s3://<bucket>.localhost:<port>/<path>`. */
export function replicaUrl(srv: TestS3Server, path: string, bucket = srv.bucket): string {
  return `s3://${bucket}.localhost:${new URL(srv.endpoint).port}/${path}`;
}

/** Environment giving URL-form commands credentials (by default the server's own). */
export function credentialsEnv(
  srv: TestS3Server,
  id = srv.accessKeyId,
  secret = srv.secretAccessKey,
): Record<string, string> {
  return { LITESTREAM_ACCESS_KEY_ID: id, LITESTREAM_SECRET_ACCESS_KEY: secret };
}

/** Our replica client on a key prefix of `srv`, for listing a replica from a test. */
export function replicaClient(srv: TestS3Server, path: string): S3ReplicaClient {
  return new S3ReplicaClient({
    bucket: srv.bucket,
    path,
    endpoint: srv.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    accessKeyId: srv.accessKeyId,
    secretAccessKey: srv.secretAccessKey,
  });
}

/** Options of {@linkcode startS3rver}. */
export interface S3rverOptions {
  /** Serve HTTPS with this PEM certificate and key. */
  tls?: { cert: string; key: string };
  /** Accept requests whose signature does not match (a proxy changed a signed header). */
  allowMismatchedSignatures?: boolean;
}

/**
 * Starts s3rver in-process on a free port with a fresh temp directory and the
 * bucket created.
 */
export async function startS3rver(
  { tls, allowMismatchedSignatures }: S3rverOptions = {},
): Promise<TestS3Server> {
  const directory = await Deno.makeTempDir({ prefix: "litestream-s3rver-" });
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    directory,
    silent: true,
    configureBuckets: [{ name: BUCKET, configs: [] }],
    allowMismatchedSignatures,
    ...tls,
  });
  fixNestedDelimiterListing(server);
  const { port } = await server.run();
  const close = async () => {
    await server.close();
    await Deno.remove(directory, { recursive: true }).catch(() => {});
  };
  return {
    name: "s3rver",
    endpoint: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    bucket: BUCKET,
    // s3rver verifies SigV4 signatures against its built-in account.
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** s3rver's store, as far as listing goes. */
interface ListingStore {
  listObjects(bucket: string, options: ListOptions): Promise<ListResult>;
}
interface ListOptions {
  delimiter?: string;
  prefix?: string;
  startAfter?: string;
  maxKeys?: number;
}
interface ListResult {
  objects: { key: string }[];
  commonPrefixes: string[];
  isTruncated: boolean;
}

/**
 * s3rver 3.7.1 bug: with a delimiter, its directory walk prunes every
 * directory two levels below the prefix, so keys nested deeper (like
 * `generations/<gen>/wal/<name>` under `generations/`) yield no common
 * prefix at all. This lists without the delimiter and groups like S3 does.
 */
function fixNestedDelimiterListing(server: S3rver): void {
  const store = (server as unknown as { store: ListingStore }).store;
  const listAll = store.listObjects.bind(store);
  store.listObjects = async (bucket, options) => {
    const { delimiter, prefix = "", maxKeys = Infinity } = options;
    if (!delimiter) return listAll(bucket, options);
    const all = await listAll(bucket, { ...options, delimiter: "", maxKeys: Infinity });
    const objects: ListResult["objects"] = [];
    const prefixes = new Set<string>();
    for (const obj of all.objects) {
      const at = obj.key.indexOf(delimiter, prefix.length);
      if (at >= 0) prefixes.add(obj.key.slice(0, at + delimiter.length));
      else objects.push(obj);
    }
    return {
      objects: objects.slice(0, maxKeys),
      commonPrefixes: [...prefixes].sort(),
      isTruncated: objects.length > maxKeys,
    };
  };
}

/**
 * Spawns `moto_server -H 127.0.0.1 -p PORT`, waits until it answers and creates
 * the bucket; returns `undefined` when moto is not installed.
 */
export async function startMoto(): Promise<TestS3Server | undefined> {
  const port = freePort();
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("moto_server", {
      args: ["-H", "127.0.0.1", "-p", String(port)],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  // moto logs one line per request on stderr: `... "GET /bkt/?list-type=2 HTTP/1.1" 200 -`.
  const log: string[] = [];
  // Whole lines only: a chunk boundary can fall inside a line.
  const logDone = (async () => {
    for await (const line of readLines(child.stderr)) {
      const m = /"([A-Z]+ \S+) HTTP\/1\.[01]"/.exec(line);
      if (m) log.push(m[1]);
    }
  })().catch(() => {});
  const endpoint = `http://127.0.0.1:${port}`;
  const close = async () => {
    child.kill("SIGTERM");
    await child.status;
    await logDone;
  };
  try {
    await waitFor("moto_server to answer", async () => (await fetch(endpoint).then(drain)).ok);
    // moto does not check signatures, so a plain PUT creates the bucket.
    const res = await fetch(`${endpoint}/${BUCKET}`, { method: "PUT" }).then(drain);
    if (!res.ok) throw new Error(`moto: creating bucket failed: HTTP ${res.status}`);
  } catch (err) {
    await close();
    throw err;
  }
  return {
    name: "moto",
    endpoint,
    bucket: BUCKET,
    accessKeyId: "test",
    secretAccessKey: "test",
    requestLog: () => [...log],
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Consumes a response body so the connection is released (and Deno's leak check stays quiet). */
async function drain(res: Response): Promise<Response> {
  await res.body?.cancel();
  return res;
}
