/**
 * The request log a benchmark's server process prints for `bench/support/s3rver.ts` to read: a
 * `REQ id epochMs METHOD user-agent url` line when a request arrives and `END id epochMs status`
 * when it is answered, plus a JSON line with the server's address; and a clean exit on SIGTERM or
 * SIGINT. Shared by `bench/s3rver_process.ts` and `bench/gcs_server_process.ts`.
 *
 * @module
 */

const encoder = new TextEncoder();
let requestId = 0;
const now = () => (performance.timeOrigin + performance.now()).toFixed(1);

/** Writes a line synchronously, so lines are never reordered or lost at exit. */
export function emit(line: string): void {
  const bytes = encoder.encode(line + "\n");
  let n = 0;
  while (n < bytes.length) n += Deno.stdout.writeSync(bytes.subarray(n));
}

/** Logs a request's arrival; returns the function that logs its answer's status. */
export function logRequest(
  method: string,
  userAgent: string,
  url: string,
): (status: number) => void {
  const id = ++requestId;
  emit(`REQ ${id} ${now()} ${method} ${encodeURIComponent(userAgent || "-")} ${url}`);
  return (status) => emit(`END ${id} ${now()} ${status}`);
}

/** Prints the server's address as a JSON line, then closes it and exits 0 on SIGTERM or SIGINT. */
export function serveUntilSignal(info: Record<string, string>, close: () => Promise<void>): void {
  let closing = false;
  const shutdown = async () => {
    if (closing) return;
    closing = true;
    await close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", shutdown);
  Deno.addSignalListener("SIGINT", shutdown);
  emit(JSON.stringify(info));
}
