/**
 * Shadow WAL files (lib/core/shadow_wal.ts) on real WAL bytes from SQLite (tests/support/
 * wal_source.ts), written to a plain file that stands in for the database's `-wal`: only whole,
 * committed, verified frames reach the shadow; a restarted WAL (new salts) or a bad checksum
 * stops the copy where it is; a torn shadow tail is cut off on open; ranges are streamed with
 * their salts checked.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  copyCommittedFrames,
  createShadow,
  openShadow,
  readWalHeaderBytes,
  readWalRange,
  scanWal,
  type ShadowState,
} from "./shadow_wal.ts";
import { FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from "../sqlite/wal.ts";
import { splitAtCommits, WalSource } from "../../tests/support/wal_source.ts";
import { tempDir } from "../../tests/support/poll.ts";

const PAGE = 4096;
const FRAME = FRAME_HEADER_SIZE + PAGE;

/** One transaction of several frames: a row that overflows into a few pages. */
const BIG_ROW = "INSERT INTO t(v) VALUES (randomblob(10000))";

/** WAL bytes of `txs` multi-frame transactions and the offset where each commit frame ends. */
function walOf(dir: string, txs: number): { wal: Uint8Array; commits: number[] } {
  using src = new WalSource(dir, PAGE);
  for (let i = 0; i < txs; i++) src.tx(BIG_ROW);
  const wal = src.wal();
  return { wal, commits: commitEnds(wal) };
}

/** Offsets just past each commit frame of `wal`. */
function commitEnds(wal: Uint8Array): number[] {
  return splitAtCommits(wal, PAGE).map(([offset, bytes]) => offset + bytes.length);
}

/** The shadow file's bytes. */
const shadowBytes = (s: ShadowState) => Deno.readFileSync(s.path);

/** A directory with a stand-in `-wal` path and a shadow path. */
async function paths() {
  const dir = await tempDir("shadow-wal-test-");
  return {
    dir,
    walPath: join(dir.path, "db-wal"),
    shadowPath: join(dir.path, "00000000.wal"),
    [Symbol.asyncDispose]: () => dir[Symbol.asyncDispose](),
  };
}

Deno.test("createShadow copies the header and every committed frame, verified", async () => {
  await using p = await paths();
  const { wal, commits } = walOf(p.dir.path, 3);
  assert.equal(commits.at(-1), wal.length, "the WAL ends on a commit");
  Deno.writeFileSync(p.walPath, wal);

  const { shadow, copy } = await createShadow(p.walPath, p.shadowPath, 0, 0o600);
  assert.equal(copy.copied, wal.length - WAL_HEADER_SIZE);
  assert.equal(shadow.size, wal.length);
  assert.equal(shadow.index, 0);
  assert.deepEqual(shadow.headerBytes, wal.subarray(0, WAL_HEADER_SIZE));
  assert.deepEqual(shadowBytes(shadow), wal);
  assert.equal((await Deno.stat(p.shadowPath)).mode! & 0o777, 0o600);
  // Nothing new: a second copy appends nothing.
  assert.deepEqual(await copyCommittedFrames(p.walPath, shadow), { copied: 0 });
});

Deno.test("an uncommitted tail is not copied until its commit frame arrives", async () => {
  await using p = await paths();
  const { wal, commits } = walOf(p.dir.path, 2);
  const [first, second] = commits.slice(-2); // the last two transactions
  assert.ok(second - first >= 3 * FRAME, "the second transaction spans several frames");
  // The WAL as a writer leaves it mid-transaction: frames of tx 2, but not its commit frame.
  Deno.writeFileSync(p.walPath, wal.subarray(0, second - FRAME));
  assert.equal((await scanWal(p.walPath))?.committedEnd, first);

  const { shadow, copy } = await createShadow(p.walPath, p.shadowPath, 0, 0o600);
  assert.equal(copy.copied, first - WAL_HEADER_SIZE);
  assert.equal(shadow.size, first);
  assert.deepEqual(shadowBytes(shadow), wal.subarray(0, first));

  Deno.writeFileSync(p.walPath, wal); // the commit frame lands
  assert.deepEqual(await copyCommittedFrames(p.walPath, shadow), { copied: second - first });
  assert.deepEqual(shadowBytes(shadow), wal);
});

Deno.test("a transaction longer than one read is not written before its commit, then whole", async () => {
  await using p = await paths();
  using src = new WalSource(p.dir.path, PAGE);
  src.tx("INSERT INTO t(v) VALUES (randomblob(100))");
  src.tx("INSERT INTO t(v) VALUES (randomblob(1500000))"); // some 370 overflow pages
  const wal = src.wal();
  const [first, second] = commitEnds(wal).slice(-2);
  assert.ok((second - first) / FRAME > 256, "tx 2 spans more than one read of the walk");

  // All of tx 2 but its commit frame: only tx 1 and what came before reach the shadow file.
  Deno.writeFileSync(p.walPath, wal.subarray(0, second - FRAME));
  const { shadow } = await createShadow(p.walPath, p.shadowPath, 0, 0o600);
  assert.equal(shadow.size, first);
  assert.equal(Deno.statSync(p.shadowPath).size, first);

  Deno.writeFileSync(p.walPath, wal); // the commit frame lands
  assert.deepEqual(await copyCommittedFrames(p.walPath, shadow), { copied: second - first });
  assert.deepEqual(shadowBytes(shadow), wal);

  // The same WAL copied in one go: tx 1 as the walk passes it, tx 2 read again after its commit.
  await Deno.remove(p.shadowPath);
  const again = await createShadow(p.walPath, p.shadowPath, 0, 0o600);
  assert.equal(again.shadow.size, wal.length);
  assert.deepEqual(shadowBytes(again.shadow), wal);
});

