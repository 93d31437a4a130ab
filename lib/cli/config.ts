/**
 * The YAML configuration file (spec §7): v0.3.13's keys and defaults, with
 * errors naming the file and the key, and warnings for unknown keys.
 *
 * @module
 */

import { isAbsolute, join, resolve } from "node:path";
import { ConfigError, LitestreamError } from "../errors.ts";
import { parseDuration } from "./duration.ts";
import { expandEnv } from "./expand_env.ts";

/**
 * The YAML parser, loaded when a config is first read rather than when this module is
 * imported: commands that take a replica URL never read one, and loading `yaml` costs several
 * MB of memory.
 */
let yaml: { parse(text: string): unknown } | undefined;

/** The YAML parser; loaded synchronously (it is also a CommonJS package) if nothing loaded it. */
function parseYaml(text: string): unknown {
  yaml ??= requireSync("yaml") as { parse(text: string): unknown };
  return yaml.parse(text);
}

/** Default config path when neither `-config` nor `LITESTREAM_CONFIG` is given. */
export const DEFAULT_CONFIG_PATH = Deno.build.os === "windows"
  ? "C:\\Litestream\\litestream.yml"
  : "/etc/litestream.yml";

/** Settings of one replica (`dbs[].replicas[]`). Intervals are in milliseconds. */
export interface ReplicaConfig {
  name: string;
  type: string;
  /** Directory (file) or key prefix (s3). */
  path?: string;
  url?: string;
  bucket?: string;
  region?: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  skipVerify: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  syncInterval: number;
  snapshotInterval: number;
  retention: number;
  retentionCheckInterval: number;
  validationInterval: number;
}

/** Settings of one database (`dbs[]`). Intervals are in milliseconds. */
export interface DbConfig {
  /** Absolute database path. */
  path: string;
  metaPath?: string;
  monitorInterval: number;
  checkpointInterval: number;
  minCheckpointPageCount: number;
  maxCheckpointPageCount: number;
  truncatePageCount: number;
  replicas: ReplicaConfig[];
}

/** The whole configuration. */
export interface Config {
  /** The file it was read from, for messages. */
  file: string;
  dbs: DbConfig[];
  addr: string;
  exec: string;
  logging: { level: string; type: "text" | "json"; stderr: boolean };
}

/** Replica defaults (v0.3.13). */
export const REPLICA_DEFAULTS = {
  syncInterval: 1000,
  snapshotInterval: 0,
  retention: 24 * 3_600_000,
  retentionCheckInterval: 3_600_000,
  validationInterval: 0,
} as const;

/** Database defaults (v0.3.13, plus the truncate threshold it hard-codes). */
export const DB_DEFAULTS = {
  monitorInterval: 1000,
  checkpointInterval: 60_000,
  minCheckpointPageCount: 1000,
  maxCheckpointPageCount: 10000,
  truncatePageCount: 500000,
} as const;

const GLOBAL_KEYS = [
  "dbs",
  "databases",
  "addr",
  "exec",
  "access-key-id",
  "secret-access-key",
  "logging",
];
const LOGGING_KEYS = ["level", "type", "stderr"];
const DB_KEYS = [
  "path",
  "meta-path",
  "monitor-interval",
  "checkpoint-interval",
  "min-checkpoint-page-count",
  "max-checkpoint-page-count",
  "truncate-page-count",
  "replicas",
];
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
  "sync-interval",
  "snapshot-interval",
  "retention",
  "retention-check-interval",
  "validation-interval",
  "age",
];

/** Where the config is read from: `-config`, else `LITESTREAM_CONFIG`, else the default path. */
export function configPath(flag: string | undefined): string {
  return expandPath(flag || Deno.env.get("LITESTREAM_CONFIG") || DEFAULT_CONFIG_PATH);
}

/** Expands a leading `~` and makes a path absolute against the current directory. */
export function expandPath(p: string): string {
  if (p === "~" || p.startsWith("~/")) {
    const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE");
    if (!home) throw new LitestreamError(`cannot expand ${p}: HOME is not set`);
    p = join(home, p.slice(1));
  }
  return isAbsolute(p) ? resolve(p) : resolve(Deno.cwd(), p);
}

/** True when a string looks like a URL (`scheme://`), as v0.3.13 decides. */
export function isUrl(s: string): boolean {
  return /^\w+:\/\//.test(s);
}

