/**
 * `chacha20poly1305` with the call shape of `@noble/ciphers/chacha.js`, computed by the runtime's
 * native `node:crypto` AEAD (RFC 8439). `deno.json` links this folder in place of the npm
 * `@noble/ciphers`, whose only user here is `age-encryption`: the library keeps its own age
 * format, STREAM chunking, nonces and last-chunk rule, and only the ChaCha20-Poly1305 of each
 * 64 KiB chunk moves to native code.
 *
 * Why: `@noble/ciphers` is JavaScript and runs at 80–160 MB/s here, which made age the slowest
 * part of an encrypted replica's restore and write load; the native AEAD runs at about 700 MB/s.
 * The package exports only `./chacha.js`, and that only `chacha20poly1305`, so any other import
 * of `@noble/ciphers` fails at load instead of running something this module does not provide.
 *
 * @module
 */

import { createCipheriv, createDecipheriv } from "node:crypto";

/** Bytes of the Poly1305 tag appended to every ciphertext. */
const TAG_LENGTH = 16;

/** How many ciphers this module has made (tests check that age-encryption resolves to it). */
let made = 0;

/**
 * The number of ciphers made so far.
 *
 * @returns {number}
 */
export function ciphersMade() {
  return made;
}

/**
 * A one-use ChaCha20-Poly1305 cipher for `key` (32 bytes) and `nonce` (12 bytes), with optional
 * additional data: `encrypt` returns ciphertext ‖ tag, `decrypt` checks the tag and throws
 * before returning any plaintext when it does not match. Like noble's, an instance encrypts
 * only once, so a key and nonce are never used for two messages by mistake.
 *
 * @param {Uint8Array} key
 * @param {Uint8Array} nonce
 * @param {Uint8Array} [aad]
 * @returns {{
 *   encrypt(plaintext: Uint8Array, output?: undefined): Uint8Array;
 *   decrypt(ciphertext: Uint8Array, output?: undefined): Uint8Array;
 * }} (noble's optional output buffer is refused)
 */
export function chacha20poly1305(key, nonce, aad) {
  made++;
  let encrypted = false;
  const options = { authTagLength: TAG_LENGTH };
  return {
    encrypt(plaintext, output) {
      if (output !== undefined) {
        throw new Error("chacha20poly1305: output buffers are not supported");
      }
      if (encrypted) {
        throw new Error(
          "chacha20poly1305: cannot encrypt() twice with the same key and nonce",
        );
      }
      encrypted = true;
      const cipher = createCipheriv("chacha20-poly1305", key, nonce, options);
      if (aad) cipher.setAAD(aad, { plaintextLength: plaintext.length });
      const body = cipher.update(plaintext);
      const rest = cipher.final();
      return join(body, rest, cipher.getAuthTag());
    },
    decrypt(ciphertext, output) {
      if (output !== undefined) {
        throw new Error("chacha20poly1305: output buffers are not supported");
      }
      if (ciphertext.length < TAG_LENGTH) {
        throw new Error("chacha20poly1305: ciphertext shorter than its tag");
      }
      const end = ciphertext.length - TAG_LENGTH;
      const decipher = createDecipheriv(
        "chacha20-poly1305",
        key,
        nonce,
        options,
      );
      decipher.setAuthTag(ciphertext.subarray(end));
      if (aad) decipher.setAAD(aad, { plaintextLength: end });
      const body = decipher.update(ciphertext.subarray(0, end));
      // final() throws when the tag does not match; nothing decrypted is returned before it.
      const rest = decipher.final();
      // A stream cipher leaves nothing for final(): the plaintext is update()'s own buffer,
      // returned without a copy (and whole, so that a consumer may free it once used).
      return rest.length === 0
        ? new Uint8Array(body.buffer, body.byteOffset, body.length)
        : join(body, rest);
    },
  };
}

chacha20poly1305.blockSize = 64;
chacha20poly1305.nonceLength = 12;
chacha20poly1305.tagLength = TAG_LENGTH;

/**
 * The parts as one plain `Uint8Array` (not a Node `Buffer`, which callers may not expect).
 *
 * @param {...Uint8Array} parts
 * @returns {Uint8Array}
 */
function join(...parts) {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
