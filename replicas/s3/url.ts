/**
 * S3 replica options, `s3://` URL parsing with v0.3.13's host presets (plus
 * a few newer providers), and config-entry validation. Deliberately free of
 * the AWS SDK, which costs ~30 MB: the rest of replicas/s3/ (see mod.ts),
 * which loads it, is imported only when an S3 replica is actually configured.
 *
 * @module
 */

import { LitestreamError } from "../../lib/errors.ts";

/** Settings of one S3 replica (config keys of the v0.3.13 `replicas[]` entry). */
export interface S3Options {
  bucket: string;
  /** Key prefix without leading or trailing `/`; `""` = bucket root (see `cleanS3Path`). */
  path: string;
  /** `""` or absent: `us-east-1` with an endpoint, else looked up with GetBucketLocation. */
  region?: string;
  /** Endpoint URL with scheme for non-AWS servers; `""` or absent = AWS. */
  endpoint?: string;
  /** Path-style URLs (`host/bucket/key`); default `true` when an endpoint is set. */
  forcePathStyle?: boolean;
  /** Accept any TLS certificate from the endpoint. */
  skipVerify?: boolean;
  /** Static credentials; both empty/absent = environment or the AWS default chain. */
  accessKeyId?: string;
  secretAccessKey?: string;
}

/** What an `s3://` URL determines; config fields may add to it (region, keys, …). */
export type S3UrlOptions = Required<
  Pick<S3Options, "bucket" | "path" | "region" | "endpoint" | "forcePathStyle">
>;

/** One provider whose host names carry the bucket (and region) for `s3://` URLs. */
interface HostPreset {
  /** Group 1 = bucket; named group `region` = region, or `account` (R2): the endpoint's label. */
  pattern: RegExp;
  /** Endpoint (without port) from the `region` or `account` group. */
  endpoint: (label: string) => string;
  /** Region when the pattern has none. */
  region?: string;
}

/**
 * Host presets. The first six are v0.3.13's regexes as written (some dots
 * unescaped); R2, Tigris, Wasabi and Hetzner are additions. R2's bucket group
 * is lazy so a jurisdiction label (`.eu.`) is not taken for the account.
 */
const HOST_PRESETS: HostPreset[] = [
  {
    pattern: /^(?:(.+)\.)?localhost$/,
    endpoint: () => "http://localhost",
    region: "us-east-1",
  },
  {
    pattern: /^(?:(.+)\.)?s3.(?<region>[^.]+)\.backblazeb2.com$/,
    endpoint: (r) => `https://s3.${r}.backblazeb2.com`,
  },
  {
    pattern: /^(?:(.+)\.)?s3.filebase.com$/,
    endpoint: () => "https://s3.filebase.com",
  },
  {
    pattern: /^(?:(.+)\.)?(?<region>[^.]+)\.digitaloceanspaces.com$/,
    endpoint: (r) => `https://${r}.digitaloceanspaces.com`,
  },
  {
    pattern: /^(?:(.+)\.)?s3.(?<region>[^.]+)\.scw\.cloud$/,
    endpoint: (r) => `https://s3.${r}.scw.cloud`,
  },
  {
    pattern: /^(?:(.+)\.)?(?<region>[^.]+)\.linodeobjects.com$/,
    endpoint: (r) => `https://${r}.linodeobjects.com`,
  },
  {
    // Cloudflare R2: <account>[.eu|.fedramp].r2.cloudflarestorage.com, region "auto".
    pattern: /^(?:(.+?)\.)?(?<account>[^.]+(?:\.(?:eu|fedramp))?)\.r2\.cloudflarestorage\.com$/,
    endpoint: (account) => `https://${account}.r2.cloudflarestorage.com`,
    region: "auto",
  },
  {
    pattern: /^(?:(.+)\.)?fly\.storage\.tigris\.dev$/,
    endpoint: () => "https://fly.storage.tigris.dev",
    region: "auto",
  },
  {
    pattern: /^(?:(.+)\.)?t3\.storage\.dev$/,
    endpoint: () => "https://t3.storage.dev",
    region: "auto",
  },
  {
    // Wasabi: s3.<region>.wasabisys.com, or s3.wasabisys.com for us-east-1.
    pattern: /^(?:(.+)\.)?s3(?:\.(?<region>[^.]+))?\.wasabisys\.com$/,
    endpoint: (r) => r ? `https://s3.${r}.wasabisys.com` : "https://s3.wasabisys.com",
  },
  {
    // Hetzner: <location>.your-objectstorage.com (fsn1, nbg1, hel1, …).
    pattern: /^(?:(.+)\.)?(?<region>[^.]+)\.your-objectstorage\.com$/,
    endpoint: (r) => `https://${r}.your-objectstorage.com`,
  },
];