/** Reads and validates a config file; `warn` receives one line per unknown key. */
export async function loadConfig(
  file: string,
  options: { expandEnv?: boolean; warn?: (msg: string) => void } = {},
): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new LitestreamError(`config file not found: ${file}`);
    }
    if (err instanceof Deno.errors.IsADirectory) {
      throw new LitestreamError(`config file is a directory: ${file}`);
    }
    throw err;
  }
  if (options.expandEnv !== false) text = expandEnv(text, (name) => Deno.env.get(name));
  yaml ??= await import("yaml");
  return parseConfig(text, file, options.warn);
}

/** Parses config text (already env-expanded); `file` names the source in errors. */
export function parseConfig(
  text: string,
  file: string,
  warn: (msg: string) => void = () => {},
): Config {
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (err) {
    const first = String((err as Error).message).split("\n")[0];
    throw new LitestreamError(`${file}: invalid YAML: ${first}`);
  }
  const v = new Validator(file, warn);
  const root = v.object(raw, "(top level)");
  v.unknownKeys(root, GLOBAL_KEYS, "");
  if (root.dbs !== undefined && root.databases !== undefined) {
    throw new ConfigError(file, "databases", "use either dbs or databases, not both");
  }
  const dbKey = root.databases !== undefined ? "databases" : "dbs";
  const logging = root.logging === undefined ? {} : v.object(root.logging, "logging");
  v.unknownKeys(logging, LOGGING_KEYS, "logging.");
  const type = v.string(logging.type, "logging.type") ?? "text";
  if (type !== "text" && type !== "json") {
    throw new ConfigError(
      file,
      "logging.type",
      `must be text or json, not ${JSON.stringify(type)}`,
    );
  }
  const globalKeys = {
    accessKeyId: v.string(root["access-key-id"], "access-key-id"),
    secretAccessKey: v.string(root["secret-access-key"], "secret-access-key"),
  };
  const dbs = v.list(root[dbKey], dbKey).map((item, i) =>
    parseDb(v, item, `${dbKey}[${i}]`, globalKeys)
  );
  const paths = new Set<string>();
  dbs.forEach((db, i) => {
    if (paths.has(db.path)) {
      throw new ConfigError(file, `${dbKey}[${i}].path`, `duplicate database path ${db.path}`);
    }
    paths.add(db.path);
  });
  const addr = v.string(root.addr, "addr") ?? "";
  if (addr && !/:\d+$/.test(addr)) {
    throw new ConfigError(file, "addr", "must specify port for bind address");
  }
  return {
    file,
    dbs,
    addr,
    exec: v.string(root.exec, "exec") ?? "",
    logging: {
      level: (v.string(logging.level, "logging.level") ?? "info").toLowerCase(),
      type,
      stderr: v.bool(logging.stderr, "logging.stderr") ?? false,
    },
  };
}

function parseDb(
  v: Validator,
  raw: unknown,
  key: string,
  globalKeys: { accessKeyId?: string; secretAccessKey?: string },
): DbConfig {
  const o = v.object(raw, key);
  v.unknownKeys(o, DB_KEYS, `${key}.`);
  const path = v.string(o.path, `${key}.path`);
  if (!path) throw new ConfigError(v.file, `${key}.path`, "database path required");
  const db: DbConfig = {
    path: expandPath(path),
    metaPath: v.string(o["meta-path"], `${key}.meta-path`),
    monitorInterval: v.duration(o["monitor-interval"], `${key}.monitor-interval`) ??
      DB_DEFAULTS.monitorInterval,
    checkpointInterval: v.duration(o["checkpoint-interval"], `${key}.checkpoint-interval`) ??
      DB_DEFAULTS.checkpointInterval,
    minCheckpointPageCount:
      v.int(o["min-checkpoint-page-count"], `${key}.min-checkpoint-page-count`) ??
        DB_DEFAULTS.minCheckpointPageCount,
    maxCheckpointPageCount:
      v.int(o["max-checkpoint-page-count"], `${key}.max-checkpoint-page-count`) ??
        DB_DEFAULTS.maxCheckpointPageCount,
    truncatePageCount: v.int(o["truncate-page-count"], `${key}.truncate-page-count`) ??
      DB_DEFAULTS.truncatePageCount,
    replicas: [],
  };
  if (db.minCheckpointPageCount <= 0) {
    throw new ConfigError(
      v.file,
      `${key}.min-checkpoint-page-count`,
      "minimum checkpoint page count required (> 0)",
    );
  }
  if (db.monitorInterval < 0) {
    throw new ConfigError(v.file, `${key}.monitor-interval`, "must not be negative");
  }
  db.replicas = v.list(o.replicas, `${key}.replicas`).map((r, i) =>
    parseReplica(v, r, `${key}.replicas[${i}]`, globalKeys)
  );
  const names = new Set<string>();
  db.replicas.forEach((r, i) => {
    if (names.has(r.name)) {
      throw new ConfigError(
        v.file,
        `${key}.replicas[${i}].name`,
        `duplicate replica name: ${JSON.stringify(r.name)}`,
      );
    }
    names.add(r.name);
  });
  return db;
}

