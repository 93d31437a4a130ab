/**
 * Host key checking for SFTP replicas, as OpenSSH does it: the server's key
 * must be the configured `host-key`, or else one that `~/.ssh/known_hosts`
 * (or `/etc/ssh/ssh_known_hosts`) lists for the host (plain, wildcard and
 * hashed host names, `[host]:port` for other ports, `@revoked` honoured).
 * v0.3.13 accepted any key; a host known nowhere is still accepted, and the
 * caller logs the key's fingerprint so the user can pin it. Parsing and
 * matching are pure; only `loadKnownHosts` reads files.
 *
 * @module
 */

import { createHash, createHmac } from "node:crypto";
import { Buffer } from "node:buffer";
import { LitestreamError } from "../../lib/errors.ts";

/** A public key: its type (`ssh-ed25519`, …) and SSH wire-format blob. */
export interface PublicKey {
  type: string;
  blob: Uint8Array;
}

/** One usable known_hosts line. */
export interface KnownHost {
  /** Comma-separated host patterns, or one hashed name (`|1|salt|hash`). */
  patterns: string;
  key: PublicKey;
  revoked: boolean;
  /** `file:line`, for messages. */
  source: string;
}

/** What the server presented, judged against what is trusted. */
export type HostKeyVerdict =
  | { kind: "trusted"; source: string }
  | { kind: "unknown" }
  | { kind: "mismatch"; expected: PublicKey[]; sources: string[] }
  | { kind: "revoked"; source: string };

/** The key type written inside a wire-format blob (its first string). */
export function blobType(blob: Uint8Array): string | undefined {
  if (blob.length < 4) return undefined;
  const len = new DataView(blob.buffer, blob.byteOffset).getUint32(0);
  if (len === 0 || 4 + len > blob.length) return undefined;
  return new TextDecoder().decode(blob.subarray(4, 4 + len));
}

/** `SHA256:<base64, unpadded>`, as `ssh-keygen -l` prints it. */
export function fingerprint(blob: Uint8Array): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** The key as one `type base64` line (what `host-key` takes). */
export function keyLine(key: PublicKey): string {
  return `${key.type} ${Buffer.from(key.blob).toString("base64")}`;
}

/** Parses `type base64 [comment]` (an authorized_keys / `.pub` line); undefined if malformed. */
export function parsePublicKey(text: string): PublicKey | undefined {
  const [type, b64] = text.trim().split(/\s+/);
  if (!type || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  const blob = new Uint8Array(Buffer.from(b64, "base64"));
  return blobType(blob) === type ? { type, blob } : undefined;
}

/**
 * Parses the `host-key` setting: a public key line, or a line of `ssh-keyscan` output (the host
 * first); throws naming the setting when it is neither.
 */
export function parseHostKeySetting(text: string): PublicKey {
  const key = parsePublicKey(text) ?? parsePublicKey(text.trim().split(/\s+/).slice(1).join(" "));
  if (!key) {
    throw new LitestreamError(
      `invalid host-key ${JSON.stringify(text.slice(0, 40))}: expected a public key line ` +
        `such as "ssh-ed25519 AAAA…" (from ssh-keyscan or the server's .pub file)`,
    );
  }
  return key;
}

/** The usable lines of a known_hosts file (`@cert-authority` lines are skipped). */
export function parseKnownHosts(text: string, file: string): KnownHost[] {
  const out: KnownHost[] = [];
  text.split("\n").forEach((raw, i) => {
    const fields = raw.trim().split(/\s+/);
    if (fields[0] === "" || fields[0].startsWith("#")) return;
    let revoked = false;
    if (fields[0].startsWith("@")) {
      if (fields[0] !== "@revoked") return;
      revoked = true;
      fields.shift();
    }
    const key = parsePublicKey(`${fields[1]} ${fields[2]}`);
    if (key && fields[0]) {
      out.push({ patterns: fields[0], key, revoked, source: `${file}:${i + 1}` });
    }
  });
  return out;
}

/** The name known_hosts uses for a host: `host` on port 22, else `[host]:port`. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/** Whether an entry's patterns match `name` (OpenSSH's rules: any positive, no negated). */
export function matchesHost(patterns: string, name: string): boolean {
  if (patterns.startsWith("|1|")) {
    const [, , salt, hash] = patterns.split("|");
    if (!salt || !hash) return false;
    const mac = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64");
    return mac === hash;
  }
  let matched = false;
  for (const p of patterns.toLowerCase().split(",")) {
    const negated = p.startsWith("!");
    if (!globMatch(negated ? p.slice(1) : p, name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

function globMatch(pattern: string, name: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${re}$`).test(name);
}

/**
 * Judges the presented key: against `pinned` (the `host-key` setting) when
 * given, else against the known_hosts `entries` for `name`.
 */
export function judgeHostKey(
  presented: Uint8Array,
  name: string,
  pinned: PublicKey | undefined,
  entries: KnownHost[],
): HostKeyVerdict {
  const same = (k: PublicKey) => Buffer.from(k.blob).equals(Buffer.from(presented));
  if (pinned) {
    return same(pinned)
      ? { kind: "trusted", source: "host-key" }
      : { kind: "mismatch", expected: [pinned], sources: ["host-key"] };
  }
  const mine = entries.filter((e) => matchesHost(e.patterns, name));
  const revoked = mine.find((e) => e.revoked && same(e.key));
  if (revoked) return { kind: "revoked", source: revoked.source };
  const known = mine.filter((e) => !e.revoked);
  const hit = known.find((e) => same(e.key));
  if (hit) return { kind: "trusted", source: hit.source };
  if (known.length === 0) return { kind: "unknown" };
  return {
    kind: "mismatch",
    expected: known.map((e) => e.key),
    sources: known.map((e) => e.source),
  };
}

/** Server host key algorithms that present a key of `type` (RSA keys sign with SHA-2 too). */
export function algorithmsFor(type: string): string[] {
  return type === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [type];
}

/** The user's and the system's known_hosts entries; missing files are empty. */
export async function loadKnownHosts(home = Deno.env.get("HOME")): Promise<KnownHost[]> {
  const files = [...(home ? [`${home}/.ssh/known_hosts`] : []), "/etc/ssh/ssh_known_hosts"];
  const out: KnownHost[] = [];
  for (const file of files) {
    try {
      out.push(...parseKnownHosts(await Deno.readTextFile(file), file));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return out;
}
