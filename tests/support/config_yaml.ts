/**
 * Config files for `litestream replicate` in tests: one builder for every test's YAML, with
 * fast intervals so WAL indexes advance within seconds, and the keys of an S3 replica on a
 * local test server.
 *
 * @module
 */

import type { TestS3Server } from "./s3_server.ts";

/** Keys and values of one YAML mapping (a database's settings, or one replica entry). */
export type YamlKeys = Record<string, string | number>;

/** Fast database settings: 100 ms monitor, checkpoints every ~20 pages so WAL indexes advance. */
export const FAST_DB: YamlKeys = {
  "monitor-interval": "100ms",
  "checkpoint-interval": "1s",
  "min-checkpoint-page-count": 20,
  "max-checkpoint-page-count": 200,
};

/** One database entry: its path, its replicas' keys, and settings that override {@link FAST_DB}. */
export interface DbYaml {
  path: string;
  replicas: YamlKeys[];
  extra?: YamlKeys;
}

/**
 * A config file's YAML: `head` first (top-level lines such as `addr: ...\n`), debug logging
 * (tests wait on debug lines such as checkpoints), every database with {@link FAST_DB} and every
 * replica with a 100 ms sync interval unless its own keys say otherwise.
 */
export function configYaml(dbs: DbYaml[], head = ""): string {
  let y = `${head}logging:\n  level: debug\ndbs:\n`;
  for (const db of dbs) {
    y += `  - path: ${db.path}\n${lines({ ...FAST_DB, ...db.extra }, "    ")}    replicas:\n`;
    for (const r of db.replicas) {
      const item = lines({ ...r, "sync-interval": r["sync-interval"] ?? "100ms" }, "        ");
      y += `      - ${item.slice(8)}`;
    }
  }
  return y;
}

/** `key: value` lines, each indented by `indent`. */
function lines(keys: YamlKeys, indent: string): string {
  return Object.entries(keys).map(([k, v]) => `${indent}${k}: ${v}\n`).join("");
}

/** Where an S3 replica lives on a test server; unset fields take the server's own values. */
export interface S3ReplicaSpec {
  srv: TestS3Server;
  /** Key prefix inside the bucket. */
  path: string;
  /** Endpoint to use instead of the server's (a fault proxy, say). */
  endpoint?: string;
  bucket?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** More replica keys (`sync-interval`, `retention`, ...). */
  extra?: YamlKeys;
}

/** Keys of an S3 replica entry with an explicit endpoint, path-style addressing and keys. */
export function s3ReplicaKeys(r: S3ReplicaSpec): YamlKeys {
  return {
    type: "s3",
    bucket: r.bucket ?? r.srv.bucket,
    path: r.path,
    endpoint: r.endpoint ?? r.srv.endpoint,
    region: "us-east-1",
    "force-path-style": "true",
    "access-key-id": r.accessKeyId ?? r.srv.accessKeyId,
    "secret-access-key": r.secretAccessKey ?? r.srv.secretAccessKey,
    ...r.extra,
  };
}
