/**
 * LZ4 layer: xxh32, the block codec, and the frame format, checked against known vectors,
 * fast-check round trips and Debian's `lz4` CLI in both directions.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import * as wasm from "lz4-wasm-nodejs";
import { CorruptionError } from "../errors.ts";
import {
  blockCompressor,
  BlockFormatError,
  compressBlock,
  decompressBlock,
  initCompressor,
} from "./block.ts";
import { encodeBlock } from "./block_encode.ts";
import {
  compressFrame,
  decodeFrameStream,
  decompressFrame,
  lz4FrameDecoder,
  lz4FrameEncoder,
} from "./mod.ts";
import { lendingStream } from "../os/fs.ts";
import { hashableBytes, Xxh32, xxh32 } from "./xxh32.ts";

const MiB = 1 << 20;
const HEADER = [0x04, 0x22, 0x4d, 0x18, 0x64, 0x70, 0xb9];
const text = (s: string) => new TextEncoder().encode(s);
const le32 = (b: Uint8Array, i: number) => new DataView(b.buffer, b.byteOffset).getUint32(i, true);

/**
 * Deterministic bytes like database pages: runs of random bytes, repeated text and zeros,
 * so blocks are partly compressible. `randomOnly` gives incompressible bytes.
 */
function sample(size: number, seed: number, randomOnly = false): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed | 1;
  const next = () => (x ^= x << 13, x ^= x >>> 17, x ^= x << 5, x >>> 0);
  const phrase = text("INSERT INTO users VALUES ('alice', 'alice@example.com', 42); ");
  for (let i = 0; i < size;) {
    const run = Math.min(size - i, 1 + (next() % 3000));
    const kind = randomOnly ? 0 : next() % 3;
    for (let k = 0; k < run; k++) {
      out[i + k] = kind === 0 ? next() & 0xff : kind === 1 ? phrase[(i + k) % phrase.length] : 0;
    }
    i += run;
  }
  return out;
}

/**
 * Cuts `data` into chunks whose sizes cycle through `sizes`, but at most ~2000 chunks so that
 * megabytes in 1-byte chunks do not take minutes.
 */
function chunked(data: Uint8Array, sizes: number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  const least = Math.max(1, Math.ceil(data.length / 2000));
  for (let i = 0, k = 0; i < data.length; k++) {
    const n = Math.max(least, sizes[k % sizes.length]);
    chunks.push(data.subarray(i, i + n));
    i += n;
  }
  return chunks;
}

async function pipe(chunks: Uint8Array[], t: TransformStream<Uint8Array, Uint8Array>) {
  const out: Uint8Array[] = [];
  await ReadableStream.from(chunks).pipeThrough(t).pipeTo(
    new WritableStream({ write: (c) => void out.push(c) }),
  );
  return out;
}