function parseReplica(
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
  if (!["file", "s3"].includes(type)) {
    const known = ["gcs", "abs", "sftp"].includes(type)
      ? " (not supported by this implementation yet)"
      : "";
    throw new ConfigError(
      v.file,
      url ? `${key}.url` : `${key}.type`,
      `unknown replica type in config: ${JSON.stringify(type)}${known}`,
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
    syncInterval: d("sync-interval", REPLICA_DEFAULTS.syncInterval),
    snapshotInterval: d("snapshot-interval", REPLICA_DEFAULTS.snapshotInterval),
    retention: d("retention", REPLICA_DEFAULTS.retention),
    retentionCheckInterval: d("retention-check-interval", REPLICA_DEFAULTS.retentionCheckInterval),
    validationInterval: d("validation-interval", REPLICA_DEFAULTS.validationInterval),
  };
  if (r.syncInterval <= 0) {
    throw new ConfigError(v.file, `${key}.sync-interval`, "must be greater than zero");
  }
  if (o.age !== undefined) {
    throw new ConfigError(
      v.file,
      `${key}.age`,
      "age encryption is not supported by this implementation yet",
    );
  }
  return r;
}

/** Type checks that name the file and key in their errors. */
class Validator {
  constructor(readonly file: string, readonly warn: (msg: string) => void) {}

  fail(key: string, want: string, got: unknown): never {
    throw new ConfigError(this.file, key, `expected ${want}, got ${JSON.stringify(got)}`);
  }
  object(x: unknown, key: string): Record<string, unknown> {
    if (x === null || typeof x !== "object" || Array.isArray(x)) this.fail(key, "a mapping", x);
    return x as Record<string, unknown>;
  }
  list(x: unknown, key: string): unknown[] {
    if (x === undefined || x === null) return [];
    if (!Array.isArray(x)) this.fail(key, "a list", x);
    return x;
  }
  string(x: unknown, key: string): string | undefined {
    if (x === undefined || x === null) return undefined;
    if (typeof x === "number" || typeof x === "boolean") return String(x);
    if (typeof x !== "string") this.fail(key, "a string", x);
    return x;
  }
  bool(x: unknown, key: string): boolean | undefined {
    if (x === undefined || x === null) return undefined;
    if (typeof x === "boolean") return x;
    // YAML 1.1 (v0.3.13's parser) also reads these words as booleans; YAML 1.2 keeps them as strings.
    if (typeof x === "string" && /^(y|yes|on)$/i.test(x)) return true;
    if (typeof x === "string" && /^(n|no|off)$/i.test(x)) return false;
    this.fail(key, "true or false", x);
  }
  int(x: unknown, key: string): number | undefined {
    if (x === undefined || x === null) return undefined;
    if (typeof x !== "number" || !Number.isInteger(x) || x < 0) {
      this.fail(key, "a non-negative integer", x);
    }
    return x;
  }
  duration(x: unknown, key: string): number | undefined {
    if (x === undefined || x === null) return undefined;
    const ms = parseDuration(x);
    if (ms === undefined) this.fail(key, "a duration such as 1s, 10m, 24h or 7d", x);
    return ms;
  }
  unknownKeys(o: Record<string, unknown>, known: string[], prefix: string): void {
    for (const k of Object.keys(o)) {
      if (!known.includes(k)) this.warn(`${this.file}: unknown key ${prefix}${k} (ignored)`);
    }
  }
}

/** A replica config for a bare URL, with v0.3.13's defaults; the name is the type. */
export function replicaConfigFromUrl(url: string): ReplicaConfig {
  const type = url.slice(0, url.indexOf(":")).toLowerCase();
  if (type !== "file" && type !== "s3") {
    throw new LitestreamError(
      `unsupported replica URL scheme ${JSON.stringify(type)}: ${url} (use file:// or s3://)`,
    );
  }
  return { name: type, type, url, skipVerify: false, ...REPLICA_DEFAULTS };
}

/**
 * `require` for a CommonJS npm package, through Node's module API. Taken from the `process`
 * global only when called: importing `node:module` would load several MB of Node
 * compatibility code into every process.
 */
function requireSync(specifier: string): unknown {
  const process = (globalThis as unknown as {
    process: { getBuiltinModule(id: "module"): typeof import("node:module") };
  }).process;
  return process.getBuiltinModule("module").createRequire(import.meta.url)(specifier);
}
