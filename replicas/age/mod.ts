/**
 * age encryption of a replica (v0.3.13's `age` block): `AgeReplicaClient` wraps any backend's
 * client and stores every object encrypted; `ageClientFromConfig` builds it from a config's
 * keys, checking each with the age library and naming the config key of a bad one. Loaded only
 * when a config uses `age`.
 *
 * @module
 */

import { ConfigError } from "../../lib/errors.ts";
import { type AgeConfig, parseAgeKeys } from "./keys.ts";
import type { ReplicaClient } from "../../lib/replica_client.ts";
import { AgeReplicaClient } from "./client.ts";
import { Decrypter, Encrypter } from "age-encryption";

export { type AgeClientOptions, AgeReplicaClient } from "./client.ts";
export type { AgeConfig, AgeKey } from "./keys.ts";

/**
 * An `age` block holding only identities, from the text of environment variable `name` (keys
 * separated by newlines or commas): for readers configured without a config file.
 */
export function ageIdentitiesFromEnv(name: string, text: string): AgeConfig {
  return {
    file: "environment",
    key: name,
    identities: parseAgeKeys("identity", text.replaceAll(",", "\n"), "environment", name),
    recipients: [],
  };
}

/** Wraps `inner` in the age decorator for a config's `age` block; a bad key is a `ConfigError`. */
export function ageClientFromConfig(inner: ReplicaClient, age: AgeConfig): AgeReplicaClient {
  // The shape of every key was checked with the config; the library also checks the checksums.
  for (const k of age.identities) {
    try {
      new Decrypter().addIdentity(k.value);
    } catch {
      throw new ConfigError(age.file, k.key, "malformed age identity (bad checksum)");
    }
  }
  for (const k of age.recipients) {
    try {
      new Encrypter().addRecipient(k.value);
    } catch {
      throw new ConfigError(
        age.file,
        k.key,
        `malformed age recipient (bad checksum): ${JSON.stringify(k.value)}`,
      );
    }
  }
  return new AgeReplicaClient(inner, {
    identities: age.identities.map((k) => k.value),
    recipients: age.recipients.map((k) => k.value),
    identitiesHint: `set ${age.key}.identities in ${age.file}`,
    recipientsHint: `set ${age.key}.recipients in ${age.file}`,
  });
}