function join(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

/**
 * Runs Debian's lz4 CLI with `args` on a file holding `input` (a file, not stdin, so that
 * `--content-size` knows the size); returns stdout.
 */
async function lz4cli(args: string[], input: Uint8Array): Promise<Uint8Array> {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, input);
    const out = await new Deno.Command("/usr/bin/lz4", { args: [...args, path] }).output();
    assert.equal(out.code, 0, `lz4 ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
    return out.stdout;
  } finally {
    await Deno.remove(path);
  }
}

/** Asserts `f` throws a CorruptionError naming `name` whose message matches `re`. */
function assertCorrupt(f: () => unknown, name: string, re: RegExp) {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof CorruptionError, `expected CorruptionError, got ${e}`);
    assert.equal(e.object, name);
    assert.match(e.message, new RegExp(`^${name}: `));
    assert.match(e.message, re);
    return true;
  });
}

Deno.test("xxh32 matches published vectors and the frame header checksum", () => {
  assert.equal(xxh32(new Uint8Array(0)), 0x02cc5d05);
  assert.equal(xxh32(new Uint8Array(0), 1), 0x0b2cb792);
  assert.equal(xxh32(text("a")), 0x550d7456);
  assert.equal(xxh32(text("abc")), 0x32d153ff);
  assert.equal(xxh32(text("Nobody inspects the spammish repetition")), 0xe2293b2f);
  assert.equal((xxh32(new Uint8Array([0x64, 0x70])) >>> 8) & 0xff, 0xb9);
});

Deno.test("xxh32 streaming equals one-shot for any split", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1 }),
      fc.integer(),
      (data, sizes, seed) => {
        const h = new Xxh32(seed);
        for (const c of chunked(data, sizes)) h.update(c);
        assert.equal(h.digest(), xxh32(data, seed));
        assert.equal(h.digest(), h.digest()); // digest leaves the state alone
      },
    ),
  );
});

Deno.test("xxh32 reads hashable arrays in place with the same result, whatever mixes in", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 100_000 }),
      fc.array(fc.tuple(fc.integer({ min: 1, max: 40_000 }), fc.boolean()), { minLength: 1 }),
      fc.integer({ min: 0, max: 63 }),
      fc.integer(),
      (data, pieces, at, seed) => {
        // A copy at any alignment inside a hashable array; pieces come from either copy.
        const home = hashableBytes(at + data.length + 5).subarray(at, at + data.length);
        home.set(data);
        assert.equal(xxh32(home, seed), xxh32(data, seed));
        const h = new Xxh32(seed);
        let i = 0;
        for (let k = 0; i < data.length; k++) {
          const [size, inPlace] = pieces[k % pieces.length];
          h.update((inPlace ? home : data).subarray(i, i += size));
        }
        assert.equal(h.digest(), xxh32(data, seed));
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("hashableBytes: a plain array where no WebAssembly memory can be had", () => {
  const real = WebAssembly.Memory;
  WebAssembly.Memory = function () {
    throw new RangeError("WebAssembly.Memory(): could not allocate memory");
  } as unknown as typeof WebAssembly.Memory;
  try {
    const b = hashableBytes(1000);
    assert.equal(b.length, 1000);
    b.set(sample(1000, 4));
    assert.equal(xxh32(b), xxh32(sample(1000, 4)));
  } finally {
    WebAssembly.Memory = real;
  }
});

// Its speed is the bench's business (restore scenarios), not a test's: timings fail on a busy machine.
Deno.test("xxh32 equals the content checksum the lz4 CLI writes", async () => {
  for (const size of [0, 5, 16, 1000, 3 * MiB + 7]) {
    const data = sample(size, size + 1);
    const frame = await lz4cli(["-c"], data);
    assert.equal(xxh32(data), le32(frame, frame.length - 4), `size ${size}`);
    const home = hashableBytes(size);
    home.set(data);
    assert.equal(xxh32(home), le32(frame, frame.length - 4), `size ${size}, in place`);
  }
});

Deno.test("block codecs round trip; the portable encoder is understood by lz4_flex too", async () => {
  // With read access to the npm cache the fast WASM encoder must be the one in use. It loads
  // on first use (a restore never compresses), so nothing reports it before.
  assert.equal(await initCompressor(), "lz4-wasm-nodejs");
  assert.equal(blockCompressor, "lz4-wasm-nodejs");
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 70_000 }), fc.integer(), (size, seed) => {
      const data = sample(size, seed);
      assert.deepEqual(decompressBlock(compressBlock(data), size), data);
      const portable = encodeBlock(data);
      assert.deepEqual(decompressBlock(portable, size), data);
      const prefixed = new Uint8Array(4 + portable.length);
      new DataView(prefixed.buffer).setUint32(0, size, true);
      prefixed.set(portable, 4);
      assert.deepEqual(wasm.decompress(prefixed), data);
    }),
    { numRuns: 60 },
  );
});

Deno.test("block decoder rejects malformed blocks", () => {
  const bad = (bytes: number[], maxOut: number, re: RegExp) =>
    assert.throws(() => decompressBlock(new Uint8Array(bytes), maxOut), (e: unknown) => {
      assert.ok(e instanceof BlockFormatError);
      assert.match(e.message, re);
      return true;
    });
  assert.deepEqual(decompressBlock(new Uint8Array([0x10, 0x41]), 1), text("A"));
  bad([], 10, /ends before/);
  bad([0x11, 0x41, 0x05, 0x00, 0x00], 100, /offset out of range/);
  bad([0x11, 0x41, 0x00, 0x00, 0x00], 100, /offset out of range/);
  bad([0x50, 1, 2, 3, 4, 5], 4, /more than 4 bytes/);
  bad([0xf0], 100, /literal length/);
  bad([0x30, 1], 100, /past the end/);
  // A match reaching back into the dictionary is fine when one is given.
  assert.deepEqual(
    decompressBlock(new Uint8Array([0x00, 0x02, 0x00, 0x10, 0x43]), 5, text("AB")),
    text("ABABC"),
  );
});

Deno.test("frame header and trailer are exactly v0.3.13's", () => {
  assert.deepEqual(
    [...compressFrame(new Uint8Array(0))],
    [...HEADER, 0, 0, 0, 0, 0x05, 0x5d, 0xcc, 0x02],
  );
  const data = sample(10 * MiB, 3);
  const frame = compressFrame(data);
  assert.deepEqual([...frame.subarray(0, 7)], HEADER);
  assert.deepEqual([...frame.subarray(frame.length - 8, frame.length - 4)], [0, 0, 0, 0]);
  assert.equal(le32(frame, frame.length - 4), xxh32(data));
  // 10 MiB makes 3 blocks of at most 4 MiB, like v0.3.13's snapshots.
  let blocks = 0;
  for (let at = 7, size; (size = le32(frame, at) & 0x7fffffff) > 0; at += 4 + size) blocks++;
  assert.equal(blocks, 3);
});

Deno.test("compressFrame/decompressFrame round trip any size, incl. 4 MiB multiples", () => {
  const sizes = fc.oneof(
    fc.integer({ min: 0, max: 70_000 }),
    fc.constantFrom(4 * MiB, 4 * MiB - 1, 4 * MiB + 1, 8 * MiB, 9 * MiB + 123),
  );
  fc.assert(
    fc.property(sizes, fc.integer(), fc.boolean(), (size, seed, randomOnly) => {
      const data = sample(size, seed, randomOnly);
      assert.deepEqual(decompressFrame(compressFrame(data), "obj"), data);
    }),
    { numRuns: 25 },
  );
});

Deno.test("stream encoder/decoder round trip any chunking, one block at a time", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(fc.integer({ min: 0, max: 50_000 }), fc.constantFrom(4 * MiB, 8 * MiB + 5)),
      fc.array(fc.integer({ min: 1, max: 3 * MiB }), { minLength: 1, maxLength: 5 }),
      fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 5 }),
      fc.integer(),
      async (size, inSizes, midSizes, seed) => {
        const data = sample(size, seed);
        const encoded = await pipe(chunked(data, inSizes), lz4FrameEncoder());
        assert.ok(encoded.every((c) => c.length <= 4 * MiB + 8), "encoder piece over a block");
        const frame = join(encoded);
        assert.deepEqual(frame, compressFrame(data));
        const decoded = await pipe(chunked(frame, midSizes), lz4FrameDecoder("obj"));
        assert.ok(decoded.every((c) => c.length <= 4 * MiB), "decoder piece over a block");
        assert.deepEqual(join(decoded), data);
      },
    ),
    { numRuns: 12 },
  );
});

Deno.test("decodeFrameStream: exact bytes from lent, ordinary and byte streams in any chunking", async () => {
  // 64 KiB linked blocks with block checksums: many blocks, and needs that straddle chunks.
  const data = sample(700_000, 9);
  const frame = await lz4cli(["-c", "-B4", "-BD", "-BX"], data);
  /** The frame as a lending stream that reuses one buffer: a chunk is overwritten once the next is asked for. */
  const lentReused = (sizes: number[]) =>
    lendingStream(function* (lend) {
      const buf = new Uint8Array(frame.length);
      for (const c of chunked(frame, sizes)) {
        buf.fill(0xee);
        buf.set(c);
        yield lend ? buf.subarray(0, c.length) : c.slice();
      }
    });
  const bytes = (sizes: number[], of = frame) => {
    const chunks = chunked(of, sizes);
    return new ReadableStream({
      type: "bytes",
      pull(ctrl) {
        const c = chunks.shift();
        if (c) return ctrl.enqueue(c.slice());
        ctrl.close();
        ctrl.byobRequest?.respond(0); // a pending BYOB read ends with the stream
      },
    });
  };
  const sources = [
    lentReused,
    (sizes: number[]) => ReadableStream.from(chunked(frame, sizes)),
    bytes,
  ];
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...sources.keys()),
      fc.array(fc.integer({ min: 1, max: 200_000 }), { minLength: 1, maxLength: 6 }),
      async (kind, sizes) => {
        const out: Uint8Array[] = [];
        await decodeFrameStream(sources[kind](sizes), "obj", (block) => {
          out.push(block.slice());
          return Promise.resolve();
        });
        assert.deepEqual(join(out), data);
      },
    ),
    { numRuns: 30 },
  );
  // Damage found whatever the stream, also where a size word misleads the read-ahead.
  const second = 7 + 4 + (le32(frame, 7) & 0x7fffffff) + 4;
  const damaged: [(f: Uint8Array) => void, RegExp][] = [
    [(f) => f[f.length - 1] ^= 1, /content checksum/],
    [(f) => f.set([0, 0, 0x10, 0], second), /block 1 is 1048576 bytes, over/],
    [(f) => f.set([0xff, 0xff, 0xff, 0x7f], second), /block 1 is 2147483647 bytes, over/],
  ];
  for (const [damage, re] of damaged) {
    const bad = frame.slice();
    damage(bad);
    for (const source of [ReadableStream.from([bad]), bytes([bad.length], bad)]) {
      await assert.rejects(
        decodeFrameStream(source, "obj", async () => {}),
        (e) => e instanceof CorruptionError && re.test(e.message),
      );
    }
  }
});

Deno.test("our frames decode with lz4 -dc", async () => {
  for (
    const [size, randomOnly] of [[0, false], [1, false], [100_000, false], [9 * MiB, false], [
      MiB,
      true,
    ]] as const
  ) {
    const data = sample(size, size + 7, randomOnly);
    assert.deepEqual(await lz4cli(["-dc"], compressFrame(data)), data, `size ${size}`);
  }
});

Deno.test("frames from lz4 -c with any options decode with ours", async () => {
  // A 20 KiB random phrase repeated: linked 64 KiB blocks can reach into the previous block.
  const phrase = sample(20_000, 5, true);
  const data = sample(3 * MiB, 11);
  for (let i = 0; i < MiB; i += phrase.length) data.set(phrase.subarray(0, MiB - i), i);
  const cases: [string[], number][] = [
    [[], 0x64],
    [["-B4"], 0x64],
    [["-B5"], 0x64],
    [["-B6"], 0x64],
    [["-B7"], 0x64],
    [["-B4", "-BD"], 0x44],
    [["-BX"], 0x74],
    [["--content-size"], 0x6c],
    [["--no-frame-crc"], 0x60],
    [["-9"], 0x64],
    [["--fast=3"], 0x64],
  ];
  const sizes = new Map<string, number>();
  for (const [opts, flg] of cases) {
    const frame = await lz4cli(["-c", ...opts], data);
    assert.equal(frame[4], flg, `FLG for ${opts}`);
    assert.deepEqual(decompressFrame(frame, "cli.lz4"), data, `lz4 -c ${opts.join(" ")}`);
    sizes.set(opts.join(" "), frame.length);
  }
  assert.ok(sizes.get("-B4 -BD")! < sizes.get("-B4")!, "linked blocks used the dictionary");

  const noise = sample(MiB + 3, 2, true);
  const stored = await lz4cli(["-c"], noise);
  assert.ok(le32(stored, 7) & 0x80000000, "lz4 stored the random block uncompressed");
  assert.deepEqual(decompressFrame(stored, "noise.lz4"), noise);
});

Deno.test("concatenated and skippable frames decode in order, like lz4 -d", async () => {
  const a = sample(70_000, 1), b = sample(5 * MiB, 2), c = text("tail");
  const skippable = new Uint8Array([0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
  const all = join([
    await lz4cli(["-c", "-B4", "--content-size"], a),
    skippable,
    compressFrame(b),
    await lz4cli(["-c", "-BX"], c),
  ]);
  const expected = join([a, b, c]);
  assert.deepEqual(decompressFrame(all, "multi"), expected);
  assert.deepEqual(
    join(await pipe(chunked(all, [777, 65_536]), lz4FrameDecoder("multi"))),
    expected,
  );
  assert.deepEqual(await lz4cli(["-dc"], all), expected);
});

Deno.test("corrupt frames throw CorruptionError naming the object", async () => {
  const data = sample(300_000, 4);
  const frame = compressFrame(data);
  const name = "generations/0123456789abcdef/wal/00000000_00000000.wal.lz4";
  const edit = (f: (b: Uint8Array) => void) => {
    const copy = frame.slice();
    f(copy);
    return copy;
  };
  const corrupt = (bytes: Uint8Array, re: RegExp) =>
    assertCorrupt(() => decompressFrame(bytes, name), name, re);

  corrupt(new Uint8Array(0), /empty/);
  corrupt(frame.subarray(0, 5), /truncated.*frame descriptor/);
  corrupt(frame.subarray(0, 100), /truncated.*block 0/);
  corrupt(frame.subarray(0, frame.length - 2), /truncated.*content checksum/);
  corrupt(edit((b) => b[frame.length - 1] ^= 0x01), /content checksum/);
  corrupt(edit((b) => b[6] ^= 0xff), /header checksum/);
  corrupt(edit((b) => b[0] = 0x05), /bad magic/);
  corrupt(join([frame, text("junk")]), /after the LZ4 frame/);
  corrupt(join([frame, text("ju")]), /after the LZ4 frame/);
  corrupt(edit((b) => b.set([0xff, 0xff, 0x7f, 0x00], 7)), /over the frame's 4194304-byte limit/);
  // A flipped byte inside the compressed block: either the block no longer decodes or the
  // content checksum catches it, but it never passes.
  for (const at of [20, 1000, 50_000, frame.length - 20]) {
    corrupt(edit((b) => b[at] ^= 0x40), /block 0|content checksum/);
  }
  // Block checksums (lz4 -BX) are verified too.
  const checked = await lz4cli(["-c", "-BX"], data);
  const flipped = checked.slice();
  flipped[flipped.length - 9] ^= 0x01; // last byte of the last block's checksum
  corrupt(flipped, /checksum of block/);

  // Any cut is caught, and a flipped byte never yields wrong data: it throws a
  // CorruptionError, or (rarely) changes nothing decoded, e.g. a match offset turned into
  // another one pointing at the same bytes.
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: frame.length - 1 }),
      fc.integer({ min: 1, max: 255 }),
      (at, mask) => {
        corrupt(frame.subarray(0, at), /./);
        const flipped = edit((b) => b[at] ^= mask);
        try {
          assert.deepEqual(decompressFrame(flipped, name), data);
        } catch (e) {
          assert.ok(e instanceof CorruptionError && e.object === name, `${e}`);
        }
      },
    ),
    { numRuns: 300 },
  );

  // The stream decoder fails the same way.
  await assert.rejects(
    pipe(chunked(frame.subarray(0, frame.length - 1), [4096]), lz4FrameDecoder(name)),
    (e: unknown) => e instanceof CorruptionError && e.object === name,
  );
});
