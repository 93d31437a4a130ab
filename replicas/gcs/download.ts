/**
 * GCS reads for the shared resumable download (`replicas/resumable_download.ts`): one media GET
 * of an object or a byte range of it, pinned to a generation (the role an ETag plays for S3).
 *
 * @module
 */

import { NotFoundError } from "../../lib/errors.ts";
import type { DownloadPart } from "../resumable_download.ts";
import { errorDetail, GcsError, type GcsHttp, NO_BUCKET_HINT } from "./http.ts";

/** One object to read. */
export interface GcsObjectRef {
  http: GcsHttp;
  /** `/storage/v1/b/BUCKET/o/NAME`. */
  path: string;
  /** `gcs://bucket/name`, for errors. */
  url: string;
}

/** One response: the part for the resumable download, and the object's whole size. */
export interface GcsRead {
  part: DownloadPart;
  /** The object's size (from Content-Range, or the whole body's length). */
  size: number;
}

/**
 * GETs the object from byte `from`, only from generation `generation` when given. A missing
 * object is `NotFoundError`; a replaced one (the generation no longer current) and an
 * unsatisfiable range are `GcsError`s (status 412, 416).
 */
export async function getObject(
  o: GcsObjectRef,
  from: number,
  generation?: string,
): Promise<GcsRead> {
  const q = new URLSearchParams({ alt: "media" });
  if (generation) q.set("ifGenerationMatch", generation);
  const range = from > 0 ? `bytes=${from}-` : "";
  const res = await o.http.send({
    operation: "GET",
    object: o.url,
    method: "GET",
    url: `${o.path}?${q}`,
    headers: range ? { Range: range } : {},
    accept: [404, 412, 416],
  });
  if (res.status === 404) {
    const detail = await errorDetail(res);
    if (/bucket/i.test(detail)) throw new GcsError("GET", o.url, 404, detail + NO_BUCKET_HINT);
    throw new NotFoundError(`${o.url}: object not found`, {
      cause: new GcsError("GET", o.url, 404, detail),
    });
  }
  if (res.status === 412 || res.status === 416) {
    await res.body?.cancel();
    const detail = res.status === 412
      ? "the object was replaced during the download (generation changed)"
      : `range ${range} not satisfiable`;
    throw new GcsError("GET", o.url, res.status, detail);
  }
  const length = res.headers.get("content-length");
  const cr = /^bytes (\d+)-\d+\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
  return {
    part: {
      body: res.body ?? ReadableStream.from([]),
      length: length === null ? undefined : Number(length),
      etag: res.headers.get("x-goog-generation") ?? undefined,
      rangeStart: cr ? Number(cr[1]) : undefined,
    },
    size: cr ? Number(cr[2]) : Number(length ?? 0),
  };
}
