/** File-name patterns (lib/dirs/glob.ts) against Go filepath.Match cases. */

import assert from "node:assert/strict";
import { compileGlob } from "./glob.ts";

function match(pattern: string, name: string): boolean {
  const m = compileGlob(pattern);
  if (typeof m === "string") throw new Error(m);
  return m(name);
}

Deno.test("compileGlob: Go filepath.Match cases", () => {
  const cases: [string, string, boolean][] = [
    ["*.db", "app.db", true],
    ["*.db", "app.db-wal", false],
    ["*.db", ".app.db", true],
    ["*", "anything", true],
    ["a?c", "abc", true],
    ["a?c", "abbc", false],
    ["[ab]*.db", "b1.db", true],
    ["[^ab]*.db", "b1.db", false],
    ["[a-c]x", "bx", true],
    ["[a-c]x", "dx", false],
    ["tenant-*.sqlite", "tenant-42.sqlite", true],
    ["\\*.db", "*.db", true],
    ["\\*.db", "a.db", false],
    ["a.db", "aXdb", false],
    ["(x)+.db", "(x)+.db", true],
  ];
  for (const [p, n, want] of cases) assert.equal(match(p, n), want, `${p} ~ ${n}`);
});

Deno.test("compileGlob: malformed patterns say why", () => {
  for (const p of ["[ab", "a\\", "[]"]) {
    const m = compileGlob(p);
    assert(typeof m === "string" && m.includes("malformed pattern"), p);
  }
});
