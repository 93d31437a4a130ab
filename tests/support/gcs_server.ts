/**
 * A small Google Cloud Storage server for tests, in-process on 127.0.0.1 (no
 * GCS emulator installs here). It speaks the parts of the JSON API that
 * Google's clients use for objects, and the XML API's object GET that
 * Google's Go library (so Litestream v0.3.13) reads through:
 *
 * - uploads: `POST /upload/storage/v1/b/B/o?uploadType=media|multipart|resumable`,
 *   resumable sessions continued with `PUT` and `Content-Range`;
 * - `GET /storage/v1/b/B/o/NAME` (metadata, or the bytes with `alt=media`, with
 *   `Range`), the same under `/download/storage/v1/…`, and `GET|HEAD /B/NAME`;
 * - listing with `prefix`, `delimiter`, `pageToken`, `maxResults`; delete;
 * - `ifGenerationMatch` on uploads and reads; bucket GET and insert.
 *
 * Objects live in memory. With `token` set, every request must carry
 * `Authorization: Bearer <token>`; `POST /token` issues it for a JWT-bearer
 * grant signed by `serviceAccountKey` (an OAuth token endpoint, for testing
 * service-account credentials), and the metadata server's token path answers
 * with it too (for `GCE_METADATA_HOST`). Wire formats are in `gcs_wire.ts`.
 *
 * @module
 */

import {
  type GcsObject,
  jsonError,
  listObjects,
  ObjectHashes,
  objectResource,
  parseMultipart,
  verifyJwtBearer,
  xmlNotFound,
} from "./gcs_wire.ts";

/** Options of a test server. */
export interface GcsServerOptions {
  /** Buckets created at start; default `["litestream-test"]`. */
  buckets?: string[];
  /** When set, requests need this bearer token. */
  token?: string;
  /** SPKI public key (PEM) whose signed JWT-bearer grants `POST /token` accepts. */
  serviceAccountKey?: string;
  /** Told of every request as it arrives; the function it returns gets the answer's status. */
  onRequest?: (req: Request) => (status: number) => void;
}

/** A running server. */
export interface TestGcsServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** `127.0.0.1:<port>`: the value of `STORAGE_EMULATOR_HOST`. */
  readonly host: string;
  /** The first bucket. */
  readonly bucket: string;
  /** Every request as `METHOD path?query`, oldest first. */
  readonly requests: string[];
  /** The stored bytes of an object, or `undefined`. */
  object(bucket: string, name: string): Uint8Array | undefined;
  /** Names of a bucket's objects under `prefix`, sorted. */
  names(bucket: string, prefix?: string): string[];
  /** Stores an object directly (bypassing HTTP). */
  put(bucket: string, name: string, data: Uint8Array): void;
  /** Resumable upload sessions not yet finished or cancelled. */
  openSessions(): number;
  close(): Promise<void>;
}

interface Session {
  bucket: string;
  name: string;
  parts: Uint8Array[];
  received: number;
  /** Hashed as chunks arrive, so completing a large upload is quick. */
  hashes: ObjectHashes;
  ifGenerationMatch?: string;
}

/**
 * A fresh RSA key pair as a service account has: `privatePem` for a key file's `private_key`,
 * `publicPem` for the server's `serviceAccountKey`.
 */
export async function serviceAccountKeys(): Promise<{ privatePem: string; publicPem: string }> {
  const kp = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
  const pem = (label: string, der: ArrayBuffer) =>
    `-----BEGIN ${label}-----\n${
      new Uint8Array(der).toBase64().match(/.{1,64}/g)!.join("\n")
    }\n-----END ${label}-----\n`;
  return {
    privatePem: pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", kp.privateKey)),
    publicPem: pem("PUBLIC KEY", await crypto.subtle.exportKey("spki", kp.publicKey)),
  };
}

/**
 * The text of a service-account key file whose grants `srv` accepts (with `privatePem` from
 * {@linkcode serviceAccountKeys}); `extra` overrides or adds fields.
 */
