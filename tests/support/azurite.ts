/**
 * Azurite, Microsoft's Blob Storage emulator, for `abs` tests and benchmarks: installed once from
 * npm (`azurite`) into `<repo>/.cache/azurite/` and run with Node as
 * `azurite-blob --inMemoryPersistence` on a free loopback port, with the well-known
 * `devstoreaccount1` account. `deno run -A tests/support/azurite.ts` only installs it (`.ci/run`
 * does that on a fresh machine).
 *
 * @module
 */

import { ContainerClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { installCached } from "./npm_cache.ts";
import type { YamlKeys } from "./config_yaml.ts";
import { freePort } from "./net.ts";
import { waitFor } from "./poll.ts";
import type { AbsOptions } from "../../replicas/abs/url.ts";
import { AbsReplicaClient } from "../../replicas/abs/client.ts";
import type { AbsTuning } from "../../replicas/abs/sdk.ts";

/** Azurite's well-known account and key (published by Microsoft for the emulator). */
export const AZURITE_ACCOUNT = "devstoreaccount1";
/** The published key of `devstoreaccount1`. */
export const AZURITE_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const PACKAGE = "azurite@3.37.0";
const BIN = "node_modules/.bin/azurite-blob";

/** A running Azurite blob service. */
export interface TestAzurite extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: the host, without the account. */
  readonly host: string;
  /** `http://127.0.0.1:<port>/devstoreaccount1`: the `endpoint` key of an `abs` replica. */
  readonly endpoint: string;
  /** Creates a container (if missing) and returns its name. */
  container(name: string): Promise<string>;
  /** Stops the server (its in-memory data is gone). */
  close(): Promise<void>;
}

/** The install prefix of Azurite, installing it on first use (safe across processes). */
export function installAzurite(): Promise<string> {
  return installCached({
    spec: PACKAGE,
    dir: "azurite",
    works: async (prefix) => {
      try {
        return (await Deno.stat(`${prefix}/${BIN}`)).isFile;
      } catch {
        return false;
      }
    },
  });
}

/** Starts Azurite's blob service on a free loopback port; `await using` stops it. */
export async function startAzurite(): Promise<TestAzurite> {
  const prefix = await installAzurite();
  const port = freePort();
  // Azurite writes debug and lock files in its working directory even in memory mode.
  const cwd = await Deno.makeTempDir({ prefix: "azurite-" });
  const child = new Deno.Command(`${prefix}/${BIN}`, {
    args: [
      "--blobHost",
      "127.0.0.1",
      "--blobPort",
      String(port),
      "--inMemoryPersistence",
      "--skipApiVersionCheck",
      "--silent",
    ],
    cwd,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let exited = false;
  child.status.then(() => exited = true);
  const host = `http://127.0.0.1:${port}`;
  const endpoint = `${host}/${AZURITE_ACCOUNT}`;
  const close = async () => {
    // SIGTERM waits for clients' idle keep-alive connections (minutes); memory holds nothing to save.
    if (!exited) child.kill("SIGKILL");
    await child.status;
    await stderr.catch(() => "");
    await Deno.remove(cwd, { recursive: true }).catch(() => {});
  };
  try {
    await waitFor("Azurite to answer", async () => {
      if (exited) throw new Error(`Azurite exited: ${await stderr}`);
      const res = await fetch(endpoint + "?comp=list").catch(() => undefined);
      await res?.body?.cancel();
      return res !== undefined;
    }, 60_000);
  } catch (err) {
    await close();
    throw err;
  }
  const credential = new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY);
  return {
    host,
    endpoint,
    container: async (name) => {
      await new ContainerClient(`${endpoint}/${name}`, credential).createIfNotExists();
      return name;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Options of an `abs` replica on `srv`'s container `container` under `path`. */
export function azuriteOptions(
  srv: { endpoint: string },
  container: string,
  path: string,
): AbsOptions {
  return {
    accountName: AZURITE_ACCOUNT,
    accountKey: AZURITE_KEY,
    container,
    path,
    endpoint: srv.endpoint,
  };
}

/** A client for the replica at `path` in `container` of `srv` (or another endpoint, a proxy). */
export function azuriteClient(
  srv: { endpoint: string },
  container: string,
  path: string,
  tuning?: AbsTuning,
): AbsReplicaClient {
  return new AbsReplicaClient(azuriteOptions(srv, container, path), tuning);
}

/** The YAML keys of an `abs` replica on Azurite (for `configYaml`). */
export function absReplicaKeys(endpoint: string, container: string, path: string): YamlKeys {
  return {
    type: "abs",
    "account-name": AZURITE_ACCOUNT,
    "account-key": AZURITE_KEY,
    bucket: container,
    path,
    endpoint,
  };
}

if (import.meta.main) console.log(await installAzurite());
