/**
 * One SSH connection and SFTP channel per replica client, opened on first use
 * and closed after `idleMs` without an operation, so an idle replica holds no
 * connection, timer or buffer. Operations that fail because the connection
 * broke reconnect and retry (3 attempts, jittered backoff); longer outages are
 * paced by the replica loop's `StoreHealth`. The host key is checked on every
 * connection (see `host_key.ts`).
 *
 * @module
 */

// Before ssh2, which takes node:crypto's cipher constructors when it loads.
import { oneShotCiphersFinalised } from "./one_shot_chacha20.ts";
// @deno-types="./ssh2.d.ts"
import { Client, type ConnectConfig, type SFTPWrapper } from "ssh2";
import { Buffer } from "node:buffer";
import { explainPermission, LitestreamError, MissingPermissionError } from "../../lib/errors.ts";
import { backoff, Semaphore } from "../../lib/os/async.ts";
import type { Logger } from "../../lib/log.ts";
import { hostPortText, type SftpOptions } from "./config.ts";
import {
  algorithmsFor,
  blobType,
  fingerprint,
  type HostKeyVerdict,
  judgeHostKey,
  keyLine,
  knownHostsName,
  loadKnownHosts,
  parseHostKeySetting,
  type PublicKey,
} from "./host_key.ts";
import { describe, isConnectionError, SftpError } from "./errors.ts";
import { markClosed } from "./transfer.ts";
import { connectStream, type ConnStream } from "./socket.ts";

/** Handshakes under way at once to one `host:port`, below OpenSSH's default `MaxStartups` 10. */
export const HANDSHAKES_PER_HOST = 8;

/** The handshake slots of each `host:port` this process connects to. */
const handshakes = new Map<string, Semaphore>();

function handshakeSlots(hostPort: string): Semaphore {
  let slots = handshakes.get(hostPort);
  if (!slots) handshakes.set(hostPort, slots = new Semaphore(HANDSHAKES_PER_HOST));
  return slots;
}

/** Unverified host keys already warned about (`host:port fingerprint`). */
const unverifiedWarned = new Set<string>();

/** Attempts of an operation whose connection breaks, before its error is returned. */
const ATTEMPTS = 3;

/**
 * Offered first: under Deno it costs a fraction of AES-GCM's CPU (see
 * `one_shot_chacha20.ts`, which also keeps it from leaking). ssh2 would
 * otherwise offer it last, as it does when its native addon is missing.
 */
const PREFERRED_CIPHER = "chacha20-poly1305@openssh.com";

/** Tuning of a session (tests shorten the idle time). */
export interface SessionTuning {
  /** Close the connection after this long without an operation. Default 10 s. */
  idleMs?: number;
  /** Give up a connection attempt (TCP, handshake, login) after this long. Default 20 s. */
  connectTimeoutMs?: number;
  /** Keepalive probe period while connected; 3 unanswered probes drop the connection. Default 5 s. */
  keepaliveMs?: number;
}

const TUNING_DEFAULTS: Required<SessionTuning> = {
  idleMs: 10_000,
  connectTimeoutMs: 20_000,
  keepaliveMs: 5_000,
};

interface Connection {
  client: Client;
  sftp: SFTPWrapper;
  /** Resolves when the connection has closed (at once if it already has). */
  closed: Promise<void>;
}

/** A lazily opened, idle-closed SFTP connection with retries. */
export class SftpSession {
  /** Connections opened so far (tests and logs). */
  connects = 0;
  readonly #tuning: Required<SessionTuning>;
  #conn: Promise<Connection> | undefined;
  #active = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** A key accepted without a trust anchor: later connections must present it again. */
  #firstSeen: PublicKey | undefined;

  /** A session for `options`; `location` names the replica in errors, `log` gets the host-key warning. */
  constructor(
    readonly options: SftpOptions,
    readonly location: string,
    readonly log: Logger,
    tuning: SessionTuning = {},
  ) {
    this.#tuning = { ...TUNING_DEFAULTS, ...tuning };
  }

  /** Whether a connection is open (or opening). */
  get connected(): boolean {
    return this.#conn !== undefined;
  }

  /**
   * Runs `fn` on the SFTP channel. When it fails with a transient `SftpError`
   * (the connection broke) and `retry` is set, the connection is reopened and
   * `fn` runs again, up to 3 times in all, each retry logged.
   */
  async use<T>(fn: (sftp: SFTPWrapper) => Promise<T>, retry = true): Promise<T> {
    const release = this.hold();
    try {
      for (let attempt = 1;; attempt++) {
        let conn: Promise<Connection> | undefined;
        try {
          conn = this.#connect();
          return await fn((await conn).sftp);
        } catch (err) {
          if (!(err instanceof SftpError && err.transient)) throw err;
          if (conn) this.#drop(conn);
          if (!retry || attempt >= ATTEMPTS) throw err;
          this.log.warn("sftp connection failed; retrying", { attempt, error: err.message });
          await backoff(attempt, 200);
        }
      }
    } finally {
      release();
    }
  }

