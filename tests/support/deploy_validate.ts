/**
 * Runs deploy/validate.ts as its cron job would, in a subprocess with only the permissions and
 * environment that Deno Deploy gives it, for the validator's end-to-end tests.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type { validateReplicas } from "../../deploy/validate.ts";
import { REPO_ROOT } from "./npm_cache.ts";

/** The validator module. */
export const DEPLOY_VALIDATE: string = join(REPO_ROOT, "deploy/validate.ts");

/** The summary `validateReplicas` returns, logs and posts. */
export type Summary = Awaited<ReturnType<typeof validateReplicas>>;

/**
 * Runs a script that imports deploy/validate.ts and calls `validateReplicas(Deno.env.toObject())`
 * as the cron job does, with read, net and env permission (plus `extraFlags`) and nothing else,
 * in an environment holding only `env`. Returns the summary and the permissions the script saw.
 */
export async function runRestrictedValidate(
  dir: string,
  env: Record<string, string>,
  extraFlags: string[] = [],
) {
  const script = join(dir, "run_validate.ts");
  await Deno.writeTextFile(
    script,
    `import { validateReplicas } from ${JSON.stringify(`file://${DEPLOY_VALIDATE}`)};\n` +
      `const perms = ["write", "ffi", "run"].map((name) => ` +
      `[name, Deno.permissions.querySync({ name }).state]);\n` +
      `const summary = await validateReplicas(Deno.env.toObject());\n` +
      `console.log("RESULT " + JSON.stringify({ perms, summary }));\n`,
  );
  const started = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--config",
      join(REPO_ROOT, "deno.json"),
      "--frozen",
      "--allow-read",
      "--allow-net",
      "--allow-env",
      ...extraFlags,
      "--unstable-cron",
      script,
    ],
    // Only what Deno itself needs to find its cache, plus the job's environment.
    env: {
      NO_COLOR: "1",
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "/",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
      ...env,
    },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const ms = performance.now() - started;
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
  const detail = `exit ${out.code}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
  assert.ok(line, detail);
  assert.equal(out.code, 0, detail);
  const { perms, summary } = JSON.parse(line.slice(7)) as {
    perms: [string, string][];
    summary: Summary;
  };
  return { perms, summary, detail, ms };
}
