/**
 * Lets ssh2's chacha20-poly1305 run under Deno without leaking. Without its native addon (never
 * built under Deno), ssh2 makes three one-shot `node:crypto` `chacha20` ciphers per SSH packet
 * (the packet length, the Poly1305 key, the payload) and never calls `final()`. Deno (2.9) keeps a
 * cipher's native state in its resource table until `final()`: about 1 KB per packet, 37–80 MB
 * per GB moved, for the life of the process.
 *
 * Imported for its effect before ssh2 (which takes `createCipheriv` and `createDecipheriv` from
 * `node:crypto` when it loads): from then on a `chacha20` cipher or decipher finalises itself
 * after its first `update()`. `chacha20` is a stream cipher, so `final()` adds no output. No other
 * algorithm is touched, and nothing else in this process uses a bare `chacha20`; code that did
 * and called `update()` twice would get Node's "invalid state" error, never wrong bytes.
 *
 * Worth it: Deno's native ChaCha20 encrypts 32 KB packets at about 785 MB/s, its AES-GCM (the
 * cipher ssh2 prefers) at about 113 MB/s.
 *
 * @module
 */

import nodeCrypto from "node:crypto";

/** The `node:crypto` name of the cipher ssh2 uses one-shot. */
const ONE_SHOT = "chacha20";

/** How many one-shot ciphers finalised themselves (tests check that ssh2 got these wrappers). */
let finalised = 0;

/** The number of `chacha20` ciphers and deciphers finalised after their one `update()`. */
export function oneShotCiphersFinalised(): number {
  return finalised;
}

/** The parts of a `node:crypto` cipher or decipher this module uses. */
interface OneShot {
  update(...args: unknown[]): unknown;
  final(): unknown;
}

/** Wraps a cipher constructor so that the `chacha20` ciphers it makes finalise after one update. */
function oneShotChaCha20<F>(create: F): F {
  return function (algorithm: string, ...rest: unknown[]) {
    const cipher = (create as (a: string, ...r: unknown[]) => OneShot)(algorithm, ...rest);
    if (algorithm !== ONE_SHOT) return cipher;
    const update = cipher.update;
    cipher.update = function (this: OneShot, ...args: unknown[]) {
      const out = update.apply(this, args);
      this.final();
      finalised++;
      return out;
    };
    return cipher;
  } as F;
}

nodeCrypto.createCipheriv = oneShotChaCha20(nodeCrypto.createCipheriv);
nodeCrypto.createDecipheriv = oneShotChaCha20(nodeCrypto.createDecipheriv);
