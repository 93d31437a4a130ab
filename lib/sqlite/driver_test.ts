/**
 * The SQLite binding: the same tests run against both drivers, plus the FFI-only persist-WAL
 * behaviour and the driver choice. Other processes are played by the `sqlite3` CLI.
 */

import assert from "node:assert/strict";
import {
  type Database,
  defaultDriver,
  type DriverName,
  ffiUnavailableReason,
  openDatabase,
  type OpenOptions,
  SqliteCode,
  SqliteError,
} from "./driver.ts";
import { tempDir } from "../../tests/support/poll.ts";
import { holdWriteLock } from "../../tests/support/sqlite_cli.ts";

const SQLITE3_CLI = "/usr/bin/sqlite3";
const DRIVERS: DriverName[] = ["ffi", "node:sqlite"];

/** Opens with `driver`, runs `body`, always closes. */
async function withDb<T>(
  driver: DriverName,
  path: string,
  options: OpenOptions,
  body: (db: Database) => Promise<T>,
): Promise<T> {
  const db = await openDatabase(path, { driver, ...options });
  try {
    return await body(db);
  } finally {
    await db.close();
  }
}

/** Asserts a rejection is a SqliteError with primary `code` whose message names `path`. */
function isSqliteError(code: number, path: string, text?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof SqliteError, `not a SqliteError: ${err}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, new RegExp(`\\[SQLITE_[A-Z]+ ${code}[\\],]`));
    assert.ok(err.message.includes(path), err.message);
    if (text) assert.match(err.message, text);
    return true;
  };
}

/** Runs SQL in another process with the sqlite3 CLI; returns its trimmed output. */
async function cli(path: string, sql: string): Promise<string> {
  const out = await new Deno.Command(SQLITE3_CLI, { args: [path, sql] }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return text;
}

for (const driver of DRIVERS) {
  Deno.test(`${driver}: creates only when asked, executes and returns typed rows`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/new.db`;
    await assert.rejects(
      openDatabase(path, { driver }),
      isSqliteError(SqliteCode.SQLITE_CANTOPEN, path),
    );
    await assert.rejects(
      openDatabase(path, { driver, readOnly: true, create: true }),
      isSqliteError(SqliteCode.SQLITE_CANTOPEN, path),
    );
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);

    await withDb(driver, path, { create: true }, async (db) => {
      assert.equal(db.driver, driver);
      assert.match(db.version, /^3\.\d+\.\d+$/);
      await db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);");
      assert.deepEqual(await db.queryRow("SELECT COUNT(1), SUM(x) FROM t"), [2, 3]);
      assert.deepEqual(
        await db.queryRow(
          "SELECT 1, -7, 'héllo', NULL, 1.5, 9007199254740993, 1",
        ),
        [1, -7, "héllo", null, 1.5, 9007199254740993n, 1],
      );
      assert.equal(await db.queryRow("SELECT x FROM t WHERE x > 5"), undefined);
    });
    assert.ok((await Deno.stat(path)).isFile);

    await withDb(driver, path, { readOnly: true }, async (db) => {
      assert.deepEqual(await db.queryRow("SELECT COUNT(1) FROM t"), [2]);
      await assert.rejects(
        db.exec("INSERT INTO t VALUES (3)"),
        isSqliteError(SqliteCode.SQLITE_READONLY, path),
      );
    });
  });

  Deno.test(`${driver}: switches to WAL and checkpoints`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/wal.db`;
    await withDb(driver, path, { create: true }, async (db) => {
      assert.deepEqual(await db.queryRow("PRAGMA journal_mode = wal"), ["wal"]);
      await db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1);");
      const row = await db.queryRow("PRAGMA wal_checkpoint(PASSIVE)");
      assert.ok(row);
      assert.equal(row.length, 3);
      assert.equal(row[0], 0);
      assert.ok(row.every((v) => typeof v === "number"));
    });
  });

  Deno.test(`${driver}: errors carry the code, SQLite's message and the path`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/err.db`;
    await withDb(driver, path, { create: true }, async (db) => {
      await assert.rejects(
        db.exec("SELEC 1"),
        isSqliteError(SqliteCode.SQLITE_ERROR, path, /syntax error.*SELEC 1/),
      );
      await assert.rejects(
        db.queryRow("SELECT * FROM nope"),
        isSqliteError(SqliteCode.SQLITE_ERROR, path, /no such table: nope/),
      );
      await db.exec("CREATE TABLE u (x UNIQUE); INSERT INTO u VALUES (1);");
      await assert.rejects(
        db.exec("INSERT INTO u VALUES (1)"),
        isSqliteError(SqliteCode.SQLITE_CONSTRAINT, path),
      );
    });
    // Opening a directory fails; read-write, the FFI library says SQLITE_CANTOPEN while
    // node:sqlite (which opens read-only first) says SQLITE_IOERR, like read-only does for both.
    await assert.rejects(openDatabase(dir.path, { driver }), SqliteError);
    await assert.rejects(
      openDatabase(dir.path, { driver, readOnly: true }),
      isSqliteError(SqliteCode.SQLITE_IOERR, dir.path),
    );

    const junk = `${dir.path}/junk.db`;
    await Deno.writeTextFile(junk, "this is not a database, just some text. ".repeat(200));
    await assert.rejects(
      withDb(driver, junk, {}, (db) => db.queryRow("SELECT COUNT(1) FROM sqlite_master")),
      isSqliteError(SqliteCode.SQLITE_NOTADB, junk, /file is not a database/),
    );
  });

  Deno.test(`${driver}: a closed database rejects calls; closing twice is fine`, async () => {
    await using dir = await tempDir();
    const db = await openDatabase(`${dir.path}/c.db`, { driver, create: true });
    await db.close();
    await db.close();
    await assert.rejects(db.queryRow("SELECT 1"), /database is closed/);
  });

  Deno.test(`${driver}: a held write lock gives SQLITE_BUSY after the busy timeout`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/busy.db`;
    await cli(path, "PRAGMA journal_mode = wal; CREATE TABLE t (x);");
    const lock = await holdWriteLock(path);
    try {
      await withDb(driver, path, { busyTimeoutMs: 500 }, async (db) => {
        let ticks = 0;
        const timer = setInterval(() => ticks++, 10);
        try {
          await assert.rejects(
            db.exec("INSERT INTO t VALUES (1)"),
            isSqliteError(SqliteCode.SQLITE_BUSY, path),
          );
        } finally {
          clearInterval(timer);
        }
        // The FFI driver waits on another thread; node:sqlite's wait freezes the event loop.
        assert.equal(ticks > 0, !db.blocksEventLoop, `ticks during the wait: ${ticks}`);
        await lock.release();
        await db.exec("INSERT INTO t VALUES (1)");
      });
    } finally {
      await lock.release();
    }
  });

  Deno.test(`${driver}: a held read transaction stops another process's TRUNCATE checkpoint`, async () => {
    await using dir = await tempDir();
    const path = `${dir.path}/rtx.db`;
    await withDb(driver, path, { create: true }, async (db) => {
      await db.exec(
        "PRAGMA journal_mode = wal; CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);",
      );
      await db.exec("BEGIN; SELECT COUNT(1) FROM t;");
      await cli(path, "INSERT INTO t VALUES (3);");
      assert.match(await cli(path, "PRAGMA wal_checkpoint(TRUNCATE);"), /^1\|/);
      await db.exec("ROLLBACK");
      // queryRow reads one row of several; it must not leave a read transaction behind.
      assert.deepEqual(await db.queryRow("SELECT x FROM t ORDER BY x"), [1]);
      assert.equal(await cli(path, "PRAGMA wal_checkpoint(TRUNCATE);"), "0|0|0");
    });
  });
}

