/**
 * Checksum records: small JSON objects stored beside a generation's
 * snapshots and WAL (`generations/<gen>/checksums/<index>_<offset>.json`)
 * that say what the database's SHA-256 is at one position. v0.3.13 never
 * lists that directory, so it ignores them; `validate REPLICA_URL` compares
 * a restore to each recorded position with the recorded checksum.
 *
 * @module
 */

import { CorruptionError, DecryptionError } from "../errors.ts";
import { AGE_WITHOUT_IDENTITIES, startsAsAge } from "../age_header.ts";
import { hex8, isGeneration, type Pos } from "../names.ts";

/** The directory of records inside a generation. */
export const RECORDS_DIR = "checksums";

/** One record. */
export interface ChecksumRecord extends Pos {
  sha256: string;
}

const NAME_RE = /^([0-9a-f]{8})_([0-9a-f]{8})\.json$/;

/** Object name of the record at `pos`. */
export function recordName(pos: Pos): string {
  return `${hex8(pos.index)}_${hex8(pos.offset)}.json`;
}

/** True for a record object name. */
export function isRecordName(name: string): boolean {
  return NAME_RE.test(name);
}

/** Serialises a record. */
export function encodeRecord(r: ChecksumRecord): Uint8Array {
  const { generation, index, offset, sha256 } = r;
  return new TextEncoder().encode(JSON.stringify({ generation, index, offset, sha256 }) + "\n");
}

/** Parses a record, checking it against its object name; `object` names it in errors. */
export function decodeRecord(bytes: Uint8Array, name: string, object: string): ChecksumRecord {
  let r: Partial<ChecksumRecord>;
  try {
    r = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    // An encrypted replica read without its identities (validate REPLICA_URL).
    if (startsAsAge(bytes)) throw new DecryptionError(object, AGE_WITHOUT_IDENTITIES, true);
    throw new CorruptionError(object, "checksum record is not JSON");
  }
  const valid = r && typeof r.generation === "string" && isGeneration(r.generation) &&
    Number.isInteger(r.index) && Number.isInteger(r.offset) && typeof r.sha256 === "string" &&
    /^[0-9a-f]{64}$/.test(r.sha256) && recordName(r as Pos) === name;
  if (!valid) throw new CorruptionError(object, "malformed checksum record");
  return r as ChecksumRecord;
}
