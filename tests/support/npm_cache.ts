/**
 * npm packages that tests run as programs (Litestream v0.3.13, Azurite), installed once into
 * the git-ignored cache `<repo>/.cache/<name>/`. Test files run in parallel processes, so the
 * install goes to a private temporary directory that is renamed into place: a rename is atomic,
 * so the cache directory is either absent or complete.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** Absolute path of the repository root (derived from this file, not from the cwd). */
export const REPO_ROOT: string = fileURLToPath(new URL("../../", import.meta.url)).replace(
  /\/$/,
  "",
);

/** What to install and how to tell that an install works. */
export interface CachedPackage {
  /** `name@version` for `npm install`. */
  spec: string;
  /** Directory name under `<repo>/.cache/`. */
  dir: string;
  /** True when the install prefix `prefix` holds a working copy. */
  works(prefix: string): Promise<boolean>;
}

/**
 * Returns the install prefix of `pkg` (`<repo>/.cache/<dir>`), installing it with
 * `npm install --prefix` on first use. Safe to call concurrently from several processes.
 */
export async function installCached(pkg: CachedPackage): Promise<string> {
  const parent = `${REPO_ROOT}/.cache`;
  const prefix = `${parent}/${pkg.dir}`;
  if (await pkg.works(prefix)) return prefix;

  await Deno.mkdir(parent, { recursive: true });
  // Same filesystem as the cache so the final rename is atomic.
  const staging = await Deno.makeTempDir({ dir: parent, prefix: `${pkg.dir}.tmp-` });
  try {
    const npm = await new Deno.Command("npm", {
      args: ["install", "--prefix", staging, "--no-audit", "--no-fund", "--silent", pkg.spec],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!npm.success) {
      throw new Error(
        `npm install ${pkg.spec} failed (exit ${npm.code}): ${
          new TextDecoder().decode(npm.stderr)
        }`,
      );
    }
    if (!(await pkg.works(staging))) throw new Error(`${staging}: ${pkg.spec} does not work`);
    try {
      await Deno.rename(staging, prefix);
    } catch (err) {
      // Usually another process won the race, and its complete install is as good as ours.
      if (!(await pkg.works(prefix))) {
        // Otherwise something that is not a working install occupies the cache path (the
        // rename protocol never leaves a partial one): replace it.
        await Deno.remove(prefix, { recursive: true }).catch(() => {});
        await Deno.rename(staging, prefix).catch((again) => {
          throw new Error(`cannot move ${staging} to ${prefix}: ${again}`, { cause: err });
        });
      }
    }
  } finally {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
  }
  if (!(await pkg.works(prefix))) {
    throw new Error(`installed ${pkg.spec} in ${prefix} but it does not work`);
  }
  return prefix;
}
