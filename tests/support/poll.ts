/**
 * Test helpers for waiting on a condition with a deadline (never a bare sleep)
 * and for scratch directories that clean themselves up.
 *
 * @module
 */

/**
 * Polls `check` until it returns a truthy value or `timeoutMs` passes; returns that value.
 * Throws naming `what` on timeout, with the last error `check` threw, if any.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 20_000,
  intervalMs = 50,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (true) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A temporary directory removed (recursively) when disposed: `await using dir = await tempDir()`. */
export async function tempDir(
  prefix = "litestream-test-",
): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      // LITESTREAM_TEST_KEEP_TMP=1 keeps it, to look at a failure afterwards.
      if (Deno.env.get("LITESTREAM_TEST_KEEP_TMP") === "1") return;
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}
