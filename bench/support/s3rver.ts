/**
 * Test servers in their own processes (s3rver: `bench/s3rver_process.ts`; our GCS server:
 * `bench/gcs_server_process.ts`), so their CPU and memory count against neither replicator, and
 * what their request logs tell: requests per window, when a snapshot's
 * upload completed, and a summary by kind.
 *
 * @module
 */

import { REPO_ROOT } from "./cache.ts";
import { BENCH_USER_AGENT } from "./replica_watch.ts";
import type { ReplicaTarget } from "./tools.ts";

/** One HTTP request the S3 server received. */
export interface S3Request {
  /** When the request arrived. */
  epochMs: number;
  method: string;
  userAgent: string;
  url: string;
  /** When s3rver had handled it, and the status it answered (absent while in progress). */
  endEpochMs?: number;
  status?: number;
}

/** A running bench/s3rver_process.ts. */
export interface S3rverProcess {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Requests received so far. */
  requests(): S3Request[];
  /** The replica target for key prefix `path`. */
  target(path: string): Extract<ReplicaTarget, { type: "s3" }>;
  /** Stops the server (its data is removed). */
  stop(): Promise<void>;
}

/** A test server running in its own process, with its request log. */
export interface ServerProcess {
  /** The JSON line the server printed first. */
  info: Record<string, string>;
  /** Requests received so far. */
  requests(): S3Request[];
  /** Stops the server. */
  stop(): Promise<void>;
}

/**
 * Runs `deno run -A <script>` (bench/s3rver_process.ts, bench/gcs_server_process.ts), which
 * prints one JSON line about itself, then `REQ`/`END` lines per request (see
 * bench/s3rver_process.ts), and stops on SIGTERM.
 */
export async function startServerProcess(script: string): Promise<ServerProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO_ROOT}/${script}`],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const requests: S3Request[] = [];
  const byId = new Map<string, S3Request>();
  const { promise: info, resolve: resolveInfo } = Promise.withResolvers<
    Record<string, string>
  >();
  const reading = (async () => {
    let buffered = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith("REQ ")) {
          const [, id, at, method, ua, url] = line.split(" ");
          const r = { epochMs: Number(at), method, userAgent: decodeURIComponent(ua), url };
          requests.push(r);
          byId.set(id, r);
        } else if (line.startsWith("END ")) {
          const [, id, at, status] = line.split(" ");
          const r = byId.get(id);
          if (r) Object.assign(r, { endEpochMs: Number(at), status: Number(status) });
          byId.delete(id);
        } else if (line.startsWith("{")) {
          resolveInfo(JSON.parse(line));
        }
      }
    }
  })();
  const exited = child.status.then(async (s) => {
    throw new Error(`${script} exited (${s.code}): ${await stderr}`);
  });
  const i = await Promise.race([info, exited]);
  exited.catch(() => {});
  return {
    info: i,
    requests: () => requests.map((r) => ({ ...r })),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await reading.catch(() => {});
    },
  };
}

/** Starts s3rver in a separate process on 127.0.0.1 with the bucket created. */
export async function startS3rverProcess(): Promise<S3rverProcess> {
  const p = await startServerProcess("bench/s3rver_process.ts");
  const i = p.info;
  return {
    endpoint: i.endpoint,
    bucket: i.bucket,
    accessKeyId: i.accessKeyId,
    secretAccessKey: i.secretAccessKey,
    requests: p.requests,
    target: (path) => ({
      type: "s3",
      endpoint: i.endpoint,
      bucket: i.bucket,
      path,
      accessKeyId: i.accessKeyId,
      secretAccessKey: i.secretAccessKey,
    }),
    stop: p.stop,
  };
}

/** Requests in `[fromMs, toMs]` (epoch ms) that did not come from the benchmark itself. */
export function toolRequests(all: S3Request[], fromMs: number, toMs: number): S3Request[] {
  return all.filter((r) =>
    r.epochMs >= fromMs && r.epochMs <= toMs && !r.userAgent.includes(BENCH_USER_AGENT)
  );
}

/**
 * When the upload of the first snapshot under `path` finished at the server: the end of the
 * successful single PUT of a `…/snapshots/<index>.snapshot.lz4` key, or of the POST completing
 * its multipart upload. `undefined` while there is none.
 */
export function snapshotUploadedAt(requests: S3Request[], path: string): number | undefined {
  const re = new RegExp(
    `^/[^/]+/${path}/generations/[0-9a-f]{16}/snapshots/[0-9a-f]{8}\\.snapshot\\.lz4(\\?.*)?$`,
  );
  const done = requests.filter((r) => {
    if (r.status !== 200 || !re.test(r.url)) return false;
    const query = r.url.includes("?") ? r.url.slice(r.url.indexOf("?")) : "";
    // A single PUT (aws-sdk-js adds `?x-id=PutObject`), not a part; or the completing POST.
    if (r.method === "PUT") return !/[?&](partNumber|uploadId)=/.test(query);
    return r.method === "POST" && /[?&]uploadId=/.test(query);
  });
  return done.length ? Math.min(...done.map((r) => r.endEpochMs!)) : undefined;
}

/** "3 GET, 1 LIST"-style summary of requests (a GET with `list-type` or `prefix` is a LIST). */
export function describeRequests(rs: S3Request[]): string {
  const counts = new Map<string, number>();
  for (const r of rs) {
    const kind = r.method === "GET" && /[?&](list-type|prefix|delimiter)=/.test(r.url)
      ? "LIST"
      : r.method;
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return counts.size === 0 ? "none" : [...counts].map(([k, n]) => `${n} ${k}`).join(", ");
}
