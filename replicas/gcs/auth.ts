/**
 * Google credentials for the GCS client, found as Google's default chain
 * finds them: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key or an
 * `authorized_user` file), else gcloud's application-default file, else the
 * metadata server of a Google Cloud VM (`GCE_METADATA_HOST` overrides its
 * host, as in Google's libraries). Service-account grants are signed RS256
 * JWTs (WebCrypto). Tokens are cached until a minute before they expire.
 * With `STORAGE_EMULATOR_HOST` the client uses no credentials at all.
 *
 * @module
 */

import { LitestreamError } from "../../lib/errors.ts";

/** The OAuth scope of every token: objects read, written, listed and deleted. */
const SCOPE = "https://www.googleapis.com/auth/devstorage.read_write";
const DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token";
/** A token is renewed when less than this is left of it. */
const RENEW_BEFORE_MS = 60_000;

/** A source of bearer tokens. */
export interface TokenSource {
  /** A valid token (fetched or renewed when needed). */
  token(): Promise<string>;
  /** Forgets the cached token (after the server refused it). */
  invalidate(): void;
}

/** Credentials that cannot be used: a bad key file, none found, a refused grant. */
export class CredentialsError extends LitestreamError {}

/** Environment variables and files read to find credentials (replaceable in tests). */
export interface CredentialEnv {
  get(name: string): string | undefined;
  readTextFile(path: string): Promise<string>;
}

/** This process's environment and files. */
export const processEnv: CredentialEnv = {
  get: (name) => Deno.env.get(name),
  readTextFile: (path) => Deno.readTextFile(path),
};

/**
 * The default chain's token source for the replica at `location` (named in
 * errors). Nothing is read until the first token is asked for.
 */
export function defaultCredentials(location: string, env: CredentialEnv = processEnv): TokenSource {
  return cachedTokens(() => findGrant(location, env));
}

/**
 * A token source for credentials given as the text of a key file (a service-account key or
 * `authorized_user` credentials) held where there is no file, such as an environment variable
 * named by `what` (named in errors, with `location`).
 */
export function credentialsFromJson(location: string, text: string, what: string): TokenSource {
  return cachedTokens(() =>
    jsonGrant(
      text,
      (detail, cause) =>
        new CredentialsError(`${location}: credentials in ${what}: ${detail}`, { cause }),
    )
  );
}

/** Tokens from the grant `find` resolves (once), each reused until shortly before it expires. */
function cachedTokens(find: () => Promise<Grant>): TokenSource {
  let cached: { token: string; expires: number } | undefined;
  let pending: Promise<string> | undefined;
  let grant: Grant | undefined;

  const fetchToken = async (): Promise<string> => {
    grant ??= await find();
    const t = await grant();
    cached = { token: t.access_token, expires: Date.now() + (t.expires_in ?? 3600) * 1000 };
    return t.access_token;
  };
  return {
    token() {
      if (cached && cached.expires - Date.now() > RENEW_BEFORE_MS) {
        return Promise.resolve(cached.token);
      }
      pending ??= fetchToken().finally(() => pending = undefined);
      return pending;
    },
    invalidate() {
      cached = undefined;
    },
  };
}

type Grant = () => Promise<{ access_token: string; expires_in?: number }>;

