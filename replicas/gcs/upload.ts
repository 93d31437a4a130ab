/**
 * GCS uploads of a byte stream of unknown length: one multipart request
 * (metadata and data) when it fits in a chunk, else a resumable session fed
 * chunk by chunk from two reused buffers (the next chunk is read while one is
 * sent). Bodies are streamed (see `GcsRequest.body`). A chunk whose request fails is
 * resent from the offset the session reports it persisted. GCS makes the
 * object visible only when the upload completes; a failed session is
 * cancelled, so nothing half-written ever carries the final name.
 *
 * @module
 */

import { PartSource, SourceError } from "../part_source.ts";
import { backoff } from "../../lib/os/async.ts";
import { LitestreamError } from "../../lib/errors.ts";
import { GcsError, type GcsHttp } from "./http.ts";

/** Where an upload goes. */
export interface UploadTarget {
  http: GcsHttp;
  bucket: string;
  name: string;
  /** `gcs://bucket/name`, for errors. */
  url: string;
}

/**
 * Uploads `data` as the object `target.name`; memory stays near two chunks
 * whatever the size. `createdAt` is the start time, as in v0.3.13.
 */
export async function uploadObject(
  target: UploadTarget,
  data: ReadableStream<Uint8Array>,
): Promise<{ size: number; createdAt: Date }> {
  const createdAt = new Date();
  const { chunkSize } = target.http.tuning;
  const source = new PartSource(data);
  try {
    const first = await source.fill(chunkSize);
    if (await source.atEnd()) await multipart(target, first);
    else await resumable(target, first, source);
  } catch (err) {
    // A failure to produce the data is not a GCS failure: re-thrown as is.
    throw err instanceof SourceError ? err.cause : err;
  }
  target.http.counters.bytes.PUT += source.size;
  return { size: source.size, createdAt };
}

/** The whole object in one `uploadType=multipart` request. */
async function multipart(t: UploadTarget, data: Uint8Array): Promise<void> {
  await (await sendMultipart(t, data)).body?.cancel();
}

/**
 * Stores `data` as `t.name` in one request, only if the object's generation is
 * `ifGenerationMatch` (`"0"`: only if absent). Returns the new generation, or `undefined` when
 * the condition failed.
 */
export async function putIfGeneration(
  t: UploadTarget,
  data: Uint8Array,
  ifGenerationMatch: string,
): Promise<string | undefined> {
  const res = await sendMultipart(t, data, ifGenerationMatch);
  if (res.status === 412) {
    await res.body?.cancel();
    return undefined;
  }
  t.http.counters.bytes.PUT += data.length;
  return String((await res.json()).generation);
}

/** One `uploadType=multipart` request: the JSON metadata part, then the data part. */
async function sendMultipart(
  t: UploadTarget,
  data: Uint8Array,
  ifGenerationMatch?: string,
): Promise<Response> {
  const boundary = `litestream-${crypto.randomUUID()}`;
  const head = `--${boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n` +
    `${JSON.stringify({ name: t.name })}\r\n--${boundary}\r\n` +
    `Content-Type: application/octet-stream\r\n\r\n`;
  const text = new TextEncoder();
  const q = new URLSearchParams({ uploadType: "multipart" });
  if (ifGenerationMatch !== undefined) q.set("ifGenerationMatch", ifGenerationMatch);
  return await t.http.send({
    operation: "PUT",
    object: t.url,
    method: "POST",
    url: `/upload/storage/v1/b/${encodeURIComponent(t.bucket)}/o?${q}`,
    headers: { "Content-Type": `multipart/related; boundary=${boundary}` },
    body: [text.encode(head), data, text.encode(`\r\n--${boundary}--\r\n`)],
    accept: ifGenerationMatch !== undefined ? [412] : [],
  });
}

