/**
 * The bytes of a WebAssembly module holding xxHash32's inner loop, written out by hand: V8
 * compiles `i32.rotl` to one rotate instruction and `i32.load` to one unaligned load, which
 * makes it several times faster than the same loop in TypeScript (measured in `xxh32.ts`), and
 * it needs neither a toolchain nor a file on disk (`deno compile`, Deno Deploy).
 *
 * The module imports its memory (`x.m`, at least one page) and exports one function:
 *
 * ```wat
 * (func (export "s") (param $acc i32) (param $p i32) (param $end i32) (result i32)
 *   (local $v1 i32) (local $v2 i32) (local $v3 i32) (local $v4 i32)
 *   ;; $v1..$v4 = the four int32 accumulators at $acc
 *   (block
 *     (br_if 0 (i32.lt_u (i32.sub $end $p) 16))
 *     (loop
 *       ;; for each lane k: $vk = rotl($vk + load($p + 4(k-1)) * P2, 13) * P1
 *       (local.set $p (i32.add $p 16))
 *       (br_if 0 (i32.ge_u (i32.sub $end $p) 16))))
 *   ;; the accumulators back to $acc
 *   $p)
 * ```
 *
 * that is: it folds every whole 16-byte stripe of memory `[p, end)` into the accumulators and
 * returns the address after the last one (the caller keeps `p <= end`).
 *
 * @module
 */

/** Prime 1 of xxHash32. */
export const P1 = 0x9e3779b1;
/** Prime 2 of xxHash32. */
export const P2 = 0x85ebca77;

// Opcodes and immediates (WebAssembly core specification, binary format).
const I32 = 0x7f;
const BLOCK = 0x02, LOOP = 0x03, END = 0x0b, VOID = 0x40, BR_IF = 0x0d;
const GET = 0x20, SET = 0x21;
const LOAD = 0x28, STORE = 0x36, ALIGN4 = 0x02; // memarg: log2 alignment, then offset
const CONST = 0x41, ADD = 0x6a, SUB = 0x6b, MUL = 0x6c, ROTL = 0x77, LT_U = 0x49, GE_U = 0x4f;
const ACC = 0, P = 1, END_ARG = 2, V1 = 3; // local indices: the 3 parameters, then v1..v4

/** Signed LEB128, the encoding of an `i32.const` immediate. */
function sleb(v: number): number[] {
  const out: number[] = [];
  for (v |= 0;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const last = (v === 0 && !(byte & 0x40)) || (v === -1 && (byte & 0x40));
    out.push(last ? byte : byte | 0x80);
    if (last) return out;
  }
}

/** A section: its id, its length (all ours are under 128 bytes: one LEB128 byte), its bytes. */
function section(id: number, bytes: number[]): number[] {
  if (bytes.length >= 0x80) throw new RangeError("section too long for a one-byte length");
  return [id, bytes.length, ...bytes];
}

/** `(v + load(p + offset) * P2) rotl 13 * P1` into local `v`: one lane of one stripe. */
function lane(v: number, offset: number): number[] {
  // deno-fmt-ignore
  return [
    GET, v,
    GET, P, LOAD, ALIGN4, offset,
    CONST, ...sleb(P2), MUL,
    ADD,
    CONST, 13, ROTL,
    CONST, ...sleb(P1), MUL,
    SET, v,
  ];
}

/** `end - p >= 16` (or `<`, with `LT_U`) on the stack. */
function room(compare: number): number[] {
  return [GET, END_ARG, GET, P, SUB, CONST, 16, compare];
}

// deno-fmt-ignore
const body = [
  1, 4, I32, // locals: one group of four i32
  ...[0, 1, 2, 3].flatMap((k) => [GET, ACC, LOAD, ALIGN4, 4 * k, SET, V1 + k]),
  BLOCK, VOID,
  ...room(LT_U), BR_IF, 0,
  LOOP, VOID,
  ...[0, 1, 2, 3].flatMap((k) => lane(V1 + k, 4 * k)),
  GET, P, CONST, 16, ADD, SET, P,
  ...room(GE_U), BR_IF, 0,
  END, // loop
  END, // block
  ...[0, 1, 2, 3].flatMap((k) => [GET, ACC, GET, V1 + k, STORE, ALIGN4, 4 * k]),
  GET, P,
  END, // function
];

/** The code section's content: one function body, after its length. */
const code = [1, ...uleb(body.length), ...body];

/** The module's bytes. */
// deno-fmt-ignore
export const STRIPES_WASM: Uint8Array<ArrayBuffer> = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, // magic, version 1
  ...section(1, [1, 0x60, 3, I32, I32, I32, 1, I32]), // types: (i32 i32 i32) -> i32
  ...section(2, [1, 1, 0x78, 1, 0x6d, 0x02, 0x00, 1]), // imports: memory "x" "m", min 1 page
  ...section(3, [1, 0]), // functions: one, of type 0
  ...section(7, [1, 1, 0x73, 0x00, 0]), // exports: "s" = function 0
  0x0a, ...uleb(code.length), ...code, // code (longer than 127 bytes: no `section`)
]);

/** Unsigned LEB128, for the code section's lengths. */
function uleb(v: number): number[] {
  const out: number[] = [];
  do {
    const byte = v & 0x7f;
    v >>>= 7;
    out.push(v ? byte | 0x80 : byte);
  } while (v);
  return out;
}
