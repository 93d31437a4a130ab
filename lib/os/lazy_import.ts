/**
 * Imports that `deno run` does not prepare at start-up.
 *
 * Deno builds the module graph of `main.ts` before its first line runs, following every
 * `import("literal")`. Once any npm package is in that graph, Deno sets up npm resolution for
 * the whole lockfile: 12–15 ms of every command on this machine, even `version`, and a fifth of
 * a snapshot-only restore's start-up. Modules that pull in npm packages (the S3, GCS, Azure and
 * SFTP backends, age, the YAML parser, the LZ4 WASM encoder) are therefore imported through
 * {@linkcode importLazily}, whose specifier Deno cannot see in advance.
 *
 * The cost moves to the command that uses them, with one difference a user can meet: a local
 * module loaded this way needs read access to its file under `deno run` (npm packages do not).
 * `deno compile` does not see these imports either: `lib/lazy_modules.ts` imports every one of
 * them statically and the release build passes it to `--include`.
 *
 * @module
 */

/**
 * Imports `specifier` (a bare npm name from `deno.json`, or an absolute URL built with
 * `new URL(path, import.meta.url)`) without making it part of the start-up graph. Every
 * specifier passed here must also be imported by `lib/lazy_modules.ts`. A module Deno may not
 * read rejects with `Deno.errors.NotCapable`, its message naming the file and the flag.
 */
export async function importLazily<T>(specifier: string | URL): Promise<T> {
  try {
    return await import(String(specifier));
  } catch (err) {
    // Deno reports a module it may not read as a TypeError; give it the type of every other
    // missing permission, so the command line names the flag in one line.
    if (err instanceof TypeError && /^Requires .* --allow-[a-z]+/.test(err.message)) {
      throw new Deno.errors.NotCapable(err.message, { cause: err });
    }
    throw err;
  }
}