Deno.test("a restarted WAL (new salts) stops the copy at the shadow's end", async () => {
  await using p = await paths();
  using src = new WalSource(p.dir.path, PAGE);
  src.tx(BIG_ROW);
  const before = src.wal();
  src.checkpoint(); // the next write restarts the WAL with new salts
  for (let i = 0; i < 4; i++) src.tx(BIG_ROW);
  const after = src.wal();
  assert.ok(after.length > before.length);
  assert.notDeepEqual(after.subarray(16, 24), before.subarray(16, 24), "salts changed");

  Deno.writeFileSync(p.walPath, before);
  const { shadow } = await createShadow(p.walPath, p.shadowPath, 0, 0o600);
  Deno.writeFileSync(p.walPath, after);
  // Frames past the shadow's end are valid, but belong to the new WAL: none is copied.
  assert.deepEqual(await copyCommittedFrames(p.walPath, shadow), { copied: 0 });
  assert.equal(shadow.size, before.length);
  assert.deepEqual(shadowBytes(shadow), before);
});

Deno.test("a bad checksum stops the copy at the last good commit, later commits included", async () => {
  await using p = await paths();
  const { wal, commits } = walOf(p.dir.path, 3);
  const bad = wal.slice();
  bad[commits[0] + FRAME + FRAME_HEADER_SIZE + 100] ^= 0xff; // a page byte in tx 2's 2nd frame
  Deno.writeFileSync(p.walPath, bad);

  const { shadow, copy } = await createShadow(p.walPath, p.shadowPath, 0, 0o600);
  assert.equal(copy.copied, commits[0] - WAL_HEADER_SIZE);
  assert.equal(shadow.size, commits[0]);
  // tx 2's first frame verified, but without its commit it was cut off again.
  assert.deepEqual(shadowBytes(shadow), bad.subarray(0, commits[0]));
  assert.equal((await scanWal(p.walPath))?.committedEnd, commits[0]);
});

Deno.test("openShadow verifies the file and cuts a torn tail back to the last commit", async () => {
  await using p = await paths();
  const { wal, commits } = walOf(p.dir.path, 2);
  Deno.writeFileSync(p.walPath, wal);
  const { shadow: created } = await createShadow(p.walPath, p.shadowPath, 3, 0o600);

  // A crash mid-append: half a frame after the last commit.
  Deno.writeFileSync(p.shadowPath, wal.subarray(commits[1] - 2 * FRAME, commits[1] - FRAME), {
    append: true,
  });
  const opened = await openShadow(p.shadowPath, 3);
  assert.ok(typeof opened === "object", String(opened));
  assert.equal(opened.size, wal.length);
  assert.deepEqual(opened.checksum, created.checksum, "same running checksum as after the copy");
  assert.equal((await Deno.stat(p.shadowPath)).size, wal.length, "the tail is cut off");

  assert.equal(await openShadow(join(p.dir.path, "missing.wal"), 0), "no shadow wal");
  Deno.writeFileSync(p.shadowPath, wal.subarray(0, 20));
  assert.equal(await openShadow(p.shadowPath, 0), "short shadow wal");
  Deno.writeFileSync(p.shadowPath, new Uint8Array(WAL_HEADER_SIZE));
  assert.match(String(await openShadow(p.shadowPath, 0)), /^shadow wal: /);
});

Deno.test("readWalRange streams whole frames and refuses a frame with foreign salts", async () => {
  await using p = await paths();
  const { wal, commits } = walOf(p.dir.path, 2);
  Deno.writeFileSync(p.walPath, wal);
  const read = (start: number, end: number) =>
    new Response(readWalRange(p.walPath, start, end)).bytes();

  assert.deepEqual(await read(0, wal.length), wal, "from 0 the header comes too");
  assert.deepEqual(await read(commits[0], commits[1]), wal.subarray(commits[0], commits[1]));
  await assert.rejects(read(commits[0], wal.length + FRAME), /shorter than expected/);

  const foreign = wal.slice();
  foreign[commits[0] + 8] ^= 1; // salt-1 of the first frame of tx 2
  Deno.writeFileSync(p.walPath, foreign);
  await assert.rejects(
    read(commits[0], commits[1]),
    { message: `${p.walPath}: replica salt mismatch at offset ${commits[0]}` },
  );
});

Deno.test("scanWal and readWalHeaderBytes: nothing for a missing or headless WAL", async () => {
  await using p = await paths();
  assert.equal(await scanWal(p.walPath), undefined);
  assert.equal(readWalHeaderBytes(p.walPath), undefined);
  Deno.writeFileSync(p.walPath, new Uint8Array(10));
  assert.equal(await scanWal(p.walPath), undefined);
  assert.equal(readWalHeaderBytes(p.walPath), undefined);
  // A header alone: valid, with no committed frames yet.
  const { wal } = walOf(p.dir.path, 1);
  Deno.writeFileSync(p.walPath, wal.subarray(0, WAL_HEADER_SIZE));
  assert.equal((await scanWal(p.walPath))?.committedEnd, WAL_HEADER_SIZE);
  await assert.rejects(createShadow(join(p.dir.path, "none"), p.shadowPath, 0, 0o600), {
    message: `${join(p.dir.path, "none")}: wal header missing`,
  });
});
