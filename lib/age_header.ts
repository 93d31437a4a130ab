/**
 * age's file header, as far as the layers below the age decorator need it: an age-encrypted
 * replica object (v0.3.13 encrypts the LZ4 frame, we also our checksum records) is told apart
 * from an LZ4 frame or a JSON record by it, and a reader without identities is told what to do.
 *
 * @module
 */

/** The first line of every age file. */
export const AGE_HEADER: Uint8Array = new TextEncoder().encode("age-encryption.org/v1\n");

/** Why an age-encrypted object cannot be read where no identities were configured. */
export const AGE_WITHOUT_IDENTITIES =
  "age-encrypted, and no age identities were given to decrypt it (name the database and " +
  "-config, whose replica entry has the age block)";

/** Whether `bytes` start with age's header line. */
export function startsAsAge(bytes: Uint8Array): boolean {
  return bytes.length >= AGE_HEADER.length && AGE_HEADER.every((b, i) => bytes[i] === b);
}
