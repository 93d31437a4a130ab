import assert from "node:assert/strict";
import { join } from "node:path";
import { holdFile, isHeldFile } from "./held_files.ts";
import { tempDir } from "../../tests/support/poll.ts";

Deno.test("held files: a held file is known by any name it goes by, until released", async () => {
  await using dir = await tempDir();
  const a = join(dir.path, "a.db");
  await Deno.writeTextFile(a, "x");
  using file = await Deno.open(a, { read: true });
  assert.equal(isHeldFile(a), false);
  const release = holdFile(file);
  assert.equal(isHeldFile(a), true);
  const b = join(dir.path, "b.db");
  await Deno.rename(a, b);
  assert.equal(isHeldFile(b), true, "renamed: same inode");
  assert.equal(isHeldFile(a), false, "the old name is gone");
  const second = holdFile(file);
  release();
  release();
  assert.equal(isHeldFile(b), true, "one holder left; a release counts once");
  second();
  assert.equal(isHeldFile(b), false);
});
