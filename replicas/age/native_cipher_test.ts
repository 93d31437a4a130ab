/**
 * The native ChaCha20-Poly1305 that `deno.json` links in as `@noble/ciphers/chacha.js`: RFC 8439's
 * published example, refusal of any altered byte, one encryption per key and nonce, round trips,
 * and `age-encryption` running through it.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { Decrypter, Encrypter, generateIdentity, identityToRecipient } from "age-encryption";
import { chacha20poly1305 } from "./native_cipher/chacha.js";

/** Bytes from hex written in groups, as RFC 8439 prints them. */
const hex = (s: string) => Uint8Array.fromHex(s.replaceAll(" ", ""));

// RFC 8439 §2.8.2: the AEAD_CHACHA20_POLY1305 example.
const KEY = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
const NONCE = hex("07000000 40414243 44454647");
const AAD = hex("50515253 c0c1c2c3 c4c5c6c7");
const PLAINTEXT = new TextEncoder().encode(
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, " +
    "sunscreen would be it.",
);
const SEALED = hex(
  "d31a8d34648e60db7b86afbc53ef7ec2 a4aded51296e08fea9e2b5a736ee62d6" +
    "3dbea45e8ca9671282fafb69da92728b 1a71de0a9e060b2905d6a5b67ecd3b36" +
    "92ddbd7f2d778b8c9803aee328091b58 fab324e4fad675945585808b4831d7bc" +
    "3ff4def08e4b7a9de576d26586cec64b 6116" +
    "1ae10b594f09e26a7e902ecbd0600691", // the tag
);

Deno.test("native chacha20poly1305: RFC 8439's example seals and opens to the published bytes", () => {
  const sealed = chacha20poly1305(KEY, NONCE, AAD).encrypt(PLAINTEXT);
  assert.deepEqual(sealed, SEALED);
  assert.equal(Object.getPrototypeOf(sealed), Uint8Array.prototype, "a plain Uint8Array");
  assert.deepEqual(chacha20poly1305(KEY, NONCE, AAD).decrypt(SEALED), PLAINTEXT);
});

Deno.test("native chacha20poly1305: any changed byte of ciphertext, tag, nonce or AAD is refused", () => {
  for (let i = 0; i < SEALED.length; i++) {
    const bad = SEALED.slice();
    bad[i] ^= 0x01;
    assert.throws(() => chacha20poly1305(KEY, NONCE, AAD).decrypt(bad), `byte ${i}`);
  }
  const nonce = NONCE.slice();
  nonce[11] ^= 1; // age's last-chunk flag lives in this byte
  assert.throws(() => chacha20poly1305(KEY, nonce, AAD).decrypt(SEALED));
  assert.throws(() => chacha20poly1305(KEY, NONCE).decrypt(SEALED), "AAD left out");
  assert.throws(() => chacha20poly1305(KEY, NONCE, AAD).decrypt(SEALED.subarray(0, 15)), /tag/);
});

Deno.test("native chacha20poly1305: a key and nonce encrypt once; sizes are checked", () => {
  const cipher = chacha20poly1305(KEY, NONCE);
  cipher.encrypt(PLAINTEXT);
  assert.throws(() => cipher.encrypt(PLAINTEXT), /twice/);
  assert.throws(() => chacha20poly1305(KEY.subarray(1), NONCE).encrypt(PLAINTEXT));
  assert.throws(() => chacha20poly1305(KEY, NONCE.subarray(1)).encrypt(PLAINTEXT));
});

Deno.test("native chacha20poly1305: round trip of any message, empty and chunk-sized included", () => {
  const message = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.constantFrom(new Uint8Array(0), new Uint8Array(64 * 1024).fill(7)),
  );
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), message, (key, plaintext) => {
      const sealed = chacha20poly1305(key, NONCE).encrypt(plaintext);
      assert.equal(sealed.length, plaintext.length + 16);
      assert.deepEqual(chacha20poly1305(key, NONCE).decrypt(sealed), plaintext);
    }),
  );
});

Deno.test("native chacha20poly1305: age-encryption encrypts and decrypts through it", async () => {
  // deno.json links the folder under the name age-encryption imports. Imported by that name (not
  // by path), the module is the instance the library uses, so its count shows the library's calls.
  // deno-lint-ignore no-import-prefix
  const linked = await import("npm:@noble/ciphers@^2.1.1/chacha.js");
  const identity = await generateIdentity();
  const encrypter = new Encrypter();
  encrypter.addRecipient(await identityToRecipient(identity));
  const decrypter = new Decrypter();
  decrypter.addIdentity(identity);
  const plaintext = new Uint8Array(200_000).map((_, i) => i % 251);

  const before = linked.ciphersMade();
  const sealed = await encrypter.encrypt(plaintext);
  // The file key's wrap, then 4 STREAM chunks (3 full, 1 last).
  assert.equal(linked.ciphersMade() - before, 1 + 4);
  assert.deepEqual(await decrypter.decrypt(sealed), plaintext);
  assert.equal(linked.ciphersMade() - before, 2 * (1 + 4));
});
