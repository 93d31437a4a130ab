/**
 * Every module the CLI loads through `importLazily` (`os/lazy_import.ts`), imported statically.
 *
 * Nothing imports this module. `deno compile` embeds only what it can see from `main.ts`, and
 * lazily imported specifiers are invisible by design, so the release build passes this file to
 * `--include` (`.github/workflows/release.yml`, `deno.json`'s `compile` task). A test checks that
 * every `importLazily` call in the source names a module listed here.
 *
 * @module
 */

import "../replicas/age/mod.ts";
import "../replicas/abs/client.ts";
import "../replicas/gcs/client.ts";
import "../replicas/s3/client.ts";
import "../replicas/sftp/mod.ts";
import "yaml";
import "lz4-wasm-nodejs";