/**
 * Parses `s3://bucket[.provider-host][:port]/prefix` as v0.3.13 does: known
 * provider hosts yield bucket, region and endpoint (path-style); any other host
 * is the bucket itself on AWS (its port discarded). The prefix is cleaned
 * (`cleanS3Path`). Throws `LitestreamError` for another scheme or no bucket.
 */
export function parseS3Url(url: string): S3UrlOptions {
  let u: URL;
  let path: string;
  try {
    u = new URL(url);
    path = cleanS3Path(decodeURIComponent(u.pathname));
  } catch {
    throw new LitestreamError(`invalid replica URL: ${url}`);
  }
  if (u.protocol !== "s3:") throw new LitestreamError(`not an s3 replica URL: ${url}`);
  const port = u.port ? `:${u.port}` : "";
  for (const preset of HOST_PRESETS) {
    const m = preset.pattern.exec(u.hostname);
    if (!m) continue;
    const label = m.groups?.region ?? m.groups?.account ?? "";
    const bucket = m[1] ?? "";
    if (!bucket) throw new LitestreamError("bucket required for s3 replica");
    return {
      bucket,
      path,
      region: preset.region ?? (m.groups?.region ?? ""),
      endpoint: preset.endpoint(label) + port,
      forcePathStyle: true,
    };
  }
  if (!u.hostname) throw new LitestreamError("bucket required for s3 replica");
  return { bucket: u.hostname, path, region: "", endpoint: "", forcePathStyle: false };
}

/**
 * Cleans an S3 key prefix like Go's `path.Clean` and drops the leading `/`,
 * with `""` for the root. v0.3.13 kept a leading `/` from config `path` in its
 * list prefixes while the SDK stored objects without it, so it never found its
 * own snapshots; stripping it matches where v0.3.13 actually stored objects.
 */
export function cleanS3Path(path: string): string {
  const rooted = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part !== "..") out.push(part);
    else if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else if (!rooted) out.push(part); // `..` above a relative root survives, as in Go.
  }
  return out.join("/");
}

/** The S3 fields of a replica config entry (`ReplicaConfig` of lib/config.ts fits). */
export interface S3ReplicaConfig {
  url?: string;
  path?: string;
  bucket?: string;
  region?: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  skipVerify?: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
}

/**
 * Combines a config entry's `url` and fields as v0.3.13 does: fields win over
 * what the URL implies, except that a URL-implied path style wins over a
 * `false`. Throws `LitestreamError` with v0.3.13's wording for bad combinations.
 */
export function s3OptionsFromConfig(cfg: S3ReplicaConfig): S3Options {
  if (cfg.url && cfg.path) throw new LitestreamError("cannot specify url & path for s3 replica");
  if (cfg.url && cfg.bucket) {
    throw new LitestreamError("cannot specify url & bucket for s3 replica");
  }
  const u = cfg.url ? parseS3Url(cfg.url) : undefined;
  const bucket = cfg.bucket || u?.bucket || "";
  if (!bucket) throw new LitestreamError("bucket required for s3 replica");
  return {
    bucket,
    path: cleanS3Path(cfg.path || u?.path || ""),
    region: cfg.region || u?.region || "",
    endpoint: cfg.endpoint || u?.endpoint || "",
    // Path style by default only for an explicit endpoint; URL presets force it too.
    forcePathStyle: (cfg.forcePathStyle ?? !!cfg.endpoint) || !!u?.forcePathStyle,
    skipVerify: cfg.skipVerify ?? false,
    accessKeyId: cfg.accessKeyId ?? "",
    secretAccessKey: cfg.secretAccessKey ?? "",
  };
}
