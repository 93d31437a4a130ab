/**
 * SSH connections, each with one SFTP channel, shared by the replica clients of one login (host,
 * port, user, password, key-path, host-key): the databases of a dir entry take
 * {@linkcode CONNECTIONS_PER_LOGIN} connections in turn instead of one each (a handshake costs
 * about 30 ms of CPU here, and the server a process per connection). A connection opens on first
 * use and closes after `idleMs` without an operation, so idle replicas hold no connection, timer
 * or buffer. Operations that fail because the connection broke reconnect and retry (3 attempts,
 * jittered backoff); longer outages are paced by the replica loop's `StoreHealth`. The host key
 * is checked on every connection (see `host_key.ts`). Errors name the replica that met them.
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

/**
 * Connections one login opens at most. More than one, because OpenSSH's sftp-server answers a
 * channel's requests one at a time, each upload's fsync included: a few channels keep many
 * databases' uploads from queueing behind one another.
 */
export const CONNECTIONS_PER_LOGIN = 4;

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

/**
 * Why a connection attempt failed. Every session waiting on the attempt turns it into an error
 * naming its own replica ({@linkcode SftpSession}).
 */
class ConnectFailure extends Error {
  constructor(
    readonly reason: unknown,
    readonly verdict?: HostKeyVerdict,
    readonly presented?: Uint8Array,
  ) {
    super("connection attempt failed", { cause: reason });
  }

  /** Whether the server refused the login (user, password or key), not the connection. */
  get refused(): boolean {
    return (this.reason as { level?: string })?.level === "client-authentication";
  }
}

/**
 * After the server refuses a login, it is not tried again for this long, doubling up to
 * {@link REFUSED_LOGIN_MAX_WAIT_MS} while the refusals go on: fail2ban's default bans an
 * address after 5 failures in 10 minutes.
 */
const REFUSED_LOGIN_WAIT_MS = 60_000;
/** The longest wait between two attempts of a login the server refuses. */
const REFUSED_LOGIN_MAX_WAIT_MS = 15 * 60_000;

/** The replicas that share connections: one login, one tuning. */
class Login {
  /** A key accepted without a trust anchor: later connections must present it again. */
  firstSeen: PublicKey | undefined;
  readonly #links: SshLink[] = [];
  #next = 0;

  /** A connection has logged in since the last refusal: connections may open side by side. */
  #proven = false;
  /** The attempt under way while the login is not proven: the others wait for its outcome. */
  #trial: Promise<unknown> | undefined;
  /** The server's last refusal of this login, and until when it stands. */
  #refusal: { failure: ConnectFailure; until: number; waitMs: number } | undefined;

  constructor(readonly options: SftpOptions, readonly tuning: Required<SessionTuning>) {}

