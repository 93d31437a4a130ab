/** SFTP settings from URL and keys, as v0.3.13 combines them. */

import assert from "node:assert/strict";
import { cleanPath, SftpConfigError, sftpLocation, sftpOptions, splitHostPort } from "./config.ts";

/** A well-formed host key line (any ed25519 key). */
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJM4FClw9rpVozEb/UBbARkwKMZry5OpI5U4iDwoDH8n";

Deno.test("sftp URL: user, password, host, port and path, percent-decoded", () => {
  const o = sftpOptions({ url: "sftp://bob:p%40ss%3Aw@example.com:2222/backups/app%20db" });
  assert.deepEqual(o, {
    host: "example.com",
    port: 2222,
    user: "bob",
    password: "p@ss:w",
    keyPath: undefined,
    hostKey: undefined,
    path: "/backups/app db",
  });
  assert.equal(sftpLocation(o), "sftp://bob@example.com:2222/backups/app db");
});

Deno.test("sftp URL without a path: the login directory; port 22 by default", () => {
  const o = sftpOptions({ url: "sftp://bob@example.com" });
  assert.deepEqual([o.host, o.port, o.path, o.password], ["example.com", 22, "", undefined]);
  assert.equal(sftpLocation(o), "sftp://bob@example.com:22/~");
});

Deno.test("sftp keys win over the URL's user and password; key-path and host-key kept", () => {
  const o = sftpOptions({
    url: "sftp://bob:x@h/p",
    user: "alice",
    password: "y",
    keyPath: "/k",
    hostKey: KEY,
  });
  assert.deepEqual([o.user, o.password, o.keyPath, o.hostKey], [
    "alice",
    "y",
    "/k",
    KEY,
  ]);
});

Deno.test("sftp keys only: relative path stays relative (login directory), cleaned", () => {
  const o = sftpOptions({ host: "10.0.0.1:2022", user: "u", path: "backups//db/" });
  assert.deepEqual([o.host, o.port, o.path], ["10.0.0.1", 2022, "backups/db"]);
  assert.equal(sftpLocation(o), "sftp://u@10.0.0.1:2022/~/backups/db");
});

Deno.test("sftp host, user and host-key: missing or malformed ones are errors naming the key", () => {
  for (
    const [cfg, key, msg] of [
      [{ user: "u" }, "host", "host required for sftp replica"],
      [{ host: "h" }, "user", "user required for sftp replica"],
      [{ url: "sftp://h/p" }, "user", "user required for sftp replica"],
      [{ url: "sftp://%zz@h/p" }, "url", "invalid escape"],
      [{ host: "h:99999", user: "u" }, "host", "invalid port"],
      [{ host: "127.0.0.1:notaport", user: "u" }, "host", "invalid port"],
      [{ host: "h", user: "u", hostKey: "SHA256:abc" }, "host-key", "invalid host-key"],
    ] as const
  ) {
    assert.throws(
      () => sftpOptions(cfg),
      (e) => e instanceof SftpConfigError && e.key === key && e.message.includes(msg),
      JSON.stringify(cfg),
    );
  }
});

Deno.test("splitHostPort as Go's net.SplitHostPort, IPv6 in brackets", () => {
  assert.deepEqual(splitHostPort("h"), { host: "h", port: 22 });
  assert.deepEqual(splitHostPort("h:2200"), { host: "h", port: 2200 });
  assert.deepEqual(splitHostPort("[::1]:2200"), { host: "::1", port: 2200 });
  assert.deepEqual(splitHostPort("::1"), { host: "::1", port: 22 });
  const o = sftpOptions({ url: "sftp://u@[::1]:2200/x" });
  assert.equal(sftpLocation(o), "sftp://u@[::1]:2200/x");
});

Deno.test("cleanPath as Go's path.Join on the root", () => {
  assert.deepEqual(["", ".", "/", "/a/b/", "a/./b//c", "/a/../b"].map(cleanPath), [
    "",
    "",
    "/",
    "/a/b",
    "a/b/c",
    "/b",
  ]);
});
