/**
 * What a database holds, as one digest, and restores of many replicas without a process each:
 * for tests that compare hundreds of databases with their restores.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { findRestorePlan, restoreDatabase } from "../../lib/restore/restore.ts";
import { FileReplicaClient } from "../../replicas/file/client.ts";

/**
 * SHA-256 of every user table's rows in rowid order (our `_litestream_*` tables and SQLite's
 * own left out), read through `node:sqlite` in this process. Reading beside a running
 * replicate is safe: this connection is never the last one, so closing it checkpoints nothing.
 */
export async function dbDigest(path: string): Promise<string> {
  const db = new DatabaseSync(path, { readOnly: true });
  let text = "";
  try {
    const tables = db.prepare(
      "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' " +
        "AND name NOT LIKE '_litestream_%' ORDER BY name",
    ).all() as { name: string }[];
    for (const { name } of tables) {
      const rows = db.prepare(`SELECT * FROM "${name}" ORDER BY rowid`).all();
      text += `${name}:${JSON.stringify(rows, (_k, v) => v instanceof Uint8Array ? hex(v) : v)}\n`;
    }
  } finally {
    db.close();
  }
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return hex(new Uint8Array(hash));
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Restores the latest state of the file replica at `replicaDir` to `output` with our restore code, in this process. */
export async function restoreFileReplica(replicaDir: string, output: string): Promise<void> {
  const client = new FileReplicaClient(replicaDir);
  const { plan } = await findRestorePlan([client], {});
  await restoreDatabase(client, plan, { output });
}
