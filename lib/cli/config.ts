/**
 * The YAML configuration file (spec §7): v0.3.13's keys and defaults, with
 * errors naming the file and the key, and warnings for unknown keys.
 *
 * @module
 */

import { isAbsolute, join, resolve } from "node:path";
import { ConfigError, LitestreamError } from "../errors.ts";
import { expandEnv } from "./expand_env.ts";
import { parseReplica, type ReplicaConfig } from "./config_replica.ts";
import { Validator } from "./config_validator.ts";
import { requireSync } from "../os/require.ts";
import { importLazily } from "../os/lazy_import.ts";
import { OPS_KEYS, type OpsConfig, parseOps } from "./config_ops.ts";
import { DIR_KEYS, type DirConfig, LocationClaims, parseDirKeys } from "./config_dir.ts";

export {
  type AgeConfig,
  type AgeKey,
  isUrl,
  REPLICA_DEFAULTS,
  type ReplicaConfig,
  replicaConfigFromUrl,
} from "./config_replica.ts";
export { dbConfigUnder, type DirConfig, relativeUnder } from "./config_dir.ts";

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
  /** Restore the database from its replicas at start-up when it does not exist (v0.5's key). */
  restoreIfDbNotExists?: boolean;
  replicas: ReplicaConfig[];
}

/** The whole configuration. */
export interface Config extends OpsConfig {
  /** The file it was read from, for messages. */
  file: string;
  /** The `path` entries. */
  dbs: DbConfig[];
  /** The `dir` entries: their databases are found at run time (see `lib/dirs/`). */
  dirs: DirConfig[];
  addr: string;
  exec: string;
  logging: { level: string; type: "text" | "json"; stderr: boolean };
}

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
  ...OPS_KEYS,
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
  "restore-if-db-not-exists",
  "replicas",
  ...DIR_KEYS,
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
  yaml ??= await importLazily<typeof import("yaml")>("yaml");
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
    // The yaml package reads LOG_TOKENS from the environment: without --allow-env that is a
    // permission to name, not a defect of the file.
    if (err instanceof Deno.errors.NotCapable) throw err;
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
  const entries = v.list(root[dbKey], dbKey).map((item, i) =>
    parseDb(v, item, `${dbKey}[${i}]`, globalKeys)
  );
  const dbs: DbConfig[] = [];
  const dirs: DirConfig[] = [];
  const paths = new Set<string>();
  const claims = new LocationClaims();
  entries.forEach((entry, i) => {
    if ("dir" in entry) return dirs.push(entry);
    const db = entry;
    if (paths.has(db.path)) {
      throw new ConfigError(file, `${dbKey}[${i}].path`, `duplicate database path ${db.path}`);
    }
    paths.add(db.path);
    const clash = claims.claim(db);
    if (clash) throw new ConfigError(file, `${dbKey}[${i}]`, clash.message);
    dbs.push(db);
  });
  const addr = v.string(root.addr, "addr") ?? "";
  if (addr && !/:\d+$/.test(addr)) {
    throw new ConfigError(file, "addr", "must specify port for bind address");
  }
  return {
    file,
    dbs,
    dirs,
    addr,
    ...parseOps(v, root),
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
): DbConfig | DirConfig {
  const o = v.object(raw, key);
  v.unknownKeys(o, DB_KEYS, `${key}.`);
  const dir = parseDirKeys(v, o, key, expandPath);
  const path = dir ? dir.dir : v.string(o.path, `${key}.path`);
  if (!path) {
    throw new ConfigError(v.file, `${key}.path`, "database path required (or dir with pattern)");
  }
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
    restoreIfDbNotExists: v.bool(
      o["restore-if-db-not-exists"],
      `${key}.restore-if-db-not-exists`,
    ),
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
  return dir ? { ...dir, db } : db;
}
