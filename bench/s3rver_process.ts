/**
 * s3rver for the benchmarks, in its own process so its CPU and memory count against neither
 * replicator: `deno run -A bench/s3rver_process.ts`.
 *
 * Starts `startS3rver()` from `tests/support/s3_server.ts` (127.0.0.1, a free port, a fresh
 * temporary directory, the bucket created, the nested-listing fix applied) and prints one JSON
 * line with `endpoint`, `bucket`, `accessKeyId`, `secretAccessKey`. Then it prints two lines per
 * HTTP request: one when the request arrives, one when s3rver has handled it (its response is
 * then on its way):
 *
 *     REQ <id> <epoch ms> <METHOD> <user-agent, percent-encoded> <url>
 *     END <id> <epoch ms> <HTTP status>
 *
 * (s3rver writes an object at its final path while the data streams in, so a listing can show a
 * large object before its upload finished; the END of the request that completes an upload is
 * the reliable completion time.)
 *
 * On SIGTERM or SIGINT it stops the server, removes its data and exits 0.
 *
 * @module
 */

import S3rver from "s3rver";
import { startS3rver } from "../tests/support/s3_server.ts";
import { logRequest, serveUntilSignal } from "./support/request_log.ts";

/** Koa's context, as far as the request log goes. */
interface KoaContext {
  method: string;
  url: string;
  status: number;
  get(header: string): string;
}
type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

// S3rver is a Koa application that composes its middleware when it starts listening: putting
// the logger first in the list before `run` makes it see every request.
const proto = S3rver.prototype as unknown as {
  run(...args: unknown[]): Promise<unknown>;
  middleware: Middleware[];
};
const originalRun = proto.run;
proto.run = function (this: typeof proto, ...args: unknown[]) {
  this.middleware.unshift(async (ctx, next) => {
    const answered = logRequest(ctx.method, ctx.get("user-agent"), ctx.url);
    try {
      await next();
    } finally {
      answered(ctx.status);
    }
  });
  return originalRun.apply(this, args);
};

const server = await startS3rver();
serveUntilSignal({
  endpoint: server.endpoint,
  bucket: server.bucket,
  accessKeyId: server.accessKeyId,
  secretAccessKey: server.secretAccessKey,
}, () => server.close());
