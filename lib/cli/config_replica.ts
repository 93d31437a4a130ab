/**
 * One replica's configuration (`dbs[].replicas[]`, spec §7.4) and bare replica URLs (spec
 * §7.5): v0.3.13's keys and defaults, with errors naming the file and the key. A new backend
 * adds its type and keys here and one branch in `replica_client_from_config.ts`.
 *
 * @module
 */

import { ConfigError, LitestreamError } from "../errors.ts";
import type { Validator } from "./config_validator.ts";
import { SftpConfigError, sftpOptions } from "../../replicas/sftp/config.ts";
import { AbsConfigError, absOptionsFromConfig } from "../../replicas/abs/url.ts";
import {
  type AgeConfig,
  type AgeKey,
  type AgeKeyKind,
  parseAgeKeys,
} from "../../replicas/age/keys.ts";

import { gcsOptionsFromConfig } from "../../replicas/gcs/url.ts";

export type { AgeConfig, AgeKey };

/** Settings of one replica (`dbs[].replicas[]`). Intervals are in milliseconds. */
export interface ReplicaConfig {
  name: string;
  type: string;
  /** Directory (file) or key prefix (s3, abs, gcs). */
  path?: string;
  url?: string;
  /** Bucket (s3) or container (abs). */
  bucket?: string;
  region?: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  skipVerify: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** SFTP server, `host[:port]` (sftp). */
  host?: string;
  /** SFTP login user (sftp). */
  user?: string;
  /** SFTP password (sftp). */
  password?: string;
  /** Private key file for SFTP logins (sftp). */
  keyPath?: string;
  /** The SFTP server's expected public key, `type base64` as in known_hosts (sftp). */
  hostKey?: string;
  /** Storage account (abs). */
  accountName?: string;
  /** Storage account key (abs); else `LITESTREAM_AZURE_ACCOUNT_KEY`. */
  accountKey?: string;
  syncInterval: number;
  snapshotInterval: number;
  retention: number;
  retentionCheckInterval: number;
  validationInterval: number;
  /** Encryption: set when the `age` block names at least one key. */
  age?: AgeConfig;
}

/** Replica defaults (v0.3.13). */
export const REPLICA_DEFAULTS = {
  syncInterval: 1000,
  snapshotInterval: 0,
  retention: 24 * 3_600_000,
  retentionCheckInterval: 3_600_000,
  validationInterval: 0,
} as const;

const REPLICA_KEYS = [
  "type",
  "name",
  "path",
  "url",
  "bucket",
  "region",
  "endpoint",
  "force-path-style",
  "skip-verify",
  "access-key-id",
  "secret-access-key",
  "host",
  "user",
  "password",
  "key-path",
  "host-key",
  "account-name",
  "account-key",
  "sync-interval",
  "snapshot-interval",
  "retention",
  "retention-check-interval",
  "validation-interval",
  "age",
];

/** Replica types this implementation reads. */
const SUPPORTED_TYPES = ["file", "s3", "sftp", "abs", "gcs"];

/** True when a string looks like a URL (`scheme://`), as v0.3.13 decides. */
export function isUrl(s: string): boolean {
  return /^\w+:\/\//.test(s);
}

