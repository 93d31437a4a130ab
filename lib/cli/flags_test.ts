import assert from "node:assert/strict";
import { parseFlags } from "./flags.ts";
import { FlagError } from "../errors.ts";

const spec = { config: "string", o: "string", "if-db-not-exists": "boolean" } as const;

Deno.test("flags: Go style, GNU style and = forms are equivalent", () => {
  for (
    const args of [["-config", "x.yml"], ["--config", "x.yml"], ["-config=x.yml"], [
      "--config=x.yml",
    ]]
  ) {
    assert.equal(parseFlags(args, spec).values.config, "x.yml");
  }
});

Deno.test("flags: may follow positional arguments", () => {
  const p = parseFlags(["/data/db", "-o", "out.db", "-if-db-not-exists"], spec);
  assert.deepEqual(p.positionals, ["/data/db"]);
  assert.equal(p.values.o, "out.db");
  assert.equal(p.values["if-db-not-exists"], true);
});

Deno.test("flags: a value may be '-' (standard output)", () => {
  assert.equal(parseFlags(["-o", "-", "file:///x"], spec).values.o, "-");
});

Deno.test("flags: booleans accept =false", () => {
  assert.equal(parseFlags(["-if-db-not-exists=false"], spec).values["if-db-not-exists"], false);
});

Deno.test("flags: unknown flags and missing values name the flag", () => {
  assert.throws(
    () => parseFlags(["-bogus"], spec),
    (e: Error) => e instanceof FlagError && /-bogus/.test(e.message),
  );
  assert.throws(() => parseFlags(["-config"], spec), /flag needs an argument: -config/);
});
