/**
 * `deno task demo`: the whole loop on this machine. Creates a database,
 * replicates it to a local directory while an application writes, restores
 * it (latest and to a point in time) and checks the copies, printing each step.
 *
 * The application side uses `node:sqlite` in this process; the replicator runs
 * as its own process, as it would in production.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";

const main = new URL("./main.ts", import.meta.url).pathname;
const keep = Deno.args.includes("--keep");
const dir = await Deno.makeTempDir({ prefix: "litestream-demo-" });
const dbPath = join(dir, "app.db");
const replica = join(dir, "replica");

function step(msg: string) {
  console.log(`\n==> ${msg}`);
}

function litestream(...args: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, ...args],
    stdout: "piped",
    stderr: "piped",
  });
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function restore(out: string, ...flags: string[]) {
  const r = await litestream("restore", "-o", out, ...flags, `file://${replica}`).output();
  if (!r.success) throw new Error(`restore failed: ${new TextDecoder().decode(r.stderr)}`);
}

function summary(path: string) {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const { n, total } = db.prepare(
      "SELECT COUNT(*) AS n, COALESCE(SUM(amount), 0) AS total FROM orders",
    ).get() as {
      n: number;
      total: number;
    };
    const check =
      (db.prepare("PRAGMA integrity_check").get() as Record<string, string>).integrity_check;
    return { n, total, check };
  } finally {
    db.close();
  }
}

try {
  step(`Create an application database at ${dbPath}`);
  const app = new DatabaseSync(dbPath);
  app.exec("PRAGMA journal_mode=wal; PRAGMA busy_timeout=5000;");
  app.exec("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, amount INTEGER)");
  const insert = app.prepare("INSERT INTO orders (item, amount) VALUES (?, ?)");
  const batch = (from: number, count: number) => {
    app.exec("BEGIN");
    for (let i = from; i < from + count; i++) insert.run(`item-${i}`, i);
    app.exec("COMMIT");
  };
  batch(1, 100);
  console.log("    100 orders written");

  step(`Start replicating: litestream replicate ${dbPath} file://${replica}`);
  let log = "";
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, "replicate", dbPath, `file://${replica}`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logged = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (text) => void (log += text) }),
  );
  await waitFor("the first snapshot", () => log.includes("snapshot written")).catch((err) => {
    console.log(log);
    throw err;
  });
  console.log("    snapshot uploaded; the replicator now ships every commit within about a second");

  step("The application keeps writing: 5 batches of 200 orders");
  for (let b = 0; b < 5; b++) {
    batch(101 + b * 200, 200);
    await new Promise((r) => setTimeout(r, 300));
  }
  const latest = join(dir, "restored.db");
  const restoredRows = async () => {
    await Deno.remove(latest).catch(() => {});
    await restore(latest);
    return summary(latest);
  };
  await waitFor(
    "the replica to hold all 1100 orders",
    async () => (await restoredRows()).n === 1100,
  );
  const midpoint = new Date();
  console.log(`    replica holds all 1100 orders at ${midpoint.toISOString()}`);
  await new Promise((r) => setTimeout(r, 1000)); // object times have sub-second precision; keep them apart

  step("The application updates and deletes orders");
  app.exec(
    "UPDATE orders SET amount = amount * 2 WHERE id % 2 = 0; DELETE FROM orders WHERE id > 1000",
  );
  const source = {
    n: 1000,
    total: (app.prepare("SELECT SUM(amount) AS t FROM orders").get() as { t: number }).t,
  };
  console.log(`    source now has ${source.n} orders, total amount ${source.total}`);

  step("Wait until the replica has caught up (restore and compare)");
  await waitFor("the replica to catch up", async () => {
    const r = await restoredRows();
    return r.n === source.n && r.total === source.total;
  });
  const s = summary(latest);
  console.log(`    restored latest: ${s.n} orders, total ${s.total}, integrity_check: ${s.check}`);

  step(`Point-in-time restore to ${midpoint.toISOString()} (before the update)`);
  const past = join(dir, "restored-past.db");
  await restore(past, "-timestamp", midpoint.toISOString());
  const p = summary(past);
  console.log(`    restored past: ${p.n} orders, total ${p.total}, integrity_check: ${p.check}`);

  step("Stop the replicator (SIGTERM: final sync, then exit 0)");
  child.kill("SIGTERM");
  const status = await child.status;
  await logged.catch(() => {});
  app.close();
  console.log(`    replicator exited with code ${status.code}`);

  step("Replica contents");
  const listing = await litestream("wal", `file://${replica}`).output();
  const lines = new TextDecoder().decode(listing.stdout).trim().split("\n");
  console.log(`    ${lines.length - 1} WAL segments; first lines:`);
  for (const line of lines.slice(0, 4)) console.log(`      ${line}`);

  const ok = s.check === "ok" && p.check === "ok" && s.n === source.n && s.total === source.total &&
    p.n === 1100 && status.code === 0;
  step(ok ? "Demo passed: the restored database matches the source" : "Demo FAILED");
  if (!ok) Deno.exitCode = 1;
} finally {
  if (keep) console.log(`\n(kept ${dir})`);
  else await Deno.remove(dir, { recursive: true }).catch(() => {});
}
