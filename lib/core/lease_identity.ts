/**
 * A replicator's identity for the replica lease: a random id kept in the database's meta
 * directory (so a restart of the same replicator is recognised as such, and a second
 * replicator with its own meta directory is not), the host name, the process id and the meta
 * directory's path (a copy of the meta directory elsewhere keeps the id, not the path).
 *
 * @module
 */

import { join } from "node:path";
import { LitestreamError } from "../errors.ts";
import type { LeaseIdentity } from "./lease_record.ts";

/** File in the meta directory holding the replicator's id (v0.3.13 ignores it). */
export const ID_FILE = "replicator-id";

/**
 * This process's identity for the database whose meta directory is `metaPath` (which must
 * exist): the id is read from `<meta>/replicator-id`, created once with exclusive create so
 * two processes starting together agree on it.
 */
export async function replicatorIdentity(metaPath: string): Promise<LeaseIdentity> {
  const file = join(metaPath, ID_FILE);
  let id = await readId(file);
  if (!id) {
    const fresh = crypto.randomUUID().replaceAll("-", "").slice(0, 16);
    try {
      await Deno.writeTextFile(`${file}.tmp-${fresh}`, `${fresh}\n`);
      // link() fails if the name exists: the first writer's id wins, and it is never half-written.
      await Deno.link(`${file}.tmp-${fresh}`, file);
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    } finally {
      await Deno.remove(`${file}.tmp-${fresh}`).catch(() => {});
    }
    id = await readId(file);
    if (!id) {
      throw new LitestreamError(`${file}: not a replicator id; delete the file to make a new one`);
    }
  }
  return { id, host: hostName(), pid: Deno.pid, meta: metaPath };
}

async function readId(file: string): Promise<string | undefined> {
  const text = await Deno.readTextFile(file).catch((err) => {
    if (err instanceof Deno.errors.NotFound) return "";
    throw err;
  });
  const id = text.trim();
  return /^[0-9a-f]{16}$/.test(id) ? id : undefined;
}

/** The host name; without `--allow-sys=hostname`, the kernel's, read from /proc. */
export function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    try {
      return Deno.readTextFileSync("/proc/sys/kernel/hostname").trim() || "unknown";
    } catch {
      return "unknown";
    }
  }
}