  /** Marks the session busy (no idle close) until the returned function is called. */
  hold(): () => void {
    this.#active++;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.#active === 0 && this.#conn) {
        this.#idleTimer = setTimeout(() => this.close(), this.#tuning.idleMs);
      }
    };
  }

  /** Drops the current connection if it is still `conn` (a broken one), so the next use reconnects. */
  #drop(conn: Promise<Connection>): void {
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    conn.then((c) => c.client.end(), () => {});
  }

  /** Closes the connection now; the next operation opens a new one. */
  async close(): Promise<void> {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    const conn = this.#conn;
    this.#conn = undefined;
    const c = await conn?.catch(() => undefined);
    if (!c) return;
    c.client.end();
    await c.closed;
  }

  #connect(): Promise<Connection> {
    if (!this.#conn) {
      const conn = this.#open();
      this.#conn = conn;
      conn.catch(() => {
        if (this.#conn === conn) this.#conn = undefined;
      });
    }
    return this.#conn;
  }

  async #open(): Promise<Connection> {
    const o = this.options;
    const hostPort = hostPortText(o);
    const pinned = o.hostKey ? this.#setting(() => parseHostKeySetting(o.hostKey!)) : undefined;
    const known = pinned ? [] : await loadKnownHosts();
    const privateKey = o.keyPath ? await this.#readKey(o.keyPath) : undefined;
    const name = knownHostsName(o.host, o.port);
    // Ask for the key types we can check first, as OpenSSH does.
    const types = pinned
      ? [pinned.type]
      : [...new Set(known.filter((k) => !k.revoked).map((k) => k.key.type))];
    let verdict: HostKeyVerdict | undefined;
    let presented: Uint8Array | undefined;
    let cipher: string | undefined;
    const config: ConnectConfig = {
      username: o.user,
      password: o.password,
      privateKey,
      keepaliveInterval: this.#tuning.keepaliveMs,
      keepaliveCountMax: 3,
      algorithms: {
        // Keys apply in order: ssh2 prepends only what its list lacks.
        cipher: { remove: PREFERRED_CIPHER, prepend: PREFERRED_CIPHER },
        serverHostKey: types.length > 0 ? { prepend: types.flatMap(algorithmsFor) } : undefined,
      },
      hostVerifier: (key: Buffer) => {
        presented = new Uint8Array(key);
        verdict = judgeHostKey(presented, name, pinned ?? this.#firstSeen, known);
        if (this.#firstSeen && verdict.kind === "mismatch") {
          verdict = { ...verdict, sources: ["the key this process accepted first"] };
        }
        return verdict.kind === "trusted" || verdict.kind === "unknown";
      },
    };
    const client = new Client();
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    this.connects++;
    const finalisedBefore = oneShotCiphersFinalised();
    // Replicas of one host (a dir entry's databases) connect at once at start-up: at most
    // HANDSHAKES_PER_HOST handshakes are under way, so that sshd's MaxStartups (10 by default)
    // does not drop any.
    const conn = await handshakeSlots(hostPort).run(async () => {
      const started = Date.now();
      let sock: ConnStream;
      try {
        sock = await connectStream(o.host, o.port, this.#tuning.connectTimeoutMs);
      } catch (err) {
        throw this.#connectError(err, hostPort, undefined, undefined);
      }
      // The rest of the connect timeout bounds the handshake and login.
      const readyTimeout = Math.max(1, this.#tuning.connectTimeoutMs - (Date.now() - started));
      return await new Promise<Connection>((resolve, reject) => {
        let settled = false;
        const fail = (err: unknown) => {
          if (settled) return;
          settled = true;
          client.end();
          reject(this.#connectError(err, hostPort, verdict, presented));
        };
        client.on("handshake", (n: { cs: { cipher: string } }) => cipher = n.cs.cipher);
        client.on("error", fail);
        client.on("close", () => {
          fail(new Error("connection closed"));
          // A connection that breaks later is dropped; the next operation reconnects.
          if (this.#conn && settled) {
            const current = this.#conn;
            current.then((c) => c.client === client && this.#drop(current), () => {});
          }
        });
        client.on("ready", () => {
          // The login went over the cipher: with chacha20, through the wrappers, unless something
          // loaded ssh2 before them (then every packet would leak: refuse, loudly).
          if (cipher === PREFERRED_CIPHER && oneShotCiphersFinalised() === finalisedBefore) {
            return fail(
              new LitestreamError("ssh2 was loaded before replicas/sftp/one_shot_chacha20.ts"),
            );
          }
          client.sftp((err, sftp) => {
            if (err) return fail(err);
            sftp.on("close", () => markClosed(sftp));
            // A protocol error ends the channel (its pending requests fail); drop the connection.
            sftp.on("error", () => {
              markClosed(sftp);
              client.end();
            });
            settled = true;
            resolve({ client, sftp, closed });
          });
        });
        try {
          client.connect({ ...config, sock, readyTimeout });
        } catch (err) {
          // ssh2 parses the private key synchronously.
          sock.destroy();
          fail(new LitestreamError(`cannot parse key-path ${o.keyPath}: ${describe(err)}`));
        }
      });
    });
    this.log.debug("sftp connected", { host: hostPort, cipher });
    if (verdict?.kind === "unknown" && presented && !this.#firstSeen) {
      this.#firstSeen = { type: blobType(presented) ?? "unknown", blob: presented };
      // Once per process for a host and key, however many replicas (a dir entry) it serves.
      const warning = `${hostPort} ${fingerprint(presented)}`;
      if (!unverifiedWarned.has(warning)) {
        unverifiedWarned.add(warning);
        this.log.warn(
          "sftp host key not verified: no host-key setting and no known_hosts entry for the host; " +
            "set host-key to the value below to pin it",
          {
            host: hostPort,
            fingerprint: fingerprint(presented),
            "host-key": keyLine(this.#firstSeen),
          },
        );
      }
    }
    return conn;
  }

  #setting<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw new SftpError("connect", this.location, (err as Error).message);
    }
  }

  async #readKey(path: string): Promise<Buffer> {
    try {
      return Buffer.from(await Deno.readFile(path));
    } catch (err) {
      if (err instanceof Deno.errors.NotCapable) throw err;
      throw new SftpError(
        "connect",
        this.location,
        `cannot read key-path ${path}: ${describe(err)}`,
      );
    }
  }

  /** The error a failed connection attempt reports: host key, login, or network. */
  #connectError(
    err: unknown,
    hostPort: string,
    verdict: HostKeyVerdict | undefined,
    presented: Uint8Array | undefined,
  ): LitestreamError {
    const o = this.options;
    const permission = explainPermission(err, this.location);
    if (permission instanceof MissingPermissionError) return permission;
    if (presented && verdict && verdict.kind !== "trusted" && verdict.kind !== "unknown") {
      const got = `${blobType(presented)} ${fingerprint(presented)}`;
      const detail = verdict.kind === "revoked"
        ? `host key verification failed: ${hostPort} presented ${got}, which ${verdict.source} ` +
          `marks @revoked`
        : `host key verification failed: ${hostPort} presented ${got}, but ` +
          `${verdict.sources.join(", ")} expects ` +
          `${verdict.expected.map((k) => `${k.type} ${fingerprint(k.blob)}`).join(" or ")}` +
          ` (if the server's key changed on purpose, ${
            o.hostKey
              ? "update host-key"
              : this.#firstSeen
              ? "restart to accept the new key, or set host-key to it"
              : "update known_hosts"
          })`;
      return new SftpError("connect", this.location, detail);
    }
    if (err instanceof LitestreamError) {
      return err instanceof SftpError
        ? err
        : new SftpError("connect", this.location, err.message, false, { cause: err });
    }
    if ((err as { level?: string }).level === "client-authentication") {
      const methods = [
        ...(o.keyPath ? [`the key in key-path ${o.keyPath}`] : []),
        ...(o.password ? ["the password"] : []),
      ];
      const detail = methods.length
        ? `with ${methods.join(" and ")}: check user, password and key-path`
        : "(no password or key-path set): set one (a replica URL can carry only a password; " +
          "key-path needs a config entry)";
      return new SftpError(
        "login",
        this.location,
        `${hostPort} refused user "${o.user}" ${detail}`,
        false,
        { cause: err },
      );
    }
    // A server that did not answer within the connect timeout is not tried again at once: the
    // failure is reported now (the replica retries at its probe rate), not after three timeouts.
    const timedOut = (err as { level?: string }).level === "client-timeout";
    return new SftpError(
      "connect",
      this.location,
      `cannot reach ${hostPort}: ${describe(err)}`,
      isConnectionError(err) && !timedOut,
      { cause: err },
    );
  }
}
