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

const encoder = new TextEncoder();
let requestId = 0;
const now = () => (performance.timeOrigin + performance.now()).toFixed(1);

/** Writes synchronously so lines are never reordered or lost at exit. */
function emit(line: string): void {
  const bytes = encoder.encode(line + "\n");
  let n = 0;
  while (n < bytes.length) n += Deno.stdout.writeSync(bytes.subarray(n));
}

const server = startGcsServer({
  onRequest(req) {
    const id = ++requestId;
    const url = new URL(req.url);
    const ua = encodeURIComponent(req.headers.get("user-agent") || "-");
    emit(`REQ ${id} ${now()} ${req.method} ${ua} ${url.pathname}${url.search}`);
    return (status) => emit(`END ${id} ${now()} ${status}`);
  },
});
let closing = false;
const shutdown = async () => {
  if (closing) return;
  closing = true;
  await server.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", shutdown);
Deno.addSignalListener("SIGINT", shutdown);
emit(JSON.stringify({ endpoint: server.endpoint, host: server.host, bucket: server.bucket }));
