/**
 * age key strings as a config holds them (v0.3.13 reads each list entry as an age key file:
 * one key per line, blank lines and `#` comments ignored), and their shape: the X25519 keys
 * v0.3.13 reads. Pure and dependency-free, so config parsing can check keys without loading
 * the age library; the checksum inside each key is checked by the library when a client is built.
 *
 * @module
 */

import { ConfigError } from "../../lib/errors.ts";

/** One age key of a replica's `age` block, with the config key that holds it (for errors). */
export interface AgeKey {
  value: string;
  /** e.g. `dbs[0].replicas[1].age.identities[0]`, plus ` line N` inside a multi-line entry. */
  key: string;
}

/**
 * A replica's `age` block (v0.3.13): objects are encrypted to the recipients and decrypted
 * with the identities. `file` and `key` name the block in errors.
 */
export interface AgeConfig {
  file: string;
  key: string;
  identities: AgeKey[];
  recipients: AgeKey[];
}

/** bech32's alphabet. */
const BECH32 = "[qpzry9x8gf2tvdw0s3jn54khce6mua7l]";
const RECIPIENT = new RegExp(`^age1${BECH32}{58}$`);
const IDENTITY = new RegExp(`^AGE-SECRET-KEY-1${BECH32.toUpperCase()}{58}$`);

/** The kind of an age key: secret (`identity`) or public (`recipient`). */
export type AgeKeyKind = "identity" | "recipient";

/** One key of a list entry, with its line number (from 1) inside that entry. */
export interface AgeKeyLine {
  line: number;
  key: string;
}

/** The keys of one list entry: every line but blank ones and `#` comments, trimmed. */
export function ageKeyLines(text: string): AgeKeyLine[] {
  return text.split(/\r?\n/).flatMap((raw, i) => {
    const key = raw.trim();
    return key === "" || key.startsWith("#") ? [] : [{ line: i + 1, key }];
  });
}

/**
 * What is wrong with the shape of `key` as an age key of `kind`, or undefined when it has the
 * shape of an X25519 key. A secret key is never echoed back.
 */
export function ageKeyProblem(kind: AgeKeyKind, key: string): string | undefined {
  if (kind === "identity") {
    if (IDENTITY.test(key)) return undefined;
    if (key.startsWith("age1")) {
      return "this is a recipient (public key); identities are secret keys (AGE-SECRET-KEY-1…)";
    }
    if (key.startsWith("AGE-SECRET-KEY-PQ-1")) {
      return "post-quantum identities are not supported (v0.3.13 reads X25519 keys only)";
    }
    return `malformed age identity: expected AGE-SECRET-KEY-1 and 58 bech32 characters ` +
      `(74 in all), got ${key.length} characters`;
  }
  if (RECIPIENT.test(key)) return undefined;
  if (key.startsWith("AGE-SECRET-KEY-")) {
    return "this is an identity (secret key); recipients are public keys (age1…)";
  }
  if (key.startsWith("age1pq1") || key.startsWith("age1tag")) {
    return `recipient type not supported (v0.3.13 reads X25519 keys only): ${JSON.stringify(key)}`;
  }
  if (/^(ssh-|ecdsa-)/.test(key)) {
    return "SSH recipients are not supported (v0.3.13 reads X25519 keys only)";
  }
  return `malformed age recipient: expected age1 and 58 bech32 characters: ${JSON.stringify(key)}`;
}

/**
 * The keys of one entry (`text`, read as a key file) of the config key `at` in `file`, each
 * checked for shape; a `ConfigError` naming the key (and line) otherwise, or when there is none.
 */
export function parseAgeKeys(kind: AgeKeyKind, text: string, file: string, at: string): AgeKey[] {
  const lines = ageKeyLines(text);
  if (lines.length === 0) {
    throw new ConfigError(
      file,
      at,
      `no ${kind === "identity" ? "secret keys" : "recipients"} found`,
    );
  }
  return lines.map(({ line, key: value }) => {
    const where = lines.length > 1 || line > 1 ? `${at} line ${line}` : at;
    const problem = ageKeyProblem(kind, value);
    if (problem) throw new ConfigError(file, where, problem);
    return { value, key: where };
  });
}
