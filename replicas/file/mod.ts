/**
 * The file backend: a replica in a local directory (a mounted disk or
 * network share), in Litestream v0.3.13's layout
 * `<dir>/generations/<gen>/snapshots|wal/<name>`. Objects are written to a
 * temporary name, fsynced and renamed; file mtimes (with nanoseconds) are the
 * objects' creation times for point-in-time restores.
 *
 * @module
 */

export { FileReplicaClient, type FileReplicaOptions } from "./client.ts";
