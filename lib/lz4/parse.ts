/**
 * The LZ4 frame parser as a generator: it states what bytes it needs next ({@linkcode Need}) and
 * yields decoded blocks, so one parser serves stream, buffer and block-by-block readers. Accepts
 * any valid frame, like `lz4 -d`: linked or independent blocks, block and content checksums,
 * skippable frames, and several frames in a row.
 *
 * @module
 */

import { AGE_HEADER, AGE_WITHOUT_IDENTITIES } from "../age_header.ts";
import { CorruptionError } from "../errors.ts";
import { BlockFormatError, decompressBlockInto } from "./block.ts";
import { concat, read32 } from "./bytes.ts";
import { hashableBytes, Xxh32, xxh32 } from "./xxh32.ts";
import {
  BD_RESERVED,
  blockMaxSize,
  FLG_BLOCK_CHECKSUM,
  FLG_CONTENT_CHECKSUM,
  FLG_CONTENT_SIZE,
  FLG_DICT_ID,
  FLG_INDEPENDENT,
  FLG_RESERVED,
  FLG_VERSION_1,
  FRAME_MAGIC,
  headerChecksum,
  SKIP_STEP,
  SKIPPABLE_MAGIC,
  SKIPPABLE_MASK,
  UNCOMPRESSED,
  WINDOW,
} from "./format.ts";

/** What the parser waits for: `n` bytes of `what`; `endOk` when input may cleanly end instead. */
export interface Need {
  n: number;
  what: string;
  endOk?: boolean;
  /** A block's body: the next block's size word usually follows it. */
  block?: boolean;
}

/**
 * A parser coroutine: yields what it needs next and is resumed with exactly those bytes. The
 * bytes it is resumed with need to stay valid only until it yields again.
 */
export type Parser = Generator<Need, never, Uint8Array>;

/**
 * Where the parser decodes a block: returns an array of at least `size` bytes. The parser
 * emits views of it, so a block's output area must not be handed out again while its view is
 * in use.
 */
export type Target = (size: number) => Uint8Array;

/**
 * A growable reusable area: returns the same array until a larger one is asked for. By default
 * its arrays come from {@linkcode hashableBytes}, so the content checksum reads decoded blocks
 * where they are.
 */
export function reusable(
  allocate: (size: number) => Uint8Array<ArrayBuffer> = hashableBytes,
): Target {
  let buf = new Uint8Array(0);
  return (size) => buf.length >= size ? buf : (buf = allocate(size));
}

/** The previous `WINDOW` bytes of output, the dictionary of the next linked block. */
export function slideWindow(window: Uint8Array, out: Uint8Array): Uint8Array {
  if (out.length >= WINDOW) return out.slice(out.length - WINDOW);
  const keep = Math.min(window.length, WINDOW - out.length);
  return concat([window.subarray(window.length - keep), out]);
}

/** "age" and the dash of age's header, read as a little-endian frame magic. */
const AGE_MAGIC = new DataView(AGE_HEADER.buffer).getUint32(0, true);

/**
 * Parses a sequence of LZ4 and skippable frames, emitting decoded bytes as they come: `emit`
 * receives a view of an array from `target`, valid until the parser decodes its next block.
 */
export function* parseFrames(
  fail: (detail: string) => never,
  emit: (out: Uint8Array) => void,
  target: Target,
): Parser {
  for (let first = true;; first = false) {
    const magic = read32(yield { n: 4, what: "frame magic number", endOk: !first }, 0);
    if (((magic & SKIPPABLE_MASK) >>> 0) === SKIPPABLE_MAGIC) {
      let left = read32(yield { n: 4, what: "skippable frame size" }, 0) >>> 0;
      for (let n; left > 0; left -= n) {
        yield { n: n = Math.min(left, SKIP_STEP), what: "skippable frame" };
      }
    } else if (magic >>> 0 === FRAME_MAGIC) {
      yield* parseFrame(fail, emit, target);
    } else {
      fail(
        !first
          ? "unexpected data after the LZ4 frame"
          : magic >>> 0 === AGE_MAGIC
          ? AGE_WITHOUT_IDENTITIES
          : "not an LZ4 frame (bad magic number)",
      );
    }
  }
}