/** Follows the default chain to the first credentials it finds. */
async function findGrant(location: string, env: CredentialEnv): Promise<Grant> {
  const explicit = env.get("GOOGLE_APPLICATION_CREDENTIALS");
  if (explicit) {
    return await fileGrant(location, explicit, "GOOGLE_APPLICATION_CREDENTIALS", env);
  }
  const home = env.get("HOME");
  const gcloud = env.get("CLOUDSDK_CONFIG") ?? (home ? `${home}/.config/gcloud` : undefined);
  if (gcloud) {
    const adc = `${gcloud}/application_default_credentials.json`;
    try {
      await Deno.stat(adc);
      return await fileGrant(location, adc, "gcloud application-default credentials", env);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return metadataGrant(location, env.get("GCE_METADATA_HOST") || "metadata.google.internal");
}

/** A grant from a credentials file (`what` says where its name came from). */
async function fileGrant(
  location: string,
  file: string,
  what: string,
  env: CredentialEnv,
): Promise<Grant> {
  const bad: Bad = (detail, cause) =>
    new CredentialsError(`${location}: credentials file ${file} (${what}): ${detail}`, { cause });
  let text: string;
  try {
    text = await env.readTextFile(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw bad("no such file", err);
    throw bad(String((err as Error).message ?? err), err);
  }
  return await jsonGrant(text, bad);
}

/** Makes the error for a credentials problem `detail`, saying where the credentials came from. */
type Bad = (detail: string, cause?: unknown) => CredentialsError;

/** A grant from the text of a key file; problems are reported through `bad`. */
async function jsonGrant(text: string, bad: Bad): Promise<Grant> {
  let json: Record<string, string>;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw bad(`not valid JSON: ${(err as Error).message}`, err);
  }
  const need = (...keys: string[]) => {
    const missing = keys.filter((k) => typeof json[k] !== "string" || !json[k]);
    if (missing.length) throw bad(`missing ${missing.join(", ")}`);
  };
  if (json.type === "service_account") {
    need("client_email", "private_key");
    let key: CryptoKey;
    try {
      key = await importPem(json.private_key);
    } catch (err) {
      throw bad(`private_key is not a PEM PKCS#8 RSA key: ${(err as Error).message}`, err);
    }
    const tokenUri = json.token_uri || DEFAULT_TOKEN_URI;
    return async () => {
      const assertion = await signJwt(key, json.private_key_id, {
        iss: json.client_email,
        scope: SCOPE,
        aud: tokenUri,
      });
      return await tokenRequest(bad, tokenUri, {
        grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer",
        assertion,
      });
    };
  }
  if (json.type === "authorized_user") {
    need("client_id", "client_secret", "refresh_token");
    return () =>
      tokenRequest(bad, json.token_uri || DEFAULT_TOKEN_URI, {
        grant_type: "refresh_token",
        client_id: json.client_id,
        client_secret: json.client_secret,
        refresh_token: json.refresh_token,
      });
  }
  throw bad(
    `unsupported credentials type ${JSON.stringify(json.type ?? "")}` +
      " (use a service_account key or authorized_user credentials)",
  );
}

/** The metadata server's token for the VM's default service account. */
function metadataGrant(location: string, host: string): Grant {
  const url = `http://${host}/computeMetadata/v1/instance/service-accounts/default/token`;
  return async () => {
    let res: Response;
    try {
      res = await fetch(url, {
        headers: { "Metadata-Flavor": "Google" },
        signal: AbortSignal.timeout(5000),
      });
    } catch (err) {
      throw new CredentialsError(
        `${location}: no Google credentials found: set GOOGLE_APPLICATION_CREDENTIALS to a ` +
          `service-account key file, or run where the metadata server answers (${host}: ` +
          `${(err as Error).message})`,
        { cause: err },
      );
    }
    if (!res.ok) {
      const body = (await res.text()).slice(0, 200);
      throw new CredentialsError(
        `${location}: metadata server ${host} refused a token: HTTP ${res.status} ${body}`,
      );
    }
    return await res.json();
  };
}

/** Posts an OAuth token request; a refusal is a `CredentialsError` made by `bad`. */
async function tokenRequest(
  bad: Bad,
  uri: string,
  form: Record<string, string>,
): Promise<{ access_token: string; expires_in?: number }> {
  // A network failure rejects with the fetch TypeError: transient, the caller retries.
  const res = await fetch(uri, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (res.ok) return JSON.parse(text);
  if (res.status >= 500) throw new TypeError(`token endpoint ${uri}: HTTP ${res.status}`);
  let detail = text.slice(0, 200);
  try {
    const j = JSON.parse(text);
    detail = [j.error, j.error_description].filter(Boolean).join(": ") || detail;
  } catch { /* not JSON: the raw text says it */ }
  throw bad(`token request refused (HTTP ${res.status}): ${detail}`);
}

async function importPem(pem: string): Promise<CryptoKey> {
  const der = Uint8Array.fromBase64(pem.replace(/-----[^-]+-----|\s/g, ""));
  return await crypto.subtle.importKey(
    "pkcs8",
    der,
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

/** A signed RS256 JWT with `claims`, issued now and valid for an hour. */
async function signJwt(
  key: CryptoKey,
  kid: string | undefined,
  claims: Record<string, string>,
): Promise<string> {
  const b64 = (v: unknown) =>
    new TextEncoder().encode(JSON.stringify(v)).toBase64({
      alphabet: "base64url",
      omitPadding: true,
    });
  const iat = Math.floor(Date.now() / 1000);
  const head = b64({ alg: "RS256", typ: "JWT", ...(kid ? { kid } : {}) });
  const body = b64({ ...claims, iat, exp: iat + 3600 });
  const sig = await crypto.subtle.sign(
    "RSASSA-PKCS1-v1_5",
    key,
    new TextEncoder().encode(`${head}.${body}`),
  );
  return `${head}.${body}.${
    new Uint8Array(sig).toBase64({ alphabet: "base64url", omitPadding: true })
  }`;
}
