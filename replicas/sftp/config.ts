/**
 * An SFTP replica's settings from its config entry or URL, with v0.3.13's
 * rules: `sftp://user[:password]@host[:port]/path`, or the keys `host`,
 * `user`, `password`, `key-path` and `path` (keys win over the URL's parts;
 * a URL cannot be combined with `host` or `path`). Pure: no connection, no
 * SSH library, so config parsing can use it.
 *
 * @module
 */

import { posix } from "node:path";
import { LitestreamError } from "../../lib/errors.ts";
import { parseHostKeySetting } from "./host_key.ts";

/** What an SFTP replica connects to and where its objects live. */
export interface SftpOptions {
  host: string;
  port: number;
  user: string;
  password?: string;
  /** Private key file (OpenSSH or PEM format, unencrypted). */
  keyPath?: string;
  /** The server's expected public key (`type base64 [comment]`), v0.5's `host-key`. */
  hostKey?: string;
  /**
   * Replica root on the server, cleaned; relative roots (`""` included) are
   * in the login directory, as with v0.3.13.
   */
  path: string;
}

/** The config keys of an SFTP replica (`url` and the separate keys). */
export interface SftpReplicaConfig {
  url?: string;
  host?: string;
  user?: string;
  password?: string;
  keyPath?: string;
  hostKey?: string;
  path?: string;
}

/** A bad SFTP setting; `key` names the config key to fix (`url`, `host`, …). */
export class SftpConfigError extends LitestreamError {
  /** Creates the error for config key `key`. */
  constructor(readonly key: string, message: string) {
    super(message);
  }
}

/** Splits `host[:port]` (`[v6]:port` for IPv6) as Go's `net.SplitHostPort`, port 22 by default. */
export function splitHostPort(hostPort: string): { host: string; port: number } {
  const m = /^\[([^\]]*)\](?::(\d*))?$/.exec(hostPort) ?? /^([^:]*):(\d*)$/.exec(hostPort);
  const host = m ? m[1] : hostPort;
  const port = m?.[2] ? Number(m[2]) : 22;
  // One colon is a port separator (a bare IPv6 address has several): its port must be digits.
  const badPort = !m && /^[^:[\]]*:[^:]*$/.test(hostPort);
  if (badPort || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SftpConfigError("host", `invalid port in sftp host ${JSON.stringify(hostPort)}`);
  }
  return { host, port };
}

/** The parts of an `sftp://` URL, percent-decoded as Go's `url.Parse` does. */
export function parseSftpUrl(
  url: string,
): { hostPort: string; user: string; password: string; path: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SftpConfigError("url", `invalid sftp URL: ${url}`);
  }
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new SftpConfigError("url", `invalid escape in sftp URL: ${url}`);
    }
  };
  return {
    hostPort: u.host,
    user: decode(u.username),
    password: decode(u.password),
    path: decode(u.pathname),
  };
}

/** Settings from config keys and URL, combined and checked as v0.3.13 does. */
export function sftpOptions(cfg: SftpReplicaConfig): SftpOptions {
  let { host = "", user = "", password = "", path = "" } = cfg;
  if (cfg.url) {
    const u = parseSftpUrl(cfg.url);
    host ||= u.hostPort;
    user ||= u.user;
    password ||= u.password;
    path ||= u.path;
  }
  if (!host) throw new SftpConfigError("host", "host required for sftp replica");
  if (!user) throw new SftpConfigError("user", "user required for sftp replica");
  if (cfg.hostKey) {
    try {
      parseHostKeySetting(cfg.hostKey);
    } catch (err) {
      throw new SftpConfigError("host-key", (err as Error).message);
    }
  }
  return {
    ...splitHostPort(host),
    user,
    password: password || undefined,
    keyPath: cfg.keyPath || undefined,
    hostKey: cfg.hostKey || undefined,
    path: cleanPath(path),
  };
}

/** Cleans a replica root as Go's `path.Join` does; `""` stays `""` (the login directory). */
export function cleanPath(path: string): string {
  if (path === "") return "";
  const clean = posix.normalize(path);
  return clean === "." ? "" : clean.length > 1 ? clean.replace(/\/$/, "") : clean;
}

/** `host:port`, bracketed for IPv6, as known_hosts and URLs write it. */
export function hostPortText(o: { host: string; port: number }): string {
  return `${o.host.includes(":") ? `[${o.host}]` : o.host}:${o.port}`;
}

/**
 * The replica's display location, never with the password:
 * `sftp://user@host:port/abs/path`, or `sftp://user@host:port/~/rel` for a
 * root relative to the login directory (the SFTP URI draft's `~`).
 */
export function sftpLocation(o: SftpOptions): string {
  const path = o.path.startsWith("/") ? o.path : o.path ? `/~/${o.path}` : "/~";
  return `sftp://${o.user}@${hostPortText(o)}${path === "/" ? "" : path}`;
}
