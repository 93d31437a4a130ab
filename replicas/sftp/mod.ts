/**
 * The SFTP backend: a replica in a directory on an SSH server, in Litestream
 * v0.3.13's layout, through one SSH connection per replica (npm `ssh2`),
 * opened on first use and closed when idle. The server's host key is checked
 * against `host-key` or known_hosts; objects are written to a temporary name
 * and renamed atomically. Import dynamically: it loads ssh2.
 *
 * @module
 */

export { sftpClientFromConfig, SftpReplicaClient } from "./client.ts";
export { type SftpOptions, sftpOptions, type SftpReplicaConfig } from "./config.ts";
export { SftpError } from "./errors.ts";
export type { SessionTuning } from "./session.ts";
