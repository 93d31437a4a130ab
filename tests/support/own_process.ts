/**
 * Test helper: a unit test that reads process-wide state (`/proc/self/fd`, `/proc/self/fdinfo`,
 * `/proc/locks`) runs in a process of its own. `deno test --parallel` runs test modules as
 * workers of ONE process, so the descriptors, inotify instances and locks of other modules' tests
 * come and go in that state under the test's feet.
 *
 * `Deno.test(name, inOwnProcess(fn))`: in the ordinary run the test runs its module again as a
 * child `deno test` filtered to this one test; in that child (marked by {@link OWN_PROCESS_ENV})
 * it runs `fn`, alone in the process.
 *
 * @module
 */

import assert from "node:assert/strict";

/** Set (to the test's name) in the child that runs one test in a process of its own. */
export const OWN_PROCESS_ENV = "LITESTREAM_TEST_OWN_PROCESS";

const REPO_ROOT = new URL("../../", import.meta.url);

/** Wraps a test's `fn` so that it runs in a child process of its own (see the module doc). */
export function inOwnProcess(
  fn: () => Promise<void> | void,
): (t: Deno.TestContext) => Promise<void> {
  return async (t) => {
    if (Deno.env.get(OWN_PROCESS_ENV) === t.name) return await fn();
    const exact = `/^${t.name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}$/`;
    const out = await new Deno.Command(Deno.execPath(), {
      // Already type-checked by the run this test belongs to.
      args: ["test", "--allow-all", "--no-check", "--filter", exact, t.origin],
      cwd: REPO_ROOT,
      env: { [OWN_PROCESS_ENV]: t.name, NO_COLOR: "1" },
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.ok(out.success, `in a process of its own, the test failed:\n${text}`);
    // A filter matching nothing succeeds too: make sure the test ran.
    assert.match(text, /\| 1 passed \|/, `the test did not run in its own process:\n${text}`);
  };
}
