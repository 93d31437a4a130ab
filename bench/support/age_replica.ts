/**
 * An age-encrypted copy of a cached v0.3.13 replica, for the `restore-large-age` scenario: every
 * snapshot and WAL segment re-stored through our age decorator (the format v0.3.13 writes with
 * an `age` block; the scenario checks that v0.3.13 restores it) with a key pair made for it, and
 * kept in the bench cache beside the plain replica.
 *
 * @module
 */

import { generateIdentity, identityToRecipient } from "age-encryption";
import { AgeReplicaClient } from "../../replicas/age/mod.ts";
import { FileReplicaClient } from "../../replicas/file/mod.ts";
import { cachedBuild } from "./cache.ts";
import type { AgeKeys } from "./tools.ts";
import type { CachedReplica } from "./v0313_replica.ts";

/** The encrypted copy and its keys. */
export interface AgeReplicaCopy extends AgeKeys {
  replicaPath: string;
  /** Seconds our decorator took to encrypt the copy. */
  encryptSeconds: number;
}

/** Returns the encrypted copy of `r`, making it the first time. */
export async function cachedAgeCopy(
  r: CachedReplica,
  log: (m: string) => void,
): Promise<AgeReplicaCopy> {
  const { dir, marker, built } = await cachedBuild(
    `${r.key}-age-v1`,
    "keys.json",
    async (staging) => {
      log(`[${r.key}] encrypting a copy of the replica with age`);
      const started = performance.now();
      const identity = await generateIdentity();
      const recipient = await identityToRecipient(identity);
      const from = new FileReplicaClient(r.replicaPath);
      const to = new AgeReplicaClient(new FileReplicaClient(`${staging}/replica`), {
        identities: [],
        recipients: [recipient],
      });
      for (const g of await from.generations()) {
        for (const s of await from.snapshots(g)) {
          await to.writeSnapshot(g, s.index, await from.readSnapshot(g, s.index));
        }
        for (const w of await from.walSegments(g)) {
          await to.writeWalSegment(w, await from.readWalSegment(w));
        }
      }
      const encryptSeconds = Number(((performance.now() - started) / 1000).toFixed(1));
      return JSON.stringify({ identity, recipient, encryptSeconds }) + "\n";
    },
  );
  if (!built) log(`using cached age copy ${dir}`);
  return { ...JSON.parse(marker), replicaPath: `${dir}/replica` };
}
