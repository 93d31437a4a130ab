/**
 * A replica's `age` block in the config (v0.3.13's keys): lists of age key strings, each read as
 * a key file (several keys on lines, `#` comments); the shape of every key checked at parse time
 * with one-line errors naming the file, the key and the line, and a secret key never echoed.
 */

import assert from "node:assert/strict";
import { generateIdentity, identityToRecipient } from "age-encryption";
import { parseConfig } from "./config.ts";
import { ConfigError } from "../errors.ts";

const FILE = "/etc/test-litestream.yml";
const id1 = await generateIdentity();
const id2 = await generateIdentity();
const rcp1 = await identityToRecipient(id1);
const rcp2 = await identityToRecipient(id2);

/** One db with one file replica whose `age` block is `age` (YAML lines, indented by us). */
function withAge(age: string): string {
  const lines = age.split("\n").filter((l) => l !== "").map((l) => `          ${l}\n`).join("");
  return `dbs:\n  - path: /data/db\n    replicas:\n      - path: /backup\n        age:\n${lines}`;
}

function parse(text: string) {
  const warnings: string[] = [];
  const config = parseConfig(text, FILE, (m) => warnings.push(m));
  return { replica: config.dbs[0].replicas[0], warnings };
}

function rejects(text: string, key: string, detail: RegExp): string {
  let message = "";
  assert.throws(
    () => parseConfig(text, FILE),
    (e: Error) => {
      assert.ok(e instanceof ConfigError, `${e.name}: ${e.message}`);
      assert.equal(e.key, key);
      assert.ok(e.message.startsWith(`${FILE}: ${key}: `), e.message);
      assert.match(e.message, detail);
      assert.ok(!e.message.includes("\n"), "one line");
      message = e.message;
      return true;
    },
  );
  return message;
}

Deno.test("age: identities and recipients are read, with where each key stands", () => {
  const { replica, warnings } = parse(
    withAge(`identities: [${id1}]\nrecipients: [${rcp1}, ${rcp2}]`),
  );
  assert.deepEqual(warnings, []);
  assert.deepEqual(replica.age, {
    file: FILE,
    key: "dbs[0].replicas[0].age",
    identities: [{ value: id1, key: "dbs[0].replicas[0].age.identities[0]" }],
    recipients: [
      { value: rcp1, key: "dbs[0].replicas[0].age.recipients[0]" },
      { value: rcp2, key: "dbs[0].replicas[0].age.recipients[1]" },
    ],
  });
});

Deno.test("age: an entry is a key file: several keys on lines, comments and blanks skipped", () => {
  const { replica } = parse(
    withAge(
      `identities:\n  - |\n    # created: today\n    ${id1}\n    \n    ${id2}\nrecipients: []`,
    ),
  );
  assert.deepEqual(replica.age?.identities, [
    { value: id1, key: "dbs[0].replicas[0].age.identities[0] line 2" },
    { value: id2, key: "dbs[0].replicas[0].age.identities[0] line 4" },
  ]);
  assert.deepEqual(replica.age?.recipients, []);
});

Deno.test("age: no block, or one naming no key, means no encryption (as v0.3.13)", () => {
  assert.equal(parse(withAge("identities: []")).replica.age, undefined);
  assert.equal(parse(withAge("{}")).replica.age, undefined);
  const plain = parseConfig("dbs:\n  - path: /d\n    replicas:\n      - path: /b\n", FILE);
  assert.equal(plain.dbs[0].replicas[0].age, undefined);
});

Deno.test("age: bad keys are one-line errors naming the key, never echoing a secret", () => {
  const at = "dbs[0].replicas[0].age";
  rejects(withAge("identities: AGE-SECRET-KEY-1X"), `${at}.identities`, /expected a list/);
  rejects(withAge("- x"), at, /expected a mapping/);
  const short = rejects(
    withAge(`identities: [${id1.slice(0, -1)}]`),
    `${at}.identities[0]`,
    /malformed age identity: expected AGE-SECRET-KEY-1 and 58 bech32 characters \(74 in all\), got 73/,
  );
  assert.ok(!short.includes(id1.slice(20, 40)), "the secret key is not echoed");
  rejects(withAge(`identities: [${rcp1}]`), `${at}.identities[0]`, /this is a recipient/);
  rejects(withAge(`recipients: [${id1}]`), `${at}.recipients[0]`, /this is an identity/);
  const lower = rejects(
    withAge(`identities: [${id1.toLowerCase()}]`),
    `${at}.identities[0]`,
    /malformed age identity/,
  );
  assert.ok(!lower.includes(id1.toLowerCase().slice(20)), "the secret key is not echoed");
  rejects(
    withAge(`recipients: ["${rcp1}x"]`),
    `${at}.recipients[0]`,
    new RegExp(`malformed age recipient: .*"${rcp1}x"`),
  );
  rejects(
    withAge(`recipients: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"]`),
    `${at}.recipients[0]`,
    /SSH recipients are not supported/,
  );
  rejects(
    withAge(`identities:\n  - |\n    ${id1}\n    ${id2.slice(0, 30)}`),
    `${at}.identities[0] line 2`,
    /malformed age identity/,
  );
  rejects(
    withAge(`identities: ["# only a comment"]`),
    `${at}.identities[0]`,
    /no secret keys found/,
  );
  rejects(withAge(`recipients: [""]`), `${at}.recipients[0]`, /no recipients found/);
});

Deno.test("age: unknown keys in the block are warned about", () => {
  const { warnings } = parse(withAge(`recipients: [${rcp1}]\npassphrase: x`));
  assert.deepEqual(warnings, [`${FILE}: unknown key dbs[0].replicas[0].age.passphrase (ignored)`]);
});