/** Parses one `dbs[].replicas[]` entry; `key` names it in errors (e.g. `dbs[0].replicas[1]`). */
export function parseReplica(
  v: Validator,
  raw: unknown,
  key: string,
  globalKeys: { accessKeyId?: string; secretAccessKey?: string },
): ReplicaConfig {
  const o = v.object(raw, key);
  v.unknownKeys(o, REPLICA_KEYS, `${key}.`);
  const url = v.string(o.url, `${key}.url`);
  const path = v.string(o.path, `${key}.path`);
  let type = v.string(o.type, `${key}.type`);
  if (url) {
    if (!isUrl(url)) {
      throw new ConfigError(v.file, `${key}.url`, `not a URL: ${JSON.stringify(url)}`);
    }
    type = url.slice(0, url.indexOf(":")).toLowerCase();
  }
  type ||= "file";
  if (!SUPPORTED_TYPES.includes(type)) {
    throw new ConfigError(
      v.file,
      url ? `${key}.url` : `${key}.type`,
      `unknown replica type in config: ${JSON.stringify(type)}`,
    );
  }
  if (path && isUrl(path)) {
    throw new ConfigError(v.file, `${key}.path`, "replica path cannot be a URL; use url:");
  }
  if (type === "file") {
    if (url && path) {
      throw new ConfigError(v.file, `${key}.path`, "cannot specify url & path for file replica");
    }
    if (!url && !path) throw new ConfigError(v.file, `${key}.path`, "file replica path required");
  }
  const host = v.string(o.host, `${key}.host`);
  if (type === "sftp" && url) {
    // v0.3.13's rules: the URL's path and host cannot be overridden by keys.
    if (path) {
      throw new ConfigError(v.file, `${key}.path`, "cannot specify url & path for sftp replica");
    }
    if (host) {
      throw new ConfigError(v.file, `${key}.host`, "cannot specify url & host for sftp replica");
    }
  }
  if (type === "gcs") {
    const bucket = v.string(o.bucket, `${key}.bucket`);
    try {
      gcsOptionsFromConfig({ url, path, bucket });
    } catch (err) {
      const at = url && (path || bucket) ? (path ? "path" : "bucket") : url ? "url" : "bucket";
      throw new ConfigError(v.file, `${key}.${at}`, (err as Error).message);
    }
  }
  const d = (k: string, def: number) => v.duration(o[k], `${key}.${k}`) ?? def;
  const r: ReplicaConfig = {
    name: v.string(o.name, `${key}.name`) || type,
    type,
    path,
    url,
    bucket: v.string(o.bucket, `${key}.bucket`),
    region: v.string(o.region, `${key}.region`),
    endpoint: v.string(o.endpoint, `${key}.endpoint`),
    forcePathStyle: v.bool(o["force-path-style"], `${key}.force-path-style`),
    skipVerify: v.bool(o["skip-verify"], `${key}.skip-verify`) ?? false,
    accessKeyId: v.string(o["access-key-id"], `${key}.access-key-id`) || globalKeys.accessKeyId,
    secretAccessKey: v.string(o["secret-access-key"], `${key}.secret-access-key`) ||
      globalKeys.secretAccessKey,
    host,
    user: v.string(o.user, `${key}.user`),
    password: v.string(o.password, `${key}.password`),
    keyPath: v.string(o["key-path"], `${key}.key-path`),
    hostKey: v.string(o["host-key"], `${key}.host-key`),
    accountName: v.string(o["account-name"], `${key}.account-name`),
    accountKey: v.string(o["account-key"], `${key}.account-key`),
    syncInterval: d("sync-interval", REPLICA_DEFAULTS.syncInterval),
    snapshotInterval: d("snapshot-interval", REPLICA_DEFAULTS.snapshotInterval),
    retention: d("retention", REPLICA_DEFAULTS.retention),
    retentionCheckInterval: d("retention-check-interval", REPLICA_DEFAULTS.retentionCheckInterval),
    validationInterval: d("validation-interval", REPLICA_DEFAULTS.validationInterval),
  };
  if (r.syncInterval <= 0) {
    throw new ConfigError(v.file, `${key}.sync-interval`, "must be greater than zero");
  }
  if (type === "sftp") checkSftp(v, key, r);
  if (type === "abs") {
    try {
      absOptionsFromConfig(r);
    } catch (err) {
      if (err instanceof AbsConfigError) {
        throw new ConfigError(v.file, `${key}.${err.key}`, err.detail);
      }
      throw err;
    }
  }
  const age = parseAge(v, o.age, `${key}.age`);
  if (age) r.age = age;
  return r;
}

