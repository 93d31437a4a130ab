/**
 * Wire formats of the test GCS server (`gcs_server.ts`): object resources,
 * error bodies, listings with delimiters and page tokens, multipart/related
 * bodies, object hashes and the OAuth JWT-bearer token grant.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** One stored object. */
export interface GcsObject {
  name: string;
  data: Uint8Array;
  generation: string;
  contentType: string;
  created: Date;
  /** Base64 MD5 of the data. */
  md5: string;
  /** Base64 big-endian CRC32C of the data. */
  crc32c: string;
}

/** The JSON API's object resource. */
export function objectResource(bucket: string, o: GcsObject): Record<string, string> {
  const time = o.created.toISOString();
  return {
    kind: "storage#object",
    id: `${bucket}/${o.name}/${o.generation}`,
    selfLink: `/storage/v1/b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(o.name)}`,
    name: o.name,
    bucket,
    generation: o.generation,
    metageneration: "1",
    contentType: o.contentType,
    storageClass: "STANDARD",
    size: String(o.data.length),
    md5Hash: o.md5,
    crc32c: o.crc32c,
    etag: `CA${o.generation}`,
    timeCreated: time,
    updated: time,
    timeStorageClassUpdated: time,
  };
}

/** A JSON API error response. */
export function jsonError(code: number, reason: string, message: string): Response {
  return Response.json({
    error: { code, message, errors: [{ reason, message, domain: "global" }] },
  }, {
    status: code,
  });
}

/** The XML API's 404 for a missing object or bucket. */
export function xmlNotFound(noBucket: boolean): Response {
  const code = noBucket ? "NoSuchBucket" : "NoSuchKey";
  const body = `<?xml version='1.0' encoding='UTF-8'?><Error><Code>${code}</Code>` +
    `<Message>The specified ${noBucket ? "bucket" : "key"} does not exist.</Message></Error>`;
  return new Response(body, { status: 404, headers: { "Content-Type": "application/xml" } });
}

/** Listing parameters. */
export interface ListQuery {
  prefix: string;
  delimiter: string;
  /** The last name or prefix of the previous page, base64url; `""` for the first page. */
  pageToken: string;
  maxResults: number;
}

/**
 * One page of a listing: objects under `prefix`, names containing the
 * delimiter past the prefix rolled up into `prefixes`, in name order, at most
 * `maxResults` entries (objects and prefixes together, as GCS counts them).
 */
export function listObjects(
  bucket: string,
  objects: Map<string, GcsObject>,
  q: ListQuery,
): Record<string, unknown> {
  const after = q.pageToken ? new TextDecoder().decode(decodeBase64Url(q.pageToken)) : "";
  const entries: { key: string; obj?: GcsObject }[] = [];
  const seen = new Set<string>();
  for (const name of [...objects.keys()].sort()) {
    if (!name.startsWith(q.prefix)) continue;
    const cut = q.delimiter ? name.indexOf(q.delimiter, q.prefix.length) : -1;
    if (cut >= 0) {
      const p = name.slice(0, cut + q.delimiter.length);
      if (!seen.has(p)) entries.push({ key: p }), seen.add(p);
    } else entries.push({ key: name, obj: objects.get(name) });
  }
  const page = entries.filter((e) => e.key > after).slice(0, Math.max(1, q.maxResults));
  const more = entries.filter((e) => e.key > after).length > page.length;
  const items = page.filter((e) => e.obj).map((e) => objectResource(bucket, e.obj!));
  const prefixes = page.filter((e) => !e.obj).map((e) => e.key);
  return {
    kind: "storage#objects",
    ...(items.length ? { items } : {}),
    ...(prefixes.length ? { prefixes } : {}),
    ...(more ? { nextPageToken: encodeBase64Url(page.at(-1)!.key) } : {}),
  };
}

function encodeBase64Url(s: string): string {
  return new TextEncoder().encode(s).toBase64({ alphabet: "base64url", omitPadding: true });
}

