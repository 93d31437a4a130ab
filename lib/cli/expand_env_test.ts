/**
 * Environment expansion (lib/cli/expand_env.ts) with the rules of Go's `os.ExpandEnv`, which
 * v0.3.13 applies to the whole config text.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { expandEnv } from "./expand_env.ts";

Deno.test("expandEnv follows Go's os.ExpandEnv", () => {
  const env: Record<string, string> = {
    HOME: "/home/u",
    A: "x",
    A_1: "y",
    "1": "one",
    "*": "star",
  };
  const ex = (s: string) => expandEnv(s, (n) => env[n]);
  const cases: [string, string][] = [
    ["$HOME/db", "/home/u/db"],
    ["${HOME}/db", "/home/u/db"],
    ["${A}B", "xB"],
    ["$AB", ""], // the name is the longest run of [A-Za-z0-9_]
    ["$A_1-", "y-"],
    ["$UNSET|", "|"],
    ["${UNSET}|", "|"],
    ["a$$b", "ab"], // $$ is the special variable "$", normally unset
    ["$1x", "onex"],
    ["$*", "star"],
    ["${}x", "x"], // bad syntax: ${} is dropped
    ["${A", "A"], // unterminated: "${" is dropped
    ["${A:-def}", ""], // no default syntax: looks up "A:-def"
    ["cost: 5$", "cost: 5$"], // a trailing $ stays
    ["a $ b", "a $ b"], // $ not followed by a name stays
    ["$-", ""],
    ["p@ss$/w", "p@ss$/w"],
    ["no dollars", "no dollars"],
    ["", ""],
    ["#$A comment", "#x comment"], // comments are expanded too
  ];
  for (const [input, want] of cases) assert.equal(ex(input), want, input);
});

Deno.test("expandEnv leaves text without a $ untouched and never consults the environment", () => {
  fc.assert(
    fc.property(fc.string().filter((s) => !s.includes("$")), (s) =>
      expandEnv(s, () => {
        throw new Error("no lookup expected");
      }) === s),
  );
});