  /**
   * Opens a connection with `open`. Until one has logged in, attempts run one at a time, so a
   * wrong password costs one failed login, not one per connection or replica. After a refusal,
   * attempts fail at once with it for {@link REFUSED_LOGIN_WAIT_MS}, doubling while the server
   * keeps refusing.
   */
  async attempt(open: () => Promise<Connection>): Promise<Connection> {
    while (!this.#proven && this.#trial) await this.#trial.catch(() => {});
    if (this.#refusal && Date.now() < this.#refusal.until) throw this.#refusal.failure;
    const trial = open();
    if (!this.#proven) this.#trial = trial;
    try {
      const conn = await trial;
      this.#proven = true;
      this.#refusal = undefined;
      return conn;
    } catch (err) {
      if (err instanceof ConnectFailure && err.refused) {
        const waitMs = this.#refusal
          ? Math.min(2 * this.#refusal.waitMs, REFUSED_LOGIN_MAX_WAIT_MS)
          : REFUSED_LOGIN_WAIT_MS;
        this.#refusal = { failure: err, until: Date.now() + waitMs, waitMs };
        this.#proven = false;
      }
      throw err;
    } finally {
      if (this.#trial === trial) this.#trial = undefined;
    }
  }

  /** The connection the next replica of this login is to use. */
  take(): SshLink {
    const i = this.#next++ % CONNECTIONS_PER_LOGIN;
    return this.#links[i] ??= new SshLink(this);
  }
}

/** Logins by what identifies them; one entry per distinct replica login in the config. */
const logins = new Map<string, Login>();

/**
 * What identifies a login: replicas with equal keys share connections (with equal tuning too)
 * and succeed or fail together (the replica loop's store health).
 */
export function loginKey(o: SftpOptions): string {
  return `sftp:${JSON.stringify([o.host, o.port, o.user, o.password, o.keyPath, o.hostKey])}`;
}

function loginOf(o: SftpOptions, tuning: Required<SessionTuning>): Login {
  const key = `${loginKey(o)} ${JSON.stringify(tuning)}`;
  let login = logins.get(key);
  if (!login) logins.set(key, login = new Login(o, tuning));
  return login;
}

/** One connection of a login, opened on first use and closed when idle or no longer wanted. */
class SshLink {
  /** Connections opened so far (tests and logs). */
  connects = 0;
  #conn: Promise<Connection> | undefined;
  #active = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Sessions that used this connection and have not been closed since (a count: no references). */
  #members = 0;

  constructor(readonly login: Login) {}

  get connected(): boolean {
    return this.#conn !== undefined;
  }

  /** A session starts using this connection (until it leaves). */
  join(): void {
    this.#members++;
  }

  /** Marks the connection busy (no idle close) until the returned function is called. */
  hold(): () => void {
    this.#active++;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.#active === 0 && this.#conn) {
        this.#idleTimer = setTimeout(() => this.#close(), this.login.tuning.idleMs);
      }
    };
  }

  /** The open connection, or one being opened; `log` gets the host-key warning. */
  connection(log: Logger): Promise<Connection> {
    if (!this.#conn) {
      const conn = this.login.attempt(() => this.#open(log));
      this.#conn = conn;
      conn.catch(() => {
        if (this.#conn === conn) this.#conn = undefined;
      });
    }
    return this.#conn;
  }

  /** Drops the current connection if it is still `conn` (a broken one), so the next use reconnects. */
  drop(conn: Promise<Connection>): void {
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    conn.then((c) => c.client.end(), () => {});
  }

  /**
   * A session is done with the connection (`member`: it had joined): the last one to leave
   * closes it now (whatever it still has under way); otherwise it stays for the others,
   * closing when idle.
   */
  async leave(member: boolean): Promise<void> {
    if (member) this.#members--;
    if (this.#members === 0) await this.#close();
  }

  async #close(): Promise<void> {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    const conn = this.#conn;
    this.#conn = undefined;
    const c = await conn?.catch(() => undefined);
    if (!c) return;
    c.client.end();
    await c.closed;
  }

  /** Connects and logs in; any failure is a {@linkcode ConnectFailure}. */
  async #open(log: Logger): Promise<Connection> {
    const login = this.login;
    const o = login.options;
    const hostPort = hostPortText(o);
    let pinned: PublicKey | undefined;
    let known: Awaited<ReturnType<typeof loadKnownHosts>>;
    let privateKey: Buffer | undefined;
    try {
      pinned = o.hostKey ? parseHostKeySetting(o.hostKey) : undefined;
      known = pinned ? [] : await loadKnownHosts();
      privateKey = o.keyPath ? await readKey(o.keyPath) : undefined;
    } catch (err) {
      // A setting or file at fault (a known_hosts that cannot be read names itself): no retry.
      const settled = err instanceof LitestreamError || err instanceof Deno.errors.NotCapable;
      throw new ConnectFailure(settled ? err : new LitestreamError(describe(err), { cause: err }));
    }
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
      keepaliveInterval: login.tuning.keepaliveMs,
      keepaliveCountMax: 3,
      algorithms: {
        // Keys apply in order: ssh2 prepends only what its list lacks.
        cipher: { remove: PREFERRED_CIPHER, prepend: PREFERRED_CIPHER },
        serverHostKey: types.length > 0 ? { prepend: types.flatMap(algorithmsFor) } : undefined,
      },
      hostVerifier: (key: Buffer) => {
        presented = new Uint8Array(key);
        verdict = judgeHostKey(presented, name, pinned ?? login.firstSeen, known);
        if (login.firstSeen && verdict.kind === "mismatch") {
          verdict = { ...verdict, sources: ["the key this process accepted first"] };
        }
        return verdict.kind === "trusted" || verdict.kind === "unknown";
      },
    };
    const client = new Client();
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    this.connects++;
    const finalisedBefore = oneShotCiphersFinalised();
    // Logins of one host connect at once at start-up: at most HANDSHAKES_PER_HOST handshakes
    // are under way, so that sshd's MaxStartups (10 by default) does not drop any.
    const conn = await handshakeSlots(hostPort).run(async () => {
      const started = Date.now();
      let sock: ConnStream;
      try {
        sock = await connectStream(o.host, o.port, login.tuning.connectTimeoutMs);
      } catch (err) {
        throw new ConnectFailure(err);
      }
      // The rest of the connect timeout bounds the handshake and login.
      const readyTimeout = Math.max(1, login.tuning.connectTimeoutMs - (Date.now() - started));
      return await new Promise<Connection>((resolve, reject) => {
        let settled = false;
        const fail = (err: unknown) => {
          if (settled) return;
          settled = true;
          client.end();
          reject(new ConnectFailure(err, verdict, presented));
        };
        client.on("handshake", (n: { cs: { cipher: string } }) => cipher = n.cs.cipher);
        client.on("error", fail);
        client.on("close", () => {
          fail(new Error("connection closed"));
          // A connection that breaks later is dropped; the next operation reconnects.
          if (this.#conn && settled) {
            const current = this.#conn;
            current.then((c) => c.client === client && this.drop(current), () => {});
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
    log.debug("sftp connected", { host: hostPort, cipher });
    if (verdict?.kind === "unknown" && presented && !login.firstSeen) {
      login.firstSeen = { type: blobType(presented) ?? "unknown", blob: presented };
      // Once per process for a host and key, however many logins it serves.
      const warning = `${hostPort} ${fingerprint(presented)}`;
      if (!unverifiedWarned.has(warning)) {
        unverifiedWarned.add(warning);
        log.warn(
          "sftp host key not verified: no host-key setting and no known_hosts entry for the host; " +
            "set host-key to the value below to pin it",
          {
            host: hostPort,
            fingerprint: fingerprint(presented),
            "host-key": keyLine(login.firstSeen),
          },
        );
      }
    }
    return conn;
  }
}

/** Reads `key-path`; a missing permission stays itself, anything else says which file. */
async function readKey(path: string): Promise<Buffer> {
  try {
    return Buffer.from(await Deno.readFile(path));
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable) throw err;
    throw new LitestreamError(`cannot read key-path ${path}: ${describe(err)}`);
  }
}

/** A replica client's use of its login's connection: retries, and errors naming the replica. */
export class SftpSession {
  readonly #link: SshLink;
  /** Whether it has used its connection since it was made or last closed. */
  #joined = false;

  /** A session for `options`; `location` names the replica in errors, `log` gets the host-key warning. */
  constructor(
    readonly options: SftpOptions,
    readonly location: string,
    readonly log: Logger,
    tuning: SessionTuning = {},
  ) {
    this.#link = loginOf(options, { ...TUNING_DEFAULTS, ...tuning }).take();
  }

  /** Connections opened so far by the connection this session uses (tests and logs). */
  get connects(): number {
    return this.#link.connects;
  }

  /** Whether its connection is open (or opening). */
  get connected(): boolean {
    return this.#link.connected;
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
          conn = this.#link.connection(this.log);
          const c = await conn.catch((err) => {
            throw err instanceof ConnectFailure ? this.#connectError(err) : err;
          });
          return await fn(c.sftp);
        } catch (err) {
          if (!(err instanceof SftpError && err.transient)) throw err;
          if (conn) this.#link.drop(conn);
          if (!retry || attempt >= ATTEMPTS) throw err;
          this.log.warn("sftp connection failed; retrying", { attempt, error: err.message });
          await backoff(attempt, 200);
        }
      }
    } finally {
      release();
    }
  }

  /** Marks the connection busy (no idle close) until the returned function is called. */
  hold(): () => void {
    if (!this.#joined) {
      this.#joined = true;
      this.#link.join();
    }
    return this.#link.hold();
  }

  /**
   * Done with the connection: it closes now unless other replicas of the login share it (then
   * it closes when they are done, or idle). The next operation opens it again.
   */
  close(): Promise<void> {
    const member = this.#joined;
    this.#joined = false;
    return this.#link.leave(member);
  }

  /** The error a failed connection attempt reports for this replica: host key, login, or network. */
  #connectError({ reason: err, verdict, presented }: ConnectFailure): LitestreamError {
    const o = this.options;
    const hostPort = hostPortText(o);
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
              : this.#link.login.firstSeen
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
