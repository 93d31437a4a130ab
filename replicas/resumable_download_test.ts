/**
 * Resumable downloads (replicas/resumable_download.ts) against an object in memory whose
 * responses break, stall, ignore the range or come from a replaced version: a range read
 * into a buffer holds exactly the object's bytes, each byte counted once, or fails with an
 * error that says why.
 */

import assert from "node:assert/strict";
import { LitestreamError } from "../lib/errors.ts";
import {
  downloadInto,
  type DownloadPart,
  type DownloadSource,
  resumableDownload,
} from "./resumable_download.ts";
import { bytesOf, rejectsWith } from "./test_streams.ts";

const object = (size: number) => Uint8Array.from({ length: size }, (_, i) => (i * 13 + 5) & 255);

/** How one response misbehaves. */
interface Misbehave {
  /** Deliver this many bytes, then break (an error) or stall (nothing more). */
  after?: number;
  how?: "break" | "stall";
  /** Answer with the whole object, as a server that ignores Range does. */
  ignoreRange?: boolean;
  etag?: string;
}

/**
 * A source reading `data[from, end)` in 1000-byte chunks, as a byte stream (`fetch`'s bodies
 * are) or not; the n-th response misbehaves as `faults[n]` says.
 */
function source(
  data: Uint8Array,
  opts: { start?: number; end?: number; byteStream?: boolean; faults?: Misbehave[] } = {},
) {
  const gets: number[] = [];
  let counted = 0;
  const src: DownloadSource = {
    get(from) {
      const fault = opts.faults?.[gets.length] ?? {};
      gets.push(from);
      const begin = fault.ignoreRange ? 0 : from;
      const bytes = data.subarray(begin, opts.end ?? data.length);
      let at = 0;
      const next = (view?: ArrayBufferView) => {
        if (fault.after !== undefined && at >= fault.after) {
          return fault.how === "stall" ? new Promise<never>(() => {}) : Promise.reject(
            new Error("connection reset"),
          );
        }
        const end = Math.min(bytes.length, at + 1000, fault.after ?? Infinity);
        const n = Math.min(end - at, view?.byteLength ?? Infinity);
        const chunk = bytes.subarray(at, at += n);
        return Promise.resolve(chunk);
      };
      const body = opts.byteStream
        ? new ReadableStream({
          type: "bytes",
          async pull(c) {
            if (at >= bytes.length) {
              c.close();
              c.byobRequest?.respond(0);
              return;
            }
            const view = c.byobRequest!.view!;
            const chunk = await next(view);
            new Uint8Array(view.buffer, view.byteOffset, chunk.length).set(chunk);
            c.byobRequest!.respond(chunk.length);
          },
        })
        : new ReadableStream<Uint8Array>({
          async pull(c) {
            if (at >= bytes.length) return c.close();
            c.enqueue((await next()).slice());
          },
        });
      const part: DownloadPart = {
        body,
        length: bytes.length,
        etag: fault.etag ?? "v1",
        rangeStart: fault.ignoreRange ? undefined : from,
      };
      return Promise.resolve(part);
    },
    maxResumes: 3,
    onBytes: (n) => counted += n,
    fail: (detail, { replaced }) =>
      new LitestreamError(`obj: ${detail}${replaced ? " [replaced]" : ""}`),
    start: opts.start,
    idleTimeoutMs: 50,
  };
  return { src, gets, counted: () => counted };
}

for (const byteStream of [false, true]) {
  const kind = byteStream ? "byte-stream bodies" : "default bodies";

  Deno.test(`downloadInto (${kind}): exactly the range, resumed where it broke or stalled`, async () => {
    const data = object(10_000);
    const cases: Misbehave[][] = [
      [],
      [{ after: 2_500, how: "break" }],
      [{ after: 2_500, how: "stall" }, { after: 1_000, how: "break" }],
    ];
    for (const faults of cases) {
      const { src, gets, counted } = source(data, { start: 3_000, end: 9_000, byteStream, faults });
      const into = new Uint8Array(6_000);
      const out = await downloadInto(src, into);
      assert.ok(out === into, "filled in place");
      assert.deepEqual(out, data.subarray(3_000, 9_000));
      assert.deepEqual(gets, [3_000, 5_500, 6_500].slice(0, faults.length + 1));
      assert.deepEqual(counted(), 6_000, "every byte counted once");
    }
  });

  Deno.test(`downloadInto (${kind}): a short, long, unranged or replaced answer is an error`, async () => {
    const data = object(10_000);
    const into = () => new Uint8Array(6_000);
    await rejectsWith(
      () => downloadInto(source(data, { start: 3_000, end: 8_000, byteStream }).src, into()),
      LitestreamError,
      "obj: bytes 3000-8999: 5000 of the 6000 bytes requested",
    );
    await rejectsWith(
      () => downloadInto(source(data, { start: 3_000, byteStream }).src, into()),
      LitestreamError,
      "more than the 6000 bytes requested",
    );
    await rejectsWith(
      () =>
        downloadInto(
          source(data, { start: 3_000, byteStream, faults: [{ ignoreRange: true }] }).src,
          into(),
        ),
      LitestreamError,
      "range request from byte 3000 not honoured",
    );
    await rejectsWith(
      () =>
        downloadInto(
          source(data, {
            start: 3_000,
            end: 9_000,
            byteStream,
            faults: [{ after: 100, how: "break" }, { etag: "v2" }],
          }).src,
          into(),
        ),
      LitestreamError,
      "replaced during the download (ETag changed) [replaced]",
    );
    const stalling = Array(5).fill({ after: 0, how: "stall" });
    await rejectsWith(
      () => downloadInto(source(data, { byteStream, faults: stalling }).src, into()),
      LitestreamError,
      "download broke at byte 0: no data for 50 ms",
    );
  });
}

Deno.test("downloadInto: an abort stops a stalled download with the abort's reason", async () => {
  const data = object(10_000);
  const { src, gets } = source(data, { faults: [{ after: 1_000, how: "stall" }] });
  const abort = new AbortController();
  const done = downloadInto(
    { ...src, idleTimeoutMs: 60_000 },
    new Uint8Array(10_000),
    abort.signal,
  );
  await new Promise((resolve) => setTimeout(resolve, 20));
  abort.abort(new LitestreamError("given up"));
  await rejectsWith(() => done, LitestreamError, "given up");
  assert.deepEqual(gets, [0], "not resumed");
});

Deno.test("resumableDownload: the whole object, resumed where it broke", async () => {
  const data = object(10_000);
  const { src, gets, counted } = source(data, { faults: [{ after: 4_321, how: "break" }] });
  assert.deepEqual(await bytesOf(await resumableDownload(src)), data);
  assert.deepEqual(gets, [0, 4_321]);
  assert.deepEqual(counted(), 10_000);
});
