/**
 * A Deno Deploy cron job that validates S3, Google Cloud Storage and Azure Blob
 * Storage replicas with no disk, no FFI and no subprocess: every object is
 * checked and each generation's snapshots and WAL are replayed into checksums
 * in memory (see `validateReplicaObjects`). Each backend's code is loaded only
 * when a URL names it.
 *
 * Environment:
 * - `LITESTREAM_VALIDATE_REPLICAS`: replica URLs (`s3://bucket/path`, `gcs://bucket/path`,
 *   `abs://account@container/path`), comma or newline separated.
 * - `LITESTREAM_VALIDATE_ENDPOINT`: another endpoint than the store's own (an S3-compatible
 *   store without a URL preset, a sovereign Azure cloud, an emulator); applies to every URL.
 * - `LITESTREAM_VALIDATE_REGION`: the S3 region where the URL does not imply it.
 * - `LITESTREAM_ACCESS_KEY_ID`/`LITESTREAM_SECRET_ACCESS_KEY` (or the `AWS_*` ones): S3 credentials.
 * - `LITESTREAM_VALIDATE_GCS_CREDENTIALS`: the JSON of a Google service-account key (there is no
 *   file to name in `GOOGLE_APPLICATION_CREDENTIALS`, which is still read where one exists);
 *   `STORAGE_EMULATOR_HOST` as Google's libraries read it.
 * - `LITESTREAM_AZURE_ACCOUNT_KEY`: the Azure storage account's key.
 * - `LITESTREAM_VALIDATE_SCHEDULE`: cron schedule (default hourly, `0 * * * *`).
 * - `LITESTREAM_VALIDATE_WEBHOOK`: URL that receives the JSON summary by POST when validation fails.
 * - `LITESTREAM_VALIDATE_AGE_IDENTITIES`: age identities (`AGE-SECRET-KEY-1…`, separated by
 *   newlines or commas) for replicas written with an `age` block; objects are decrypted in memory.
 *
 * Run locally: `deno run -A --unstable-cron deploy/validate.ts`.
 *
 * @module
 */

import { LitestreamError } from "../lib/errors.ts";
import { type GenerationReport, validateReplicaObjects } from "../lib/validate/position.ts";
import { replicaConfigFromUrl } from "../lib/cli/config.ts";
import type { ReplicaClient } from "../lib/replica_client.ts";

/** Where `LITESTREAM_VALIDATE_GCS_CREDENTIALS` is read from (named in its errors). */
const GCS_CREDENTIALS = "LITESTREAM_VALIDATE_GCS_CREDENTIALS";

/** The outcome of one run, as logged and posted. */
export interface ValidationSummary {
  ok: boolean;
  checkedAt: string;
  replicas: { url: string; ok: boolean; error?: string; generations: GenerationReport[] }[];
}

/** Validates every replica named in `env`; never throws for a replica's failure (it is in the summary). */
export async function validateReplicas(
  env: Record<string, string | undefined>,
  post: typeof fetch = fetch,
): Promise<ValidationSummary> {
  const urls = (env.LITESTREAM_VALIDATE_REPLICAS ?? "").split(/[,\n]/).map((s) => s.trim()).filter(
    Boolean,
  );
  if (urls.length === 0) {
    throw new LitestreamError("LITESTREAM_VALIDATE_REPLICAS names no replica URL");
  }
  const summary: ValidationSummary = {
    ok: true,
    checkedAt: new Date().toISOString(),
    replicas: [],
  };
  for (const url of urls) {
    const entry: ValidationSummary["replicas"][number] = { url, ok: false, generations: [] };
    summary.replicas.push(entry);
    try {
      let client = await backendClient(url, env);
      const identities = env.LITESTREAM_VALIDATE_AGE_IDENTITIES;
      if (identities) {
        const age = await import("../replicas/age/mod.ts");
        const cfg = age.ageIdentitiesFromEnv("LITESTREAM_VALIDATE_AGE_IDENTITIES", identities);
        client = age.ageClientFromConfig(client, cfg);
      }
      try {
        entry.generations = await validateReplicaObjects(url, client);
      } finally {
        await (client as { close?: () => Promise<void> }).close?.();
      }
      if (entry.generations.length === 0) throw new LitestreamError(`${url}: no generations found`);
      entry.ok = entry.generations.every((g) => g.ok);
    } catch (err) {
      entry.error = err instanceof Error ? err.message : String(err);
    }
    summary.ok &&= entry.ok;
  }
  console.log(JSON.stringify(summary));
  if (!summary.ok && env.LITESTREAM_VALIDATE_WEBHOOK) {
    const res = await post(env.LITESTREAM_VALIDATE_WEBHOOK, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(summary),
    });
    await res.body?.cancel();
    if (!res.ok) console.error(`webhook answered ${res.status}`);
  }
  return summary;
}

/** The store's client for a replica URL, its settings and credentials taken from `env`. */
async function backendClient(
  url: string,
  env: Record<string, string | undefined>,
): Promise<ReplicaClient> {
  const cfg = replicaConfigFromUrl(url);
  const endpoint = env.LITESTREAM_VALIDATE_ENDPOINT || undefined;
  if (cfg.type === "s3") {
    const { s3ClientFromConfig } = await import("../replicas/s3/client.ts");
    return s3ClientFromConfig({
      ...cfg,
      endpoint,
      region: env.LITESTREAM_VALIDATE_REGION || undefined,
      accessKeyId: env.LITESTREAM_ACCESS_KEY_ID || env.AWS_ACCESS_KEY_ID || undefined,
      secretAccessKey: env.LITESTREAM_SECRET_ACCESS_KEY || env.AWS_SECRET_ACCESS_KEY || undefined,
    });
  }
  if (cfg.type === "gcs") {
    const gcs = await import("../replicas/gcs/mod.ts");
    const key = env[GCS_CREDENTIALS];
    return new gcs.GcsReplicaClient(gcs.gcsOptionsFromConfig(cfg), {}, {
      endpoint,
      env: { ...gcs.processEnv, get: (name) => env[name] },
      credentials: key ? gcs.credentialsFromJson(url, key, GCS_CREDENTIALS) : undefined,
    });
  }
  if (cfg.type === "abs") {
    const abs = await import("../replicas/abs/mod.ts");
    try {
      return new abs.AbsReplicaClient(
        abs.absOptionsFromConfig({ ...cfg, endpoint }, (name) => env[name]),
      );
    } catch (err) {
      if (err instanceof abs.AbsConfigError) throw new LitestreamError(`${url}: ${err.message}`);
      throw err;
    }
  }
  throw new LitestreamError(
    `${url}: ${cfg.type} replicas cannot be validated here (s3, gcs and abs can)`,
  );
}

if (import.meta.main || Deno.env.get("DENO_DEPLOYMENT_ID")) {
  const schedule = Deno.env.get("LITESTREAM_VALIDATE_SCHEDULE") || "0 * * * *";
  Deno.cron("litestream validate", schedule, async () => {
    await validateReplicas(Deno.env.toObject());
  });
}