Deno.test("ffi: persist-WAL keeps the -wal file when our connection closes last", async () => {
  await using dir = await tempDir();
  for (const persist of [true, false]) {
    const path = `${dir.path}/persist-${persist}.db`;
    await withDb("ffi", path, { create: true }, async (db) => {
      assert.ok(db.canPersistWal);
      await db.setPersistWal(persist);
      await db.exec("PRAGMA journal_mode = wal; CREATE TABLE t (x); INSERT INTO t VALUES (1);");
      assert.ok((await Deno.stat(`${path}-wal`)).isFile);
    });
    const walExists = await Deno.stat(`${path}-wal`).then(() => true, () => false);
    assert.equal(walExists, persist);
  }
});

Deno.test("node:sqlite: persist-WAL is reported unavailable and refused", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/p.db`;
  await withDb("node:sqlite", path, { create: true }, async (db) => {
    assert.equal(db.canPersistWal, false);
    await assert.rejects(
      db.setPersistWal(true),
      isSqliteError(SqliteCode.SQLITE_NOTFOUND, path, /persist-WAL/),
    );
  });
});

Deno.test("ffi loads here and is the default driver", () => {
  assert.equal(ffiUnavailableReason(), undefined);
  assert.equal(defaultDriver(), "ffi");
});

Deno.test("falls back to node:sqlite without --allow-ffi or with a bad DENO_SQLITE_PATH", async () => {
  await using dir = await tempDir();
  const mod = new URL("./driver.ts", import.meta.url).href;
  const script = `import { openDatabase, ffiUnavailableReason } from "${mod}";
    const db = await openDatabase("fb.db", { create: true });
    console.log(db.driver, ffiUnavailableReason());
    await db.close();`;
  const run = async (permissions: string[], env: Record<string, string> = {}) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--no-prompt", ...permissions, "-"],
      cwd: dir.path,
      env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdin = child.stdin.getWriter();
    await stdin.write(new TextEncoder().encode(script));
    await stdin.close();
    const out = await child.output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout).trim();
  };
  assert.equal(
    await run(["--allow-read", "--allow-write"]),
    "node:sqlite --allow-ffi is not granted",
  );
  assert.match(
    await run(["-A"], { DENO_SQLITE_PATH: "/nonexistent/libsqlite3.so" }),
    /^node:sqlite no usable libsqlite3 \(\/nonexistent\/libsqlite3\.so: /,
  );
});