/** Parses one LZ4 frame after its magic number, up to and including its content checksum. */
function* parseFrame(
  fail: (detail: string) => never,
  emit: (out: Uint8Array) => void,
  target: Target,
): Generator<Need, void, Uint8Array> {
  // Copied: the bytes the parser is resumed with are valid only until its next yield.
  const desc = (yield { n: 2, what: "frame descriptor" }).slice();
  const [flg, bd] = desc;
  if ((flg & 0xc0) !== FLG_VERSION_1) fail(`unsupported LZ4 frame version ${flg >>> 6}`);
  if (flg & FLG_RESERVED || bd & BD_RESERVED) fail("reserved bits set in the frame descriptor");
  const code = bd >>> 4;
  if (code < 4) fail(`invalid block size code ${code} in the frame descriptor`);
  const optional = (flg & FLG_CONTENT_SIZE ? 8 : 0) + (flg & FLG_DICT_ID ? 4 : 0);
  const rest = yield { n: optional + 1, what: "frame descriptor" };
  if (headerChecksum(concat([desc, rest.subarray(0, optional)])) !== rest[optional]) {
    fail("bad LZ4 frame header checksum");
  }
  if (flg & FLG_DICT_ID) fail("LZ4 frame needs an external dictionary, which is not supported");
  const contentSize = flg & FLG_CONTENT_SIZE
    ? (read32(rest, 0) >>> 0) + (read32(rest, 4) >>> 0) * 2 ** 32
    : undefined;
  const blockMax = blockMaxSize(code);
  const linked = !(flg & FLG_INDEPENDENT);
  const checksumLen = flg & FLG_BLOCK_CHECKSUM ? 4 : 0;
  const hash = flg & FLG_CONTENT_CHECKSUM ? new Xxh32() : undefined;
  let window: Uint8Array = new Uint8Array(0);
  let total = 0;
  for (let k = 0;; k++) {
    const word = read32(yield { n: 4, what: `size of block ${k}` }, 0) >>> 0;
    if (word === 0) break;
    const size = word & ~UNCOMPRESSED;
    if (size > blockMax) {
      fail(`block ${k} is ${size} bytes, over the frame's ${blockMax}-byte limit`);
    }
    const body = yield { n: size + checksumLen, what: `block ${k}`, block: true };
    const data = body.subarray(0, size);
    if (checksumLen && xxh32(data) !== read32(body, size) >>> 0) fail(`bad checksum of block ${k}`);
    let out: Uint8Array;
    if (word & UNCOMPRESSED) {
      out = target(size).subarray(0, size);
      out.set(data);
    } else {
      const buf = target(window.length + blockMax);
      buf.set(window, 0);
      try {
        out = buf.subarray(window.length, decompressBlockInto(data, buf, window.length, blockMax));
      } catch (e) {
        if (e instanceof BlockFormatError) fail(`block ${k}: ${e.message}`);
        throw e;
      }
    }
    hash?.update(out);
    total += out.length;
    if (linked) window = slideWindow(window, out);
    if (out.length > 0) emit(out);
  }
  if (contentSize !== undefined && total !== contentSize) {
    fail(`LZ4 frame holds ${total} bytes but its header says ${contentSize}`);
  }
  if (hash && read32(yield { n: 4, what: "content checksum" }, 0) >>> 0 !== hash.digest()) {
    fail("bad LZ4 content checksum");
  }
}

/** The checks at the end of the input: nothing may be cut off, nothing may follow. */
export function checkEnd(
  fail: (detail: string) => never,
  seen: number,
  need: Need,
  left: number,
): void {
  if (seen === 0) fail("empty object, expected an LZ4 frame");
  if (!need.endOk) fail(`truncated LZ4 data: it ends inside the ${need.what}`);
  if (left > 0) fail("unexpected data after the LZ4 frame");
}

export function failWith(objectName: string): (detail: string) => never {
  return (detail) => {
    throw new CorruptionError(objectName, detail);
  };
}