export function serviceAccountKeyJson(
  privatePem: string,
  srv: { endpoint: string },
  extra: Record<string, string> = {},
): string {
  return JSON.stringify({
    type: "service_account",
    project_id: "p",
    private_key_id: "k1",
    private_key: privatePem,
    client_email: "litestream@p.iam.gserviceaccount.com",
    token_uri: `${srv.endpoint}/token`,
    ...extra,
  });
}

/** Starts a server on a free 127.0.0.1 port. */
export function startGcsServer(options: GcsServerOptions = {}): TestGcsServer {
  const buckets = new Map<string, Map<string, GcsObject>>();
  for (const b of options.buckets ?? ["litestream-test"]) buckets.set(b, new Map());
  const sessions = new Map<string, Session>();
  const requests: string[] = [];
  let nextGeneration = Date.now() * 1000;

  const store = (
    bucket: string,
    name: string,
    data: Uint8Array,
    contentType?: string,
    hashes = new ObjectHashes().update(data),
  ) => {
    const now = new Date();
    const obj: GcsObject = {
      name,
      data,
      generation: String(nextGeneration++),
      contentType: contentType || "application/octet-stream",
      created: now,
      md5: hashes.md5(),
      crc32c: hashes.crc32c(),
    };
    buckets.get(bucket)!.set(name, obj);
    return obj;
  };

  /** 412 unless `ifGenerationMatch` (0 = must not exist) holds for `obj`. */
  const precondition = (want: string | null | undefined, obj?: GcsObject) => {
    if (want === null || want === undefined) return undefined;
    const ok = want === "0" ? !obj : obj?.generation === want;
    return ok ? undefined : jsonError(412, "conditionNotMet", "Precondition Failed");
  };

  const created = (bucket: string, obj: GcsObject) =>
    Response.json(objectResource(bucket, obj), { status: 200 });

  const media = (req: Request, obj: GcsObject, xml: boolean): Response => {
    const headers = new Headers({
      "Content-Type": obj.contentType,
      "ETag": xml ? `"${obj.md5}"` : obj.generation,
      "Last-Modified": obj.created.toUTCString(),
      "x-goog-generation": obj.generation,
      "x-goog-metageneration": "1",
      "x-goog-stored-content-length": String(obj.data.length),
      "x-goog-stored-content-encoding": "identity",
      "x-goog-hash": `crc32c=${obj.crc32c},md5=${obj.md5}`,
      "Accept-Ranges": "bytes",
    });
    const size = obj.data.length;
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.get("range") ?? "");
    if (range && (range[1] || range[2])) {
      const start = range[1] ? Number(range[1]) : Math.max(0, size - Number(range[2]));
      const end = range[1] && range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size) {
        headers.set("Content-Range", `bytes */${size}`);
        return new Response(null, { status: 416, headers });
      }
      headers.set("Content-Range", `bytes ${start}-${end}/${size}`);
      const body = req.method === "HEAD" ? null : obj.data.slice(start, end + 1);
      return new Response(body, { status: 206, headers });
    }
    return new Response(req.method === "HEAD" ? null : obj.data.slice(), { headers });
  };

  const upload = async (req: Request, url: URL, bucket: string): Promise<Response> => {
    const q = url.searchParams;
    const kind = q.get("uploadType");
    const objects = buckets.get(bucket)!;
    if ((req.method === "PUT" || req.method === "POST") && q.get("upload_id")) {
      return await resume(req, q.get("upload_id")!);
    }
    if (req.method === "DELETE" && q.get("upload_id")) {
      sessions.delete(q.get("upload_id")!);
      return new Response(null, { status: 499 });
    }
    if (req.method === "POST" && kind === "media") {
      const name = q.get("name");
      if (!name) return jsonError(400, "required", "Required parameter: name");
      const data = await req.bytes();
      const failed = precondition(q.get("ifGenerationMatch"), objects.get(name));
      if (failed) return failed;
      return created(bucket, store(bucket, name, data, req.headers.get("content-type") ?? ""));
    }
    if (req.method === "POST" && kind === "multipart") {
      const parts = parseMultipart(req.headers.get("content-type") ?? "", await req.bytes());
      if (!parts) return jsonError(400, "invalid", "Malformed multipart body");
      const meta = JSON.parse(new TextDecoder().decode(parts.metadata));
      const name = meta.name ?? q.get("name");
      if (!name) return jsonError(400, "required", "Required parameter: name");
      const failed = precondition(q.get("ifGenerationMatch"), objects.get(name));
      if (failed) return failed;
      return created(bucket, store(bucket, name, parts.data, meta.contentType ?? parts.type));
    }
    if (req.method === "POST" && kind === "resumable") {
      const text = await req.text();
      const meta = text ? JSON.parse(text) : {};
      const name = meta.name ?? q.get("name");
      if (!name) return jsonError(400, "required", "Required parameter: name");
      const id = crypto.randomUUID();
      sessions.set(id, {
        bucket,
        name,
        parts: [],
        received: 0,
        hashes: new ObjectHashes(),
        ifGenerationMatch: q.get("ifGenerationMatch") ?? undefined,
      });
      const location = `${url.origin}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o` +
        `?uploadType=resumable&upload_id=${id}`;
      return new Response(null, { status: 200, headers: { Location: location } });
    }
    return jsonError(400, "invalid", `unsupported upload: ${req.method} uploadType=${kind}`);
  };

  /** One `PUT` of a resumable session: a chunk, a status query, or the final chunk. */
  const resume = async (req: Request, id: string): Promise<Response> => {
    const s = sessions.get(id);
    if (!s) return jsonError(404, "notFound", "No such upload session");
    const data = await req.bytes();
    const cr = req.headers.get("content-range");
    let total: number | undefined;
    let start = 0;
    if (cr) {
      const m = /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(cr.trim());
      if (!m) return jsonError(400, "invalid", `bad Content-Range: ${cr}`);
      if (m[3] !== "*") total = Number(m[3]);
      if (m[1] !== undefined) {
        start = Number(m[1]);
        if (Number(m[2]) - start + 1 !== data.length) {
          return jsonError(400, "invalid", "Content-Range does not match the body's length");
        }
      } else start = s.received;
    } else total = data.length;
    if (start > s.received) {
      return jsonError(400, "invalid", `chunk starts at ${start}, ${s.received} bytes received`);
    }
    const fresh = data.subarray(s.received - start);
    if (fresh.length > 0) {
      s.parts.push(fresh.slice());
      s.hashes.update(fresh);
      s.received += fresh.length;
    }
    if (total !== undefined && s.received >= total) {
      sessions.delete(id);
      const whole = new Uint8Array(s.received);
      let at = 0;
      for (const p of s.parts) whole.set(p, (at += p.length) - p.length);
      const failed = precondition(s.ifGenerationMatch, buckets.get(s.bucket)!.get(s.name));
      if (failed) return failed;
      return created(s.bucket, store(s.bucket, s.name, whole, undefined, s.hashes));
    }
    const headers: Record<string, string> = s.received > 0
      ? { Range: `bytes=0-${s.received - 1}` }
      : {};
    // Google's Go library asks for its "incomplete" answer as a 200 with an override header.
    if (req.headers.get("x-guploader-no-308") === "yes") {
      return new Response(null, {
        status: 200,
        headers: { ...headers, "X-Http-Status-Code-Override": "308" },
      });
    }
    return new Response(null, { status: 308, headers });
  };

  const objectRoute = (req: Request, url: URL, bucket: string, name: string): Response => {
    const objects = buckets.get(bucket)!;
    const obj = objects.get(name);
    if (req.method === "DELETE") {
      if (!obj) return jsonError(404, "notFound", `No such object: ${bucket}/${name}`);
      objects.delete(name);
      return new Response(null, { status: 204 });
    }
    if (req.method !== "GET") return jsonError(405, "invalid", "method not allowed");
    if (!obj) return jsonError(404, "notFound", `No such object: ${bucket}/${name}`);
    const failed = precondition(url.searchParams.get("ifGenerationMatch"), obj);
    if (failed) return failed;
    if (url.searchParams.get("alt") === "media") return media(req, obj, false);
    return Response.json(objectResource(bucket, obj));
  };

  const route = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (req.method === "POST" && url.pathname === "/token") {
      return await verifyJwtBearer(req, options.serviceAccountKey, options.token ?? "");
    }
    if (url.pathname === "/computeMetadata/v1/instance/service-accounts/default/token") {
      // A Google Cloud VM's metadata server, for `GCE_METADATA_HOST`.
      if (req.headers.get("metadata-flavor") !== "Google" || !options.token) {
        return new Response("Missing Metadata-Flavor header", { status: 403 });
      }
      return Response.json({ access_token: options.token, expires_in: 3599, token_type: "Bearer" });
    }
    if (options.token && req.headers.get("authorization") !== `Bearer ${options.token}`) {
      return jsonError(401, "required", "Anonymous caller does not have storage access.");
    }
    // `/b/…` without `storage/v1` too: @google-cloud/storage sends that with STORAGE_EMULATOR_HOST.
    const api = /^\/(upload\/|download\/)?(?:storage\/v1\/)?b(?:\/([^/]+)(?:\/o(?:\/(.+))?)?)?$/
      .exec(url.pathname);
    if (api) {
      const [, kind, rawBucket, rawName] = api;
      if (!rawBucket) {
        if (req.method !== "POST") return jsonError(405, "invalid", "method not allowed");
        const { name } = await req.json();
        if (buckets.has(name)) return jsonError(409, "conflict", "bucket exists");
        buckets.set(name, new Map());
        return Response.json({ kind: "storage#bucket", name, id: name });
      }
      const bucket = decodeURIComponent(rawBucket);
      if (!buckets.has(bucket)) {
        return jsonError(404, "notFound", "The specified bucket does not exist.");
      }
      if (kind === "upload/") return await upload(req, url, bucket);
      if (rawName !== undefined) {
        return objectRoute(req, url, bucket, decodeURIComponent(rawName));
      }
      if (!api[0].endsWith("/o")) return Response.json({ kind: "storage#bucket", name: bucket });
      if (req.method !== "GET") return jsonError(405, "invalid", "method not allowed");
      const q = url.searchParams;
      return Response.json(listObjects(bucket, buckets.get(bucket)!, {
        prefix: q.get("prefix") ?? "",
        delimiter: q.get("delimiter") ?? "",
        pageToken: q.get("pageToken") ?? "",
        maxResults: Number(q.get("maxResults") || 1000),
      }));
    }
    // XML API: GET|HEAD /BUCKET/NAME.
    const xml = /^\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (xml && (req.method === "GET" || req.method === "HEAD")) {
      const bucket = decodeURIComponent(xml[1]);
      const obj = buckets.get(bucket)?.get(decodeURIComponent(xml[2]));
      return obj ? media(req, obj, true) : xmlNotFound(!buckets.has(bucket));
    }
    return jsonError(404, "notFound", `no route for ${req.method} ${url.pathname}`);
  };

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const done = options.onRequest?.(req);
      const res = await route(req).catch((err) =>
        jsonError(500, "backendError", String(err?.message ?? err))
      );
      done?.(res.status);
      return res;
    },
  );
  const port = server.addr.port;
  const close = async () => {
    await server.shutdown();
  };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    bucket: [...buckets.keys()][0],
    requests,
    object: (b, n) => buckets.get(b)?.get(n)?.data,
    names: (b, prefix = "") =>
      [...buckets.get(b)!.keys()].filter((n) => n.startsWith(prefix)).sort(),
    put: (b, n, data) => void store(b, n, data),
    openSessions: () => sessions.size,
    close,
    [Symbol.asyncDispose]: close,
  };
}
