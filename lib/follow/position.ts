/**
 * The follower's position file beside its output (`<output>-follow.json`): which generation,
 * WAL index and offset the output holds, with the replay state needed to check the next frames
 * (the index's WAL header and running checksum). Encoding and decoding are pure; the file is
 * replaced atomically (temporary file, fsync, rename).
 *
 * @module
 */

import { CorruptionError } from "../errors.ts";
import { isGeneration } from "../names.ts";
import type { ReplayChain } from "../restore/replay.ts";
import { writeAll } from "../os/fs.ts";

/** What the output holds. */
export interface FollowPosition {
  generation: string;
  /** WAL index and offset reached; offset 0 without `chain` means "the snapshot of this index". */
  index: number;
  offset: number;
  /** Replay state at (index, offset), when any WAL of this index was applied. */
  chain?: ReplayChain;
  /**
   * True while the output is being replaced by a snapshot in place: whatever it holds then is
   * not at this position, and a restart recovers again.
   */
  recovering?: boolean;
}

/** Format version written in the file. */
const VERSION = 1;

/** The position file of `output`. */
export function positionPath(output: string): string {
  return `${output}-follow.json`;
}

/** Encodes a position as the file's text. */
export function encodePosition(p: FollowPosition): string {
  return JSON.stringify({ version: VERSION, ...p }) + "\n";
}

const u32 = (v: unknown) =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

/** Decodes the file's text; throws `CorruptionError` naming `name` when it is not a position. */
export function decodePosition(text: string, name: string): FollowPosition {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text);
  } catch {
    throw new CorruptionError(name, "follow position file is not JSON");
  }
  const bad = (what: string) => new CorruptionError(name, `follow position file: ${what}`);
  if (typeof o !== "object" || o === null) throw bad("not an object");
  if (o.version !== VERSION) throw bad(`unknown version ${JSON.stringify(o.version)}`);
  if (typeof o.generation !== "string" || !isGeneration(o.generation)) throw bad("bad generation");
  if (!u32(o.index) || !u32(o.offset)) throw bad("bad index or offset");
  const p: FollowPosition = {
    generation: o.generation,
    index: o.index as number,
    offset: o.offset as number,
  };
  if (o.recovering === true) p.recovering = true;
  if (o.chain !== undefined) {
    const c = o.chain as Record<string, unknown>;
    const h = (c?.header ?? {}) as Record<string, unknown>;
    const sum = c?.checksum;
    const ok = u32(c?.index) && u32(c?.offset) && c.index === p.index && c.offset === p.offset &&
      Array.isArray(sum) && sum.length === 2 && sum.every(u32) &&
      ["magic", "version", "pageSize", "checkpointSeq", "salt1", "salt2"].every((k) => u32(h[k])) &&
      typeof h.bigEndian === "boolean" && Array.isArray(h.checksum) && h.checksum.length === 2 &&
      h.checksum.every(u32);
    if (!ok) throw bad("bad replay chain");
    p.chain = c as unknown as ReplayChain;
  }
  return p;
}

/** Reads the position file of `output`, or undefined when there is none. */
export async function readPosition(output: string): Promise<FollowPosition | undefined> {
  const path = positionPath(output);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  return decodePosition(text, path);
}

/** Replaces the position file of `output` atomically and durably. */
export async function writePosition(output: string, p: FollowPosition): Promise<void> {
  const path = positionPath(output);
  const tmp = `${path}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
  try {
    await writeAll(file, new TextEncoder().encode(encodePosition(p)));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
}