function decodeBase64Url(s: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.fromBase64(s, { alphabet: "base64url" });
}

/** The two parts of a multipart/related upload body: JSON metadata and the data. */
export function parseMultipart(
  contentType: string,
  body: Uint8Array,
): { metadata: Uint8Array; data: Uint8Array; type: string } | undefined {
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (!/^multipart\/related/i.test(contentType) || !boundary) return undefined;
  const delim = new TextEncoder().encode(`--${boundary}`);
  const starts: number[] = [];
  for (let i = indexOf(body, delim, 0); i >= 0; i = indexOf(body, delim, i + delim.length)) {
    starts.push(i);
  }
  const parts: { head: string; data: Uint8Array }[] = [];
  for (let k = 0; k + 1 < starts.length; k++) {
    const from = starts[k] + delim.length;
    const part = body.subarray(from, starts[k + 1] - 2); // without the CRLF before the delimiter
    const headEnd = indexOf(part, new TextEncoder().encode("\r\n\r\n"), 0);
    if (headEnd < 0) return undefined;
    parts.push({
      head: new TextDecoder().decode(part.subarray(0, headEnd)),
      data: part.subarray(headEnd + 4),
    });
  }
  if (parts.length !== 2) return undefined;
  const type = /content-type:\s*([^\r\n]+)/i.exec(parts[1].head)?.[1] ?? "";
  return { metadata: parts[0].data, data: parts[1].data.slice(), type };
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** Base64 of the big-endian CRC32C (Castagnoli), as in `crc32c` and `x-goog-hash`. */
export function crc32c(data: Uint8Array): string {
  return new ObjectHashes().update(data).crc32c();
}

/** MD5 and CRC32C of an object, fed as its bytes arrive (a resumable upload's chunks). */
export class ObjectHashes {
  #crc = 0xffffffff;
  #md5 = createHash("md5");

  /** Adds the next bytes. */
  update(data: Uint8Array): this {
    let c = this.#crc;
    for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
    this.#crc = c;
    this.#md5.update(data);
    return this;
  }

  /** The CRC32C so far, base64 big-endian. */
  crc32c(): string {
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, (this.#crc ^ 0xffffffff) >>> 0);
    return out.toBase64();
  }

  /** The MD5, base64 (once: it finishes the digest). */
  md5(): string {
    return this.#md5.digest("base64");
  }
}

/**
 * `POST /token` of an OAuth server: a JWT-bearer grant whose RS256 signature
 * verifies with `publicKeyPem` gets `token`; anything else gets Google's
 * `invalid_grant` answer.
 */
export async function verifyJwtBearer(
  req: Request,
  publicKeyPem: string | undefined,
  token: string,
): Promise<Response> {
  const form = new URLSearchParams(await req.text());
  const deny = (why: string) =>
    Response.json({ error: "invalid_grant", error_description: why }, { status: 400 });
  if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") {
    return deny("unsupported grant");
  }
  const jwt = (form.get("assertion") ?? "").split(".");
  if (jwt.length !== 3 || !publicKeyPem) return deny("Invalid JWT.");
  const der = Uint8Array.from(
    atob(publicKeyPem.replace(/-----[^-]+-----|\s/g, "")),
    (c) => c.charCodeAt(0),
  );
  const key = await crypto.subtle.importKey(
    "spki",
    der,
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const ok = await crypto.subtle.verify(
    "RSASSA-PKCS1-v1_5",
    key,
    decodeBase64Url(jwt[2]),
    new TextEncoder().encode(`${jwt[0]}.${jwt[1]}`),
  );
  if (!ok) return deny("Invalid JWT Signature.");
  const claims = JSON.parse(new TextDecoder().decode(decodeBase64Url(jwt[1])));
  if (!(claims.exp > Date.now() / 1000)) {
    return deny("Invalid JWT: Token must be a short-lived token");
  }
  return Response.json({ access_token: token, expires_in: 3600, token_type: "Bearer" });
}