/** A resumable session: `first` (a full chunk), then the rest of `source`, chunk by chunk. */
async function resumable(t: UploadTarget, first: Uint8Array, source: PartSource): Promise<void> {
  const { http } = t;
  const start = await http.send({
    operation: "PUT",
    object: t.url,
    method: "POST",
    url: `/upload/storage/v1/b/${encodeURIComponent(t.bucket)}/o?uploadType=resumable`,
    headers: { "Content-Type": "application/json; charset=UTF-8" },
    body: JSON.stringify({ name: t.name }),
  });
  await start.body?.cancel();
  const session = start.headers.get("location");
  if (!session) {
    throw new LitestreamError(`${t.url}: PUT failed: no session URI in the resumable answer`);
  }
  try {
    // Two buffers: the next chunk is read from the source while the current one is sent.
    let chunk = first;
    let offset = 0;
    let spare: Uint8Array | undefined;
    for (;;) {
      const last = await source.atEnd();
      const sending = sendChunk(t, session, chunk, offset, last);
      if (last) return await sending;
      const next = source.fill(
        http.tuning.chunkSize,
        spare ?? new Uint8Array(http.tuning.chunkSize),
      );
      next.catch(() => {}); // observed below, unless the send fails first
      await sending;
      spare = chunk.buffer.byteLength === http.tuning.chunkSize
        ? new Uint8Array(chunk.buffer as ArrayBuffer)
        : undefined;
      offset += chunk.length;
      chunk = await next;
    }
  } catch (err) {
    // Cancel the session (best effort): its bytes never become an object.
    await http.send({
      operation: "DELETE",
      object: t.url,
      method: "DELETE",
      url: session,
      accept: [499],
      attempts: 1,
    })
      .then((r) => r.body?.cancel(), () => {});
    throw err;
  }
}

/**
 * Sends the bytes `[offset, offset + chunk.length)` of the session (the
 * last chunk states the total). When an attempt fails, or the session
 * persisted less than was sent, the rest of the chunk is resent from the
 * offset the session reports.
 */
async function sendChunk(
  t: UploadTarget,
  session: string,
  chunk: Uint8Array,
  offset: number,
  last: boolean,
): Promise<void> {
  const { http } = t;
  const end = offset + chunk.length;
  const total = last ? String(end) : "*";
  let from = offset;
  for (let attempt = 1;; attempt++) {
    let state: { done: boolean; persisted: number } | undefined;
    try {
      const body = [chunk.subarray(from - offset)];
      const res = await http.send({
        operation: "PUT",
        object: t.url,
        method: "PUT",
        url: session,
        // Nothing left to send (all persisted, not yet final): just state the total.
        headers: {
          "Content-Range": from < end ? `bytes ${from}-${end - 1}/${total}` : `bytes */${total}`,
        },
        body,
        accept: [308],
        attempts: 1,
      });
      await res.body?.cancel();
      state = sessionState(res, end);
      if (state.done && !last) {
        throw new LitestreamError(`${t.url}: PUT failed: upload completed before its last chunk`);
      }
    } catch (err) {
      if (!isTransient(err)) throw err;
      if (attempt >= http.tuning.maxAttempts) {
        const e = err as GcsError;
        throw new GcsError("PUT", t.url, e.status, `${e.detail} (after ${attempt} attempts)`, {
          cause: err,
        });
      }
      await backoff(attempt, http.tuning.backoffMs);
      state = await queryState(t, session, last ? end : undefined);
    }
    if (state && (state.done || (!last && state.persisted >= end))) return;
    if (state && state.persisted < offset) {
      throw new LitestreamError(
        `${t.url}: PUT failed: the upload session lost bytes before ${offset}`,
      );
    }
    if (state) from = Math.min(state.persisted, end);
  }
}

/** Asks the session how far it got; `undefined` when even that fails. */
async function queryState(
  t: UploadTarget,
  session: string,
  total: number | undefined,
): Promise<{ done: boolean; persisted: number } | undefined> {
  try {
    const res = await t.http.send({
      operation: "PUT",
      object: t.url,
      method: "PUT",
      url: session,
      headers: { "Content-Range": `bytes */${total ?? "*"}` },
      accept: [308],
    });
    await res.body?.cancel();
    return sessionState(res, total ?? 0);
  } catch {
    return undefined;
  }
}

/** A session's answer: complete (2xx), or the bytes it persisted (308 and `Range: bytes=0-N`). */
function sessionState(res: Response, end: number): { done: boolean; persisted: number } {
  if (res.status !== 308) return { done: true, persisted: end };
  const m = /bytes=0-(\d+)/.exec(res.headers.get("range") ?? "");
  return { done: false, persisted: m ? Number(m[1]) + 1 : 0 };
}

/** A failure another attempt may cure: a network error or a transient status. */
function isTransient(err: unknown): err is GcsError {
  if (!(err instanceof GcsError)) return false;
  const status = err.status;
  return status === 0 || status === 408 || status === 429 || (status ?? 0) >= 500;
}
