/**
 * Host key parsing and matching on fixed vectors: keys, fingerprints and a
 * hashed known_hosts file produced by OpenSSH's `ssh-keygen` (9.2).
 */

import assert from "node:assert/strict";
import {
  fingerprint,
  judgeHostKey,
  keyLine,
  knownHostsName,
  matchesHost,
  parseHostKeySetting,
  parseKnownHosts,
  parsePublicKey,
} from "./host_key.ts";

const KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILjFrjSJXY4KCngHz4xGMp08TKMmWF2vtVrzJyi5q66+";
const KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJM4FClw9rpVozEb/UBbARkwKMZry5OpI5U4iDwoDH8n";
/** `ssh-keygen -l` of KEY_B. */
const FP_B = "SHA256:IguXjeaLzNAu2kKPQRvBhVp0zupryDVd/bWU1tiIh9A";
/** `ssh-keygen -H` of "[127.0.0.1]:2222 KEY_A" and "example.com KEY_B". */
const HASHED = `|1|JTp6KpeN6Anpo9xI//VHoXXRaNQ=|G+sBFglERXxbjHJxf7lVrlniBAU= ${KEY_A}
|1|kRfNQzDRU+Z8VoCpzq7JVcD7tds=|9qVihTalOfYMUMPaUJBakMHso/4= ${KEY_B}
`;

const a = parsePublicKey(KEY_A)!;
const b = parsePublicKey(`${KEY_B} root@vm`)!;

Deno.test("public key lines: type checked against the blob, fingerprint as ssh-keygen", () => {
  assert.equal(b.type, "ssh-ed25519");
  assert.equal(fingerprint(b.blob), FP_B);
  assert.equal(keyLine(b), KEY_B);
  assert.equal(parsePublicKey("ssh-rsa " + KEY_A.split(" ")[1]), undefined); // type mismatch
  assert.equal(parsePublicKey("ssh-ed25519 not*base64"), undefined);
  assert.throws(() => parseHostKeySetting("SHA256:abc"), /invalid host-key/);
});

Deno.test("host-key: the server's .pub line, or a line of ssh-keyscan output", () => {
  assert.deepEqual(parseHostKeySetting(`${KEY_B} root@vm`), b);
  assert.deepEqual(parseHostKeySetting(`[127.0.0.1]:2222 ${KEY_B}`), b);
  assert.deepEqual(parseHostKeySetting(`backup.example.com ${KEY_B}\n`), b);
  assert.throws(() => parseHostKeySetting(`garbage ${KEY_B.split(" ")[1]}`), /invalid host-key/);
});

Deno.test("known_hosts names: host on port 22, [host]:port otherwise", () => {
  assert.equal(knownHostsName("Example.COM", 22), "example.com");
  assert.equal(knownHostsName("127.0.0.1", 2222), "[127.0.0.1]:2222");
});

Deno.test("hashed known_hosts entries match their host only", () => {
  const entries = parseKnownHosts(HASHED, "kh");
  assert.equal(entries.length, 2);
  assert.ok(matchesHost(entries[0].patterns, "[127.0.0.1]:2222"));
  assert.ok(!matchesHost(entries[0].patterns, "127.0.0.1"));
  assert.ok(matchesHost(entries[1].patterns, "example.com"));
  assert.deepEqual(judgeHostKey(a.blob, "[127.0.0.1]:2222", undefined, entries), {
    kind: "trusted",
    source: "kh:1",
  });
});

Deno.test("patterns: lists, wildcards, negation; @revoked and @cert-authority markers", () => {
  assert.ok(matchesHost("foo,*.example.com", "db.example.com"));
  assert.ok(matchesHost("db?.example.com", "db1.example.com"));
  assert.ok(!matchesHost("*.example.com,!db.example.com", "db.example.com"));
  const text = `# comment\n\n@cert-authority *.example.com ${KEY_A}\n@revoked * ${KEY_B}\n` +
    `db.example.com ${KEY_A}\n`;
  const entries = parseKnownHosts(text, "kh");
  assert.deepEqual(entries.map((e) => [e.patterns, e.revoked, e.source]), [
    ["*", true, "kh:4"],
    ["db.example.com", false, "kh:5"],
  ]);
  assert.deepEqual(judgeHostKey(b.blob, "db.example.com", undefined, entries), {
    kind: "revoked",
    source: "kh:4",
  });
});

Deno.test("verdicts: pinned key wins; mismatch lists expectations; no entry is unknown", () => {
  const entries = parseKnownHosts(`example.com ${KEY_A}\n`, "kh");
  assert.deepEqual(judgeHostKey(b.blob, "example.com", undefined, entries), {
    kind: "mismatch",
    expected: [entries[0].key],
    sources: ["kh:1"],
  });
  assert.deepEqual(judgeHostKey(b.blob, "other.com", undefined, entries), { kind: "unknown" });
  assert.equal(judgeHostKey(b.blob, "example.com", b, entries).kind, "trusted");
  assert.equal(judgeHostKey(a.blob, "other.com", b, []).kind, "mismatch");
});
