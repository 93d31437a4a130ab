/**
 * SHA-256 digests as lowercase hex, to compare files and database contents byte for byte.
 *
 * @module
 */

/** SHA-256 of bytes, hex. */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** SHA-256 of a file's bytes, hex. */
export async function fileHash(path: string): Promise<string> {
  return sha256Hex(await Deno.readFile(path));
}
