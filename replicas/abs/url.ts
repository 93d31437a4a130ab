/**
 * Azure Blob Storage replica options: `abs://[account@]container/path` URLs
 * and config entries combined exactly as v0.3.13 does, the account key from
 * `account-key` or `LITESTREAM_AZURE_ACCOUNT_KEY`, and the default endpoint
 * `https://<account>.blob.core.windows.net`. Free of the Azure SDK: config
 * parsing uses this module; the rest of `replicas/abs/` loads the SDK.
 *
 * @module
 */

import { LitestreamError } from "../../lib/errors.ts";

/** Settings of one `abs` replica. */
export interface AbsOptions {
  /** Storage account name. */
  accountName: string;
  /** Storage account key (base64), from the config or `LITESTREAM_AZURE_ACCOUNT_KEY`. */
  accountKey: string;
  /** Container (the config's `bucket`). */
  container: string;
  /** Key prefix as v0.3.13 joins it (Go's `path.Join`); `""` = container root. */
  path: string;
  /** Service URL: `https://<account>.blob.core.windows.net`, or the configured `endpoint`. */
  endpoint: string;
}

/** The `abs` fields of a replica config entry (`ReplicaConfig` of lib/cli fits). */
export interface AbsReplicaConfig {
  url?: string;
  path?: string;
  bucket?: string;
  endpoint?: string;
  accountName?: string;
  accountKey?: string;
}

/** The environment variable v0.3.13 reads when `account-key` is not set. */
export const ACCOUNT_KEY_ENV = "LITESTREAM_AZURE_ACCOUNT_KEY";

/** A bad `abs` setting; `key` is the config key to fix (`account-name`, `bucket`, …). */
export class AbsConfigError extends LitestreamError {
  /** Creates an error about config key `key`. */
  constructor(readonly key: string, readonly detail: string) {
    super(`${key}: ${detail}`);
  }
}

/** What an `abs://[account@]container/path` URL determines. */
export interface AbsUrlParts {
  accountName: string;
  container: string;
  path: string;
}

/** Parses `abs://[account@]container/path` as v0.3.13 (Go's `url.Parse`, `path.Clean`). */
export function parseAbsUrl(url: string): AbsUrlParts {
  const m = /^abs:\/\/(?:([^@/]*)@)?([^/?#]*)([^?#]*)/i.exec(url);
  if (!m) throw new AbsConfigError("url", `not an abs replica URL: ${url}`);
  try {
    return {
      accountName: decodeURIComponent(m[1] ?? ""),
      container: decodeURIComponent(m[2]),
      path: goPathClean(decodeURIComponent(m[3])).replace(/^\//, ""),
    };
  } catch {
    throw new AbsConfigError("url", `invalid replica URL: ${url}`);
  }
}

/**
 * Combines a config entry's `url` and fields as v0.3.13 does (fields win over
 * the URL), then checks what v0.3.13 would only find out at the first request:
 * an account name, an account key that is base64, an endpoint that is a URL.
 * Throws `AbsConfigError` naming the key to fix.
 */
export function absOptionsFromConfig(
  cfg: AbsReplicaConfig,
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): AbsOptions {
  if (cfg.url && cfg.path) {
    throw new AbsConfigError("path", "cannot specify url & path for abs replica");
  }
  if (cfg.url && cfg.bucket) {
    throw new AbsConfigError("bucket", "cannot specify url & bucket for abs replica");
  }
  const u = cfg.url ? parseAbsUrl(cfg.url) : undefined;
  const container = cfg.bucket || u?.container || "";
  if (!container) {
    throw new AbsConfigError("bucket", "bucket (the container) required for abs replica");
  }
  const accountName = cfg.accountName || u?.accountName || "";
  if (!accountName) {
    throw new AbsConfigError(
      "account-name",
      "storage account name required for abs replica (account-name, or abs://ACCOUNT@container/path)",
    );
  }
  const accountKey = cfg.accountKey || env(ACCOUNT_KEY_ENV) || "";
  if (!accountKey) {
    throw new AbsConfigError(
      "account-key",
      `storage account key required for abs replica: set account-key or ${ACCOUNT_KEY_ENV}`,
    );
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(accountKey) || accountKey.length % 4 !== 0) {
    throw new AbsConfigError("account-key", "not a base64 storage account key");
  }
  const endpoint = (cfg.endpoint || `https://${accountName}.blob.core.windows.net`)
    .replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/i.test(endpoint)) {
    throw new AbsConfigError(
      "endpoint",
      `invalid endpoint "${cfg.endpoint}": expected a URL such as http://127.0.0.1:10000/devstoreaccount1`,
    );
  }
  return { accountName, accountKey, container, path: cfg.path ?? u?.path ?? "", endpoint };
}

/**
 * Go's `path.Join` of non-empty parts followed by `path.Clean`, as v0.3.13
 * builds blob names (`path.Join(root, "generations", …)`): a leading `/` is
 * kept, `.` and `..` are resolved, `""` stays `""`.
 */
export function goPathJoin(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/");
  return joined === "" ? "" : goPathClean(joined);
}

/** Go's `path.Clean` (`""` becomes `"."`). */
export function goPathClean(path: string): string {
  const rooted = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part !== "..") out.push(part);
    else if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else if (!rooted) out.push(part);
  }
  const body = out.join("/");
  return rooted ? "/" + body : body || ".";
}
