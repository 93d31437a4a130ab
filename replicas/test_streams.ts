/**
 * Small helpers for tests of replica clients: byte streams from strings,
 * bodies read back whole, assertions on rejected calls, a file replica's keys. Shared by the
 * client contract (`contract.ts`) and backend-specific tests.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { readDirOrEmpty } from "../lib/os/fs.ts";

/** An error class, for `rejectsWith` and `throwsWith`. */
export type ErrorClass<E extends Error> = new (...args: never[]) => E;

/** Awaits `fn`'s rejection, checks class and message fragment, and returns the error. */
export async function rejectsWith<E extends Error>(
  fn: () => Promise<unknown>,
  cls: ErrorClass<E>,
  includes = "",
): Promise<E> {
  const err = await fn().then(() => undefined, (e) => e);
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
  assert.ok(err.message.includes(includes), `"${err.message}" lacks "${includes}"`);
  return err;
}

/** Like `rejectsWith` for a synchronous throw. */
export function throwsWith(fn: () => unknown, cls: ErrorClass<Error>, includes = ""): void {
  assert.throws(fn, (e) => e instanceof cls && e.message.includes(includes));
}

const encoder = new TextEncoder();

/** A stream of the given chunks (strings UTF-8 encoded). */
export function streamOf(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(chunks.map((c) => typeof c === "string" ? encoder.encode(c) : c));
}

/** All bytes of `stream`. */
export async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** All of `stream` decoded as UTF-8. */
export async function textOf(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

/** A stream of `data` in 64 KiB chunks, produced on demand. */
export function chunked(data: Uint8Array): ReadableStream<Uint8Array> {
  let off = 0;
  return new ReadableStream({
    pull(ctrl) {
      if (off >= data.length) return ctrl.close();
      ctrl.enqueue(data.slice(off, off += 64 * 1024));
    },
  });
}

/** Paths of every file under `dir`, relative to `root`, sorted (a file replica's keys). */
export async function filesUnder(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readDirOrEmpty(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) out.push(...await filesUnder(root, path));
    else out.push(relative(root, path));
  }
  return out.sort();
}
