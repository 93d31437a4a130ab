import assert from "node:assert/strict";
import nodeCrypto from "node:crypto";
import { oneShotCiphersFinalised } from "./one_shot_chacha20.ts";

const KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
/** node:crypto's ChaCha20 IV: the 32-bit block counter (little-endian), then the 96-bit nonce. */
const IV = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x4a, 0, 0, 0, 0]);

/** RFC 8439, section 2.4.2: the plaintext, and its ciphertext under KEY and IV. */
const PLAIN = new TextEncoder().encode(
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the " +
    "future, sunscreen would be it.",
);
const SEALED = Uint8Array.fromHex(
  "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f593dab" +
    "cd62b3571639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806" +
    "818ce91ab77937365af90bbf74a35be6b40b8eedf2785e42874d",
);

Deno.test("a chacha20 cipher finalises itself after its one update, with unchanged output", () => {
  const before = oneShotCiphersFinalised();
  const cipher = nodeCrypto.createCipheriv("chacha20", KEY, IV);
  assert.deepEqual(new Uint8Array(cipher.update(PLAIN)), SEALED);
  // Finalised: a second update is Node's "invalid state" error, never more bytes.
  assert.throws(() => cipher.update(PLAIN), { code: "ERR_CRYPTO_INVALID_STATE" });

  const opened = nodeCrypto.createDecipheriv("chacha20", KEY, IV).update(SEALED);
  assert.deepEqual(new Uint8Array(opened), PLAIN);
  assert.equal(oneShotCiphersFinalised(), before + 2);
});

Deno.test("other algorithms keep streaming through several updates", () => {
  const before = oneShotCiphersFinalised();
  const cipher = nodeCrypto.createCipheriv("aes-128-ctr", KEY.subarray(0, 16), IV);
  const a = cipher.update(new Uint8Array(20));
  const b = cipher.update(new Uint8Array(20));
  cipher.final();
  const whole = nodeCrypto.createCipheriv("aes-128-ctr", KEY.subarray(0, 16), IV)
    .update(new Uint8Array(40));
  assert.deepEqual(new Uint8Array([...a, ...b]), new Uint8Array(whole));
  assert.equal(oneShotCiphersFinalised(), before);
});