/**
 * Parses a replica's `age` block: `identities` and `recipients`, lists of age key strings, each
 * read as v0.3.13 reads it (a key file: one key per line, `#` comments). Undefined when it names
 * no key (v0.3.13 then neither encrypts nor decrypts).
 */
function parseAge(v: Validator, raw: unknown, key: string): AgeConfig | undefined {
  if (raw === undefined || raw === null) return undefined;
  const o = v.object(raw, key);
  v.unknownKeys(o, ["identities", "recipients"], `${key}.`);
  const keys = (list: string, kind: AgeKeyKind): AgeKey[] =>
    v.list(o[list], `${key}.${list}`).flatMap((item, i) => {
      const at = `${key}.${list}[${i}]`;
      return parseAgeKeys(kind, v.string(item, at) ?? "", v.file, at);
    });
  const identities = keys("identities", "identity");
  const recipients = keys("recipients", "recipient");
  if (identities.length === 0 && recipients.length === 0) return undefined;
  return { file: v.file, key, identities, recipients };
}

/** v0.3.13's SFTP checks (host and user required) and a well-formed host-key, as errors naming the key. */
function checkSftp(v: Validator, key: string, keys: ReplicaConfig): void {
  try {
    sftpOptions(keys);
  } catch (err) {
    if (!(err instanceof SftpConfigError)) throw err;
    const bad = err.key === "host" && keys.url && !keys.host ? "url" : err.key;
    throw new ConfigError(v.file, `${key}.${bad}`, err.message);
  }
}

/** A replica config for a bare URL, with v0.3.13's defaults; the name is the type. */
export function replicaConfigFromUrl(url: string): ReplicaConfig {
  const type = url.slice(0, url.indexOf(":")).toLowerCase();
  if (!SUPPORTED_TYPES.includes(type)) {
    throw new LitestreamError(
      `unsupported replica URL scheme ${
        JSON.stringify(type)
      }: ${url} (use file://, s3://, sftp://, abs:// or gcs://)`,
    );
  }
  return { name: type, type, url, skipVerify: false, ...REPLICA_DEFAULTS };
}

/**
 * The replica of one database found under a `dir` entry: `cfg`'s location with `rel` (the
 * database's path relative to `dir`, `/`-separated) appended. Generic over backends: a `url`
 * gets `rel` appended to its path (each segment escaped, as URL paths are decoded when
 * parsed); otherwise `path` is joined as a directory (`file`) or as a key prefix with `/`
 * (every other type, whose `path` is a prefix inside a bucket, container or server).
 */
export function replicaForSubpath(cfg: ReplicaConfig, rel: string): ReplicaConfig {
  const segments = rel.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.some((s) => s === "..")) {
    throw new LitestreamError(`database path ${rel} is outside its dir`);
  }
  if (cfg.url) {
    const cut = cfg.url.search(/[?#]/);
    const [base, tail] = cut < 0 ? [cfg.url, ""] : [cfg.url.slice(0, cut), cfg.url.slice(cut)];
    const joined = `${base.replace(/\/+$/, "")}/${segments.map(encodeURIComponent).join("/")}`;
    return { ...cfg, url: joined + tail };
  }
  const prefix = (cfg.path ?? "").replace(/\/+$/, "");
  const path = cfg.type === "file"
    ? `${prefix}/${segments.join("/")}`
    : [prefix, ...segments].filter((s) => s !== "").join("/");
  return { ...cfg, path };
}

/**
 * A key naming where a replica stores its objects, equal for two configs that would write
 * the same objects (type, bucket, endpoint and the cleaned path or URL). For collision checks.
 */
export function replicaLocationKey(cfg: ReplicaConfig): string {
  const clean = (s: string) => s.replace(/\/+$/, "").replace(/^\/+/, "");
  const where = cfg.url ? clean(cfg.url) : clean(cfg.path ?? "");
  return [cfg.type, cfg.bucket ?? "", cfg.endpoint ?? "", where].join("|");
}
