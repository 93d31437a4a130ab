/**
 * `abs` replica settings as v0.3.13 reads them: `abs://[account@]container/path` URLs, config
 * keys winning over the URL, the account key from `LITESTREAM_AZURE_ACCOUNT_KEY`, Go's
 * `path.Join` for blob names, and config errors naming the file and the key to fix.
 */

import assert from "node:assert/strict";
import { ConfigError } from "../../lib/errors.ts";
import { parseConfig } from "../../lib/cli/config.ts";
import { AbsConfigError, absOptionsFromConfig, goPathJoin, parseAbsUrl } from "./url.ts";

const KEY = btoa("0123456789abcdef0123456789abcdef");
const noEnv = () => undefined;

Deno.test("abs:// URLs: account, container and a cleaned path", () => {
  assert.deepEqual(parseAbsUrl("abs://acct@box/a//b/../c/"), {
    accountName: "acct",
    container: "box",
    path: "a/c",
  });
  assert.deepEqual(parseAbsUrl("abs://box"), { accountName: "", container: "box", path: "." });
  assert.deepEqual(parseAbsUrl("abs://box/db%20one"), {
    accountName: "",
    container: "box",
    path: "db one",
  });
});

Deno.test("config keys win over the URL; the key comes from the env when unset", () => {
  const env = (n: string) => n === "LITESTREAM_AZURE_ACCOUNT_KEY" ? KEY : undefined;
  assert.deepEqual(absOptionsFromConfig({ url: "abs://acct@box/db", accountName: "other" }, env), {
    accountName: "other",
    accountKey: KEY,
    container: "box",
    path: "db",
    endpoint: "https://other.blob.core.windows.net",
  });
  assert.deepEqual(
    absOptionsFromConfig({
      bucket: "box",
      path: "/lead/db",
      accountName: "devstoreaccount1",
      accountKey: KEY,
      endpoint: "http://127.0.0.1:10000/devstoreaccount1/",
    }, noEnv),
    {
      accountName: "devstoreaccount1",
      accountKey: KEY,
      container: "box",
      path: "/lead/db",
      endpoint: "http://127.0.0.1:10000/devstoreaccount1",
    },
  );
});

Deno.test("bad abs settings name the key to fix", () => {
  const cases: [Parameters<typeof absOptionsFromConfig>[0], string, RegExp][] = [
    [{ url: "abs://a@b/p", path: "x" }, "path", /cannot specify url & path/],
    [{ url: "abs://a@b/p", bucket: "x" }, "bucket", /cannot specify url & bucket/],
    [{ accountName: "a", accountKey: KEY }, "bucket", /bucket \(the container\) required/],
    [{ bucket: "b", accountKey: KEY }, "account-name", /account name required/],
    [{ bucket: "b", accountName: "a" }, "account-key", /LITESTREAM_AZURE_ACCOUNT_KEY/],
    [{ bucket: "b", accountName: "a", accountKey: "not base64!" }, "account-key", /base64/],
    [
      { bucket: "b", accountName: "a", accountKey: KEY, endpoint: "localhost:1" },
      "endpoint",
      /URL/,
    ],
  ];
  for (const [cfg, key, detail] of cases) {
    assert.throws(
      () => absOptionsFromConfig(cfg, noEnv),
      (e: Error) => e instanceof AbsConfigError && e.key === key && detail.test(e.message),
      `${JSON.stringify(cfg)} → ${key}`,
    );
  }
});

Deno.test("blob names are joined as Go's path.Join", () => {
  assert.equal(goPathJoin("", "generations"), "generations");
  assert.equal(goPathJoin(".", "generations"), "generations");
  assert.equal(goPathJoin("/lead/", "generations", "x"), "/lead/generations/x");
  assert.equal(goPathJoin("a/../..", "generations"), "../generations");
  assert.equal(goPathJoin(""), "");
});

Deno.test("a config with an abs replica parses; errors name the file and key", () => {
  const yaml = (replica: string) => `dbs:\n  - path: /data/app.db\n    replicas:\n${replica}`;
  const { dbs } = parseConfig(
    yaml(
      `      - url: abs://acct@box/app\n        account-key: ${KEY}\n        endpoint: http://127.0.0.1:1/acct\n`,
    ),
    "/etc/l.yml",
  );
  const r = dbs[0].replicas[0];
  assert.deepEqual([r.type, r.name, r.accountKey, r.endpoint], [
    "abs",
    "abs",
    KEY,
    "http://127.0.0.1:1/acct",
  ]);
  const keyed = yaml(`      - type: abs\n        bucket: box\n        account-key: ${KEY}\n`);
  assert.throws(
    () => parseConfig(keyed, "/etc/l.yml"),
    (e: Error) =>
      e instanceof ConfigError && e.key === "dbs[0].replicas[0].account-name" &&
      e.message.startsWith("/etc/l.yml: dbs[0].replicas[0].account-name: "),
  );
});
