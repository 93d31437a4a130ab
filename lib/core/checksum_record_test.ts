/**
 * Checksum records (lib/core/checksum_record.ts): the JSON a replica keeps beside a generation,
 * named after its position; decoding checks the content against the name, so a record moved,
 * edited or truncated is reported as corrupt, naming the object.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type ChecksumRecord,
  decodeRecord,
  encodeRecord,
  isRecordName,
  recordName,
  RECORDS_DIR,
} from "./checksum_record.ts";
import { CorruptionError } from "../errors.ts";

const RECORD: ChecksumRecord = {
  generation: "0123456789abcdef",
  index: 10,
  offset: 4152,
  sha256: "ab".repeat(32),
};
const NAME = "0000000a_00001038.json";
const OBJECT = "generations/0123456789abcdef/checksums/0000000a_00001038.json";

/** Asserts `decodeRecord` rejects `bytes` (under `name`) as corrupt with `detail`. */
function rejects(bytes: Uint8Array, detail: string, name = NAME): void {
  assert.throws(
    () => decodeRecord(bytes, name, OBJECT),
    (e: Error) => e instanceof CorruptionError && e.message === `${OBJECT}: ${detail}`,
  );
}

const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

Deno.test("a record is one line of JSON named <index %08x>_<offset %08x>.json under checksums/", () => {
  assert.equal(RECORDS_DIR, "checksums");
  assert.equal(recordName(RECORD), NAME);
  assert.equal(
    new TextDecoder().decode(encodeRecord(RECORD)),
    `{"generation":"0123456789abcdef","index":10,"offset":4152,"sha256":"${"ab".repeat(32)}"}\n`,
  );
  assert.ok(isRecordName(NAME));
  for (const bad of ["0000000a_1038.json", "0000000A_00001038.json", `${NAME}.tmp`, "x.json"]) {
    assert.ok(!isRecordName(bad), bad);
  }
});

Deno.test("encode then decode gives the record back, for any position and digest", () => {
  const record = fc.record({
    generation: fc.stringMatching(/^[0-9a-f]{16}$/),
    index: fc.integer({ min: 0, max: 0x7fffffff }),
    offset: fc.integer({ min: 0, max: 0xffffffff }),
    sha256: fc.stringMatching(/^[0-9a-f]{64}$/),
  });
  fc.assert(
    fc.property(record, (r) => {
      const name = recordName(r);
      assert.ok(isRecordName(name));
      assert.deepEqual(decodeRecord(encodeRecord(r), name, OBJECT), { ...r });
    }),
  );
  // Extra fields are dropped on encoding: only the four are stored.
  const extra = { ...RECORD, note: "x" } as ChecksumRecord;
  assert.deepEqual(decodeRecord(encodeRecord(extra), NAME, OBJECT), RECORD);
});

Deno.test("tampering is detected and names the object", () => {
  rejects(new TextEncoder().encode("not json"), "checksum record is not JSON");
  rejects(encodeRecord(RECORD).subarray(0, 40), "checksum record is not JSON"); // truncated
  const malformed = "malformed checksum record";
  // Stored under another position's name (moved or copied).
  rejects(encodeRecord(RECORD), malformed, "0000000a_00000000.json");
  rejects(encodeRecord({ ...RECORD, offset: 4153 }), malformed); // offset edited
  rejects(encodeRecord({ ...RECORD, sha256: "AB".repeat(32) }), malformed); // not lowercase
  rejects(encodeRecord({ ...RECORD, sha256: "ab".repeat(31) }), malformed); // short digest
  rejects(encodeRecord({ ...RECORD, generation: "0123" }), malformed);
  rejects(json({ ...RECORD, index: "10" }), malformed); // a string is not an index
  rejects(json({ ...RECORD, index: 10.5 }), malformed);
  rejects(json({ generation: RECORD.generation, index: 10, offset: 4152 }), malformed);
  rejects(json(null), malformed);
  rejects(json([RECORD]), malformed);
});
