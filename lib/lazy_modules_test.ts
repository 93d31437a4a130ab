import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = new URL("../", import.meta.url);

/** The `.ts` files under `dir` (a directory URL), tests left out: they are not compiled. */
function* sources(dir: URL): Generator<URL> {
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.name.startsWith(".")) continue;
    if (entry.isDirectory) yield* sources(new URL(`${entry.name}/`, dir));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
      yield new URL(entry.name, dir);
    }
  }
}

/**
 * What each `importLazily` call in `text` loads: a bare npm name, or a URL resolved against
 * `file` (the calls are written `importLazily<T>(new URL("path", import.meta.url))`).
 */
function lazySpecifiers(text: string, file: URL): string[] {
  const call =
    /importLazily<[^>]*>\(\s*(?:new URL\(\s*"([^"]+)",\s*import\.meta\.url\s*\)|"([^"]+)")/g;
  return [...text.matchAll(call)].map(([, path, bare]) => path ? new URL(path, file).href : bare);
}

/** What a module imports statically, resolved like {@linkcode lazySpecifiers}. */
function staticImports(file: URL): string[] {
  const text = Deno.readTextFileSync(file);
  return [...text.matchAll(/^import "([^"]+)";$/gm)].map(([, s]) =>
    s.startsWith(".") ? new URL(s, file).href : s
  );
}

Deno.test("lazy_modules.ts names every module loaded through importLazily, so compile embeds it", () => {
  const listed = new Set(staticImports(new URL("lib/lazy_modules.ts", ROOT)));
  const used = new Set<string>();
  for (const dir of ["lib/", "replicas/", "deploy/"]) {
    for (const file of sources(new URL(dir, ROOT))) {
      for (const s of lazySpecifiers(Deno.readTextFileSync(file), file)) used.add(s);
    }
  }
  for (const s of lazySpecifiers(Deno.readTextFileSync(new URL("main.ts", ROOT)), ROOT)) {
    used.add(s);
  }
  // The backends, age, yaml and the LZ4 encoder at least: a regex gone blind finds nothing.
  assert.ok(used.size >= 7, `found only ${[...used].join(", ")}`);
  const missing = [...used].filter((s) => !listed.has(s));
  assert.deepEqual(missing, [], `add to lib/lazy_modules.ts: ${missing.join(", ")}`);
  const stale = [...listed].filter((s) => !used.has(s));
  assert.deepEqual(
    stale,
    [],
    `no longer loaded lazily: ${
      stale.map((s) => s.startsWith("file:") ? fileURLToPath(s) : s).join(", ")
    }`,
  );
});
