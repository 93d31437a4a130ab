import assert from "node:assert/strict";
import { LineStream } from "./log_stream.ts";
import { Logger } from "./log.ts";

/** A writer whose writes finish only when the test lets them, taking at most `chunk` bytes. */
class HeldWriter {
  readonly writes: string[] = [];
  #release: (() => void)[] = [];
  constructor(readonly chunk = Infinity) {}
  write(p: Uint8Array): Promise<number> {
    const n = Math.min(p.length, this.chunk);
    this.writes.push(new TextDecoder().decode(p.subarray(0, n)));
    return new Promise((resolve) => this.#release.push(() => resolve(n)));
  }
  /** Lets every write started so far finish, then lets the stream start its next one. */
  async release(): Promise<void> {
    for (const r of this.#release.splice(0)) r();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

Deno.test("LineStream: write returns at once; a burst of lines goes in one write, in order", async () => {
  const w = new HeldWriter();
  const s = new LineStream(w);
  s.write("one");
  s.write("two");
  s.write("three");
  assert.deepEqual(w.writes, ["one\n"], "the first line is on its way; the others wait for it");
  await w.release();
  assert.deepEqual(w.writes, ["one\n", "two\nthree\n"]);
  await w.release();
  assert.equal(await s.flush(1000), true);
});

Deno.test("LineStream: a short write is continued from where it stopped", async () => {
  const w = new HeldWriter(4);
  const s = new LineStream(w);
  s.write("abcdefghij");
  for (let i = 0; i < 3; i++) await w.release();
  assert.deepEqual(w.writes, ["abcd", "efgh", "ij\n"]);
  assert.equal(s.pending, 0);
});

Deno.test("LineStream: a reader that stops holds up to the limit; the rest is dropped and counted once it reads again", async () => {
  const w = new HeldWriter();
  const s = new LineStream(w, 100);
  const line = "x".repeat(19); // 20 bytes with its newline
  for (let i = 0; i < 8; i++) s.write(line);
  assert.equal(s.pending, 100, "five lines held");
  assert.equal(s.takeDropped(), 0, "not told while the reader is still stalled");
  await w.release(); // the first line
  await w.release(); // the four others, in one write
  assert.equal(s.pending, 0);
  assert.equal(s.takeDropped(), 3);
  assert.equal(s.takeDropped(), 0, "told once");
});

Deno.test("LineStream: flush gives up after its timeout while the reader is stalled", async () => {
  const s = new LineStream(new HeldWriter());
  s.write("stuck");
  assert.equal(await s.flush(20), false);
});

Deno.test("LineStream: once the reader has gone, lines are discarded and nobody sees an error", async () => {
  let writes = 0;
  const s = new LineStream({
    write: () => {
      writes++;
      return Promise.reject(new Deno.errors.BrokenPipe("broken pipe"));
    },
  });
  s.write("first");
  assert.equal(await s.flush(1000), true, "nothing left to write");
  s.write("second");
  assert.equal(await s.flush(1000), true);
  assert.equal(writes, 1, "no write after the pipe broke");
});

Deno.test("Logger: lines dropped while the log was not read are counted in a warning before the next line", () => {
  const lines: string[] = [];
  let dropped = 7;
  const log = new Logger({
    format: "text",
    write: (l) => lines.push(l),
    dropped: () => {
      const n = dropped;
      dropped = 0;
      return n;
    },
  });
  log.info("after the stall", { db: "/a.db" });
  log.info("next");
  assert.equal(lines.length, 3);
  assert.match(
    lines[0],
    /level=WARN msg="log lines dropped: the log output was not read" lines=7$/,
  );
  assert.match(lines[1], /level=INFO msg="after the stall" db=\/a.db$/);
  assert.match(lines[2], /msg=next$/);
});
