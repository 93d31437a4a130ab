/**
 * Our GCS test server for the benchmarks, in its own process so its CPU and memory count against
 * neither replicator: `deno run -A bench/gcs_server_process.ts`.
 *
 * Starts `startGcsServer()` from `tests/support/gcs_server.ts` (127.0.0.1, a free port, the
 * bucket created, objects in memory) and prints one JSON line with `endpoint`, `host` (the value
 * for `STORAGE_EMULATOR_HOST`) and `bucket`, then the same `REQ`/`END` lines per request as
 * `bench/s3rver_process.ts`. On SIGTERM or SIGINT it stops and exits 0.
 *
 * @module
 */

import { startGcsServer } from "../tests/support/gcs_server.ts";
import { logRequest, serveUntilSignal } from "./support/request_log.ts";

const server = startGcsServer({
  onRequest(req) {
    const url = new URL(req.url);
    return logRequest(req.method, req.headers.get("user-agent") ?? "", url.pathname + url.search);
  },
});
serveUntilSignal(
  { endpoint: server.endpoint, host: server.host, bucket: server.bucket },
  () => server.close(),
);
